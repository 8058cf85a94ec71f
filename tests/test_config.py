"""Settings: names, defaults, and failures that name the variable."""

from __future__ import annotations

import pytest

from docent.config import RateRule, load_settings
from docent.errors import ConfigurationError


def test_defaults_are_the_embedded_backends() -> None:
    settings = load_settings()
    assert settings.qdrant_path == ".data/qdrant"
    assert settings.qdrant_collection == "docent"
    assert settings.embeddings == "none"
    assert settings.store_backend == "memory"
    assert settings.llm_configured is False
    assert settings.rate_limit_anon == RateRule(10, 60)
    assert settings.rate_limit_key == RateRule(100, 60)
    assert settings.max_context_tokens == 3000
    assert settings.fail_open("chat") is True and settings.fail_open("ingest") is False


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", "a, b ,,c")
    monkeypatch.setenv("RATE_LIMIT_ANON", "5/2m")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    settings = load_settings()
    assert settings.api_keys == ("a", "b", "c")
    assert settings.rate_limit_anon == RateRule(5, 120)
    assert settings.embeddings == "openai"
    assert settings.store_backend == "redis"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RATE_LIMIT_KEY": "lots"}, "RATE_LIMIT_KEY"),
        ({"QDRANT_API_KEY": "k"}, "QDRANT_URL"),
        ({"UPSTASH_REDIS_REST_URL": "http://x"}, "UPSTASH_REDIS_REST_TOKEN"),
        (
            {
                "UPSTASH_REDIS_REST_URL": "http://x",
                "UPSTASH_REDIS_REST_TOKEN": "t",
                "REDIS_URL": "redis://x",
            },
            "REDIS_URL",
        ),
        ({"CHUNK_TOKENS": "100", "CHUNK_OVERLAP_TOKENS": "100"}, "CHUNK_OVERLAP_TOKENS"),
        ({"EMBEDDING_PROVIDER": "openai"}, "OPENAI_API_KEY"),
        ({"MAX_CONTEXT_TOKENS": "ten"}, "MAX_CONTEXT_TOKENS"),
        ({"PORT": "99999"}, "PORT"),
    ],
)
def test_bad_settings_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert named in caught.value.message


def test_an_app_with_bad_settings_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from docent.web import create_app

    with pytest.raises(ConfigurationError, match="API_KEYS"):
        create_app(settings=load_settings(api_keys=("sha256:nothex",)))
