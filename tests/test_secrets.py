"""Secrets named by reference (`VARIABLE_PARAMETER`: SSM, `VARIABLE_SECRET_ARN`: Secrets
Manager) are read at startup through Powertools' parameters utility, from moto's server as the
AWS endpoint (AWS_ENDPOINT_URL, which boto3 honours); an unreadable one is a startup error naming
its variable, within a bounded wait."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from docent import aws
from docent.config import SECRET_SOURCES, SECRET_VARIABLES, load_settings
from docent.errors import ConfigurationError
from tests.support.lambdaruntime import aws_client, moto_server

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> pytest.MonkeyPatch:
    """AWS pointed at moto, no secret or reference from the machine, no cached provider."""
    for variable in SECRET_VARIABLES:
        for suffix in ("", *SECRET_SOURCES):
            monkeypatch.delenv(variable + suffix, raising=False)
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(aws, "_providers", {})
    return monkeypatch


def test_ssm_and_secrets_manager_values_become_settings(
    environment: pytest.MonkeyPatch, endpoint: str
) -> None:
    ssm = aws_client("ssm", endpoint)
    ssm.put_parameter(Name="/docent/a/admin", Value="adm-1,adm-2", Type="SecureString")
    ssm.put_parameter(Name="/docent/a/openai", Value="sk-from-ssm\n", Type="SecureString")
    secret = aws_client("secretsmanager", endpoint).create_secret(
        Name="docent/a/qdrant", SecretString="qdrant-from-secrets-manager"
    )
    environment.setenv("ADMIN_API_KEYS_PARAMETER", "/docent/a/admin")
    environment.setenv("OPENAI_API_KEY_PARAMETER", "/docent/a/openai")
    environment.setenv("QDRANT_URL", "http://127.0.0.1:6333")
    environment.setenv("QDRANT_API_KEY_SECRET_ARN", secret["ARN"])
    environment.setenv("API_KEYS_PARAMETER", "")  # empty: unset, as everywhere
    settings = load_settings()
    assert settings.admin_api_keys == ("adm-1", "adm-2")
    assert settings.openai_api_key == "sk-from-ssm"
    assert settings.qdrant_api_key == "qdrant-from-secrets-manager"
    assert settings.api_keys == ()


@pytest.mark.parametrize("suffix", ["_PARAMETER", "_SECRET_ARN"])
def test_a_missing_secret_is_a_startup_error_naming_it(
    environment: pytest.MonkeyPatch, suffix: str
) -> None:
    name = (
        "/docent/missing/admin"
        if suffix == "_PARAMETER"
        else "arn:aws:secretsmanager:us-east-1:123456789012:secret:docent/missing-AbCdEf"
    )
    environment.setenv("ADMIN_API_KEYS" + suffix, name)
    environment.setenv("AWS_LAMBDA_FUNCTION_NAME", "docent-ingest-prod")
    environment.setenv("SINGLE_INSTANCE_TRIAL", "true")
    template_parameter = "AdminApiKeys" + ("Parameter" if suffix == "_PARAMETER" else "SecretArn")
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    message = str(raised.value)
    assert f"ADMIN_API_KEYS{suffix} (template parameter {template_parameter})" in message
    assert name in message and ("ParameterNotFound" in message or "ResourceNotFound" in message)


def test_an_empty_secret_is_refused(environment: pytest.MonkeyPatch, endpoint: str) -> None:
    aws_client("ssm", endpoint).put_parameter(Name="/docent/b/key", Value=" ", Type="String")
    environment.setenv("API_KEYS_PARAMETER", "/docent/b/key")
    with pytest.raises(ConfigurationError, match=r"API_KEYS_PARAMETER: SSM parameter .* is empty"):
        load_settings()


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A server that accepts connections and never answers (an unreachable AWS endpoint)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for connection in held:
        connection.close()
    server.close()


def test_a_silent_endpoint_is_an_error_within_the_bound(
    environment: pytest.MonkeyPatch, silent_endpoint: str
) -> None:
    environment.setenv("AWS_ENDPOINT_URL", silent_endpoint)
    environment.setenv("UPSTASH_REDIS_REST_URL", "http://127.0.0.1:9")
    environment.setenv("UPSTASH_REDIS_REST_TOKEN_PARAMETER", "/docent/c/token")
    environment.setenv("QDRANT_URL", "http://127.0.0.1:6333")
    environment.setenv("QDRANT_API_KEY_PARAMETER", "/docent/c/qdrant")
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    elapsed = time.monotonic() - started
    assert elapsed < aws.SECRETS_WAIT_S + 1.5, elapsed
    message = str(raised.value)
    assert "UPSTASH_REDIS_REST_TOKEN_PARAMETER" in message and "/docent/c/token" in message
    assert "QDRANT_API_KEY_PARAMETER" in message


def test_the_wait_bounds_the_answer_not_the_loading_of_boto3(
    environment: pytest.MonkeyPatch, endpoint: str
) -> None:
    """On a slow cold start, importing boto3 and loading its service models took most of the
    window (seen: both secrets "did not answer within 5 s" from a moto that was up). The clients
    are now built before the clock starts; a silent endpoint is still bounded (test above)."""
    import boto3

    aws_client("ssm", endpoint).put_parameter(
        Name="/docent/d/admin", Value="adm-slow", Type="SecureString"
    )
    build = boto3.session.Session.client

    def slow_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.8)  # a fault: a cold, busy machine loading botocore's models
        return build(self, *args, **kwargs)

    environment.setattr(boto3.session.Session, "client", slow_client)
    environment.setattr(aws, "SECRETS_WAIT_S", 0.5)
    environment.setenv("ADMIN_API_KEYS_PARAMETER", "/docent/d/admin")
    assert load_settings().admin_api_keys == ("adm-slow",)


def test_one_source_per_secret(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("ADMIN_API_KEYS", "plain")
    environment.setenv("ADMIN_API_KEYS_PARAMETER", "/docent/d/admin")
    with pytest.raises(ConfigurationError, match="ADMIN_API_KEYS and ADMIN_API_KEYS_PARAMETER"):
        load_settings()


def test_plain_text_secrets_need_no_aws(environment: pytest.MonkeyPatch) -> None:
    """`docent serve` as before: plain variables, no AWS call (the endpoint is a closed port)."""
    environment.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    environment.setenv("ADMIN_API_KEYS", "plain-admin")
    environment.setenv("REDIS_URL", "redis://:password@127.0.0.1:6379/0")
    settings = load_settings()
    assert settings.admin_api_keys == ("plain-admin",)
    assert settings.redis_url == "redis://:password@127.0.0.1:6379/0"
    assert aws._providers == {}


def test_redis_url_from_ssm(environment: pytest.MonkeyPatch, endpoint: str) -> None:
    """REDIS_URL carries its password: it can come from SSM like the other secrets."""
    url = "redis://:s3cret@127.0.0.1:6379/0"
    aws_client("ssm", endpoint).put_parameter(
        Name="/docent/e/redis", Value=url, Type="SecureString"
    )
    environment.setenv("REDIS_URL_PARAMETER", "/docent/e/redis")
    settings: Any = load_settings()
    assert settings.redis_url == url and settings.store_backend == "redis"
    assert os.environ.get("REDIS_URL") is None


def test_snapstart_closes_the_secrets_clients(
    environment: pytest.MonkeyPatch, endpoint: str
) -> None:
    """The clients that read the secrets hold pooled connections: none goes into a snapshot."""
    from docent import snapstart

    aws_client("ssm", endpoint).put_parameter(Name="/docent/f/admin", Value="k", Type="String")
    environment.setenv("ADMIN_API_KEYS_PARAMETER", "/docent/f/admin")
    assert load_settings().admin_api_keys == ("k",)
    (provider,) = aws._providers.values()
    pools = provider.client._endpoint.http_session._manager.pools
    assert len(pools) == 1  # the connection to the endpoint, kept alive
    aws._run(snapstart._drop_clients())
    assert aws._providers == {} and len(pools) == 0
