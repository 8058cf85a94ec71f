"""API keys and the client's identity: who is calling, from where, and at which tier."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from docent.errors import ConfigurationError

Tier = Literal["anonymous", "key", "admin"]


@dataclass(frozen=True)
class Caller:
    """The caller of one request. `key_id` names a key without revealing it (a digest prefix)."""

    tier: Tier
    ip: str
    key_id: str | None = None

    @property
    def identity(self) -> str:
        """What the rate limit counts: the key when one was sent, else the client IP."""
        return f"key:{self.key_id}" if self.key_id else f"ip:{self.ip}"


def _digest(entry: str, variable: str) -> bytes:
    if entry.startswith("sha256:"):
        hexdigest = entry.removeprefix("sha256:").strip().lower()
        try:
            raw = bytes.fromhex(hexdigest)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ConfigurationError(f"{variable}: {entry[:14]}… is not a sha256:<64 hex> digest")
        return raw
    return hashlib.sha256(entry.encode()).digest()


class KeyRing:
    """Configured keys as sha256 digests, compared in constant time."""

    def __init__(self, keys: Iterable[str], admin_keys: Iterable[str]) -> None:
        self._entries: list[tuple[bytes, Tier]] = [
            (_digest(k, "ADMIN_API_KEYS"), "admin") for k in admin_keys
        ] + [(_digest(k, "API_KEYS"), "key") for k in keys]

    def tier_of(self, key: str) -> Tier | None:
        """The tier a presented key grants, or None for an unknown key."""
        presented = hashlib.sha256(key.encode()).digest()
        found: Tier | None = None
        # Compare against every entry, without an early exit, so timing says nothing.
        for digest, tier in self._entries:
            if hmac.compare_digest(presented, digest) and (found is None or tier == "admin"):
                found = tier
        return found


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from `X-API-Key` or `Authorization: Bearer`; None when neither was sent."""
    key = headers.get("x-api-key")
    if key is None:
        auth = headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer":
            key = value
    key = key.strip() if key is not None else None
    return key if key is not None else None


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def client_ip(scope: Mapping[str, Any], headers: Mapping[str, str], trusted_hops: int) -> str:
    """The IP the platform saw: Lambda's source IP, else the socket peer, else via trusted proxies.

    `X-Forwarded-For` is read only through `trusted_hops` proxies that append to it, so a client
    cannot choose its own address by sending the header.
    """
    event = scope.get("aws.event")
    if isinstance(event, Mapping):
        context = event.get("requestContext") or {}
        source = (context.get("http") or {}).get("sourceIp") or (context.get("identity") or {}).get(
            "sourceIp"
        )
        if source:
            return str(source)
    lwa = _web_adapter_source_ip(headers)
    if lwa:
        return lwa
    peer = scope.get("client")
    ip = str(peer[0]) if peer else "unknown"
    if trusted_hops > 0:
        forwarded = [h.strip() for h in _forwarded_for(scope, headers).split(",") if h.strip()]
        if len(forwarded) >= trusted_hops and _is_ip(forwarded[-trusted_hops]):
            ip = forwarded[-trusted_hops]
    return ip


def _forwarded_for(scope: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    """Every `X-Forwarded-For` line, joined in order (RFC 9110 5.3: one list split over lines).

    Reading only the first line would let a client send its own line before the one its proxy
    appends, and so choose its address.
    """
    raw = scope.get("headers")
    if raw is not None:
        lines = [v.decode("latin-1") for k, v in raw if k.lower() == b"x-forwarded-for"]
        return ",".join(lines)
    return headers.get("x-forwarded-for", "")


def adapter_header(headers: Mapping[str, str], name: str) -> dict[str, Any] | None:
    """A JSON object the Lambda Web Adapter puts in header `name`, read only inside Lambda.

    There the adapter sets it on every request (an insert, which replaces any header of that
    name a client sent); elsewhere a client could forge it, so it is ignored.
    """
    raw = headers.get(name)
    if not raw or not os.environ.get("AWS_LAMBDA_RUNTIME_API"):
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _web_adapter_source_ip(headers: Mapping[str, str]) -> str | None:
    """Behind the Lambda Web Adapter the event arrives as the `x-amzn-request-context` header."""
    context = adapter_header(headers, "x-amzn-request-context")
    source = ((context.get("http") or {}) if context is not None else {}).get("sourceIp")
    return str(source) if source and _is_ip(str(source)) else None


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
