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


def test_names_match_in_any_case_and_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings reads the environment itself (no pydantic-settings): names in any case, typed
    by pydantic from their text, an override above the environment, other variables ignored."""
    monkeypatch.setenv("max_context_tokens", "1200")
    monkeypatch.setenv("Log_Questions", "true")
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("DOCENT_NOT_A_SETTING", "x")
    settings = load_settings(log_questions=False)
    assert settings.max_context_tokens == 1200
    assert settings.log_questions is False
    assert settings.cors_allow_origins == ("https://a.example", "https://b.example")
    monkeypatch.setenv("MAX_CONTEXT_TOKENS", "many")
    with pytest.raises(ConfigurationError, match="MAX_CONTEXT_TOKENS"):
        load_settings()


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


@pytest.mark.parametrize(
    "name",
    ["RATE_LIMIT_FAIL_OPEN", "QDRANT_URL", "OPENAI_BASE_URL", "RATE_LIMIT_ANON", "LOG_LEVEL",
     "MAX_BODY_BYTES", "EMBEDDING_DIMENSIONS", "API_KEYS", "CORS_ALLOW_ORIGINS", "PORT"],
)  # fmt: skip
def test_an_empty_value_is_unset(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A template parameter passed through empty must not break or change a setting."""
    monkeypatch.setenv(name, "")
    empty = load_settings()
    monkeypatch.delenv(name)
    assert empty == load_settings()


def test_empty_sample_corpus_still_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPLE_CORPUS", "")
    assert load_settings().sample_corpus == ""


def lambda_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "docent-chat-prod")
    for name, value in env.items():
        monkeypatch.setenv(name, value)


SHARED = {
    "QDRANT_URL": "http://127.0.0.1:9",
    "UPSTASH_REDIS_REST_URL": "http://127.0.0.1:9",
    "UPSTASH_REDIS_REST_TOKEN": "t",
}


@pytest.mark.parametrize(
    ("missing", "parameter"),
    [("QDRANT_URL", "QdrantUrl"), ("UPSTASH_REDIS_REST_URL", "UpstashRedisRestUrl")],
)
def test_lambda_needs_shared_backends_naming_the_parameter(
    monkeypatch: pytest.MonkeyPatch, missing: str, parameter: str
) -> None:
    env = {k: v for k, v in SHARED.items() if k != missing}
    if missing == "UPSTASH_REDIS_REST_URL":
        env.pop("UPSTASH_REDIS_REST_TOKEN")
    lambda_env(monkeypatch, **env)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert missing in caught.value.message and parameter in caught.value.message
    assert "SingleInstanceTrial" in caught.value.message
    # The same values off Lambda are the embedded defaults, as before.
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
    load_settings()


def test_lambda_with_shared_backends_or_trial_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    lambda_env(monkeypatch, **SHARED)
    settings = load_settings()
    assert settings.on_lambda and settings.store_backend == "upstash"
    # Within Lambda's 6 MB invocation payload, unless set lower.
    assert settings.max_body_bytes == 5 * 1024 * 1024
    for name in SHARED:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SINGLE_INSTANCE_TRIAL", "true")
    assert load_settings().single_instance_trial is True


def test_lambda_refuses_a_body_limit_over_its_payload_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lambda_env(monkeypatch, MAX_BODY_BYTES=str(10 * 1024 * 1024), **SHARED)
    with pytest.raises(ConfigurationError, match="MAX_BODY_BYTES"):
        load_settings()


def test_lambda_errors_name_the_template_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    lambda_env(monkeypatch, RATE_LIMIT_FAIL_OPEN="maybe", **SHARED)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "RATE_LIMIT_FAIL_OPEN (template parameter RateLimitFailOpen)" in caught.value.message
