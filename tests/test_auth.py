"""Keys and the client's address."""

from __future__ import annotations

import hashlib

from docent.auth import KeyRing, client_ip, presented_key


def test_keys_and_digests_resolve_to_their_tier() -> None:
    ring = KeyRing(["user"], ["sha256:" + hashlib.sha256(b"boss").hexdigest()])
    assert ring.tier_of("user") == "key"
    assert ring.tier_of("boss") == "admin"
    assert ring.tier_of("nobody") is None
    assert ring.tier_of("") is None


def test_the_key_comes_from_either_header() -> None:
    assert presented_key({"x-api-key": " k1 "}) == "k1"
    assert presented_key({"authorization": "Bearer k2"}) == "k2"
    assert presented_key({"authorization": "Basic abc"}) is None
    assert presented_key({}) is None


def test_client_ip_prefers_the_lambda_source_ip() -> None:
    scope = {
        "client": ("127.0.0.1", 1),
        "aws.event": {"requestContext": {"http": {"sourceIp": "203.0.113.9"}}},
    }
    assert client_ip(scope, {"x-forwarded-for": "1.2.3.4"}, 0) == "203.0.113.9"


def test_forwarded_for_counts_only_through_trusted_hops() -> None:
    scope = {"client": ("10.0.0.1", 1)}
    headers = {"x-forwarded-for": "6.6.6.6, 198.51.100.7, 192.0.2.1"}
    assert client_ip(scope, headers, 0) == "10.0.0.1"
    assert client_ip(scope, headers, 1) == "192.0.2.1"
    assert client_ip(scope, headers, 2) == "198.51.100.7"
    assert client_ip(scope, {"x-forwarded-for": "garbage"}, 1) == "10.0.0.1"
    assert client_ip(scope, {"x-forwarded-for": "192.0.2.1"}, 2) == "10.0.0.1"
