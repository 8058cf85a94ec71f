"""Settings: every environment variable Docent reads is named here, and only here.

`get_settings()` reads the environment once per process; a missing or contradictory value
raises `ConfigurationError` naming the variable, so a bad deployment fails at start.

One rule for empty values: a variable set to the empty string is the same as unset (its
default), so a template that passes an empty parameter through cannot break a setting. The one
exception is `SAMPLE_CORPUS`, where empty means "no sample corpus".
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from docent.errors import ConfigurationError

_WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RULE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")


@dataclass(frozen=True)
class RateRule:
    """`limit` requests per `window_s` seconds, parsed from text such as `10/60s` or `100/1m`."""

    limit: int
    window_s: int

    @classmethod
    def parse(cls, text: str) -> RateRule:
        match = _RULE.match(text)
        if not match:
            raise ValueError(f"{text!r} is not of the form N/<window> such as 10/60s or 100/1m")
        limit, count, unit = int(match[1]), int(match[2] or 1), match[3]
        if limit < 1 or count < 1:
            raise ValueError(f"{text!r}: limit and window must be positive")
        return cls(limit=limit, window_s=count * _WINDOW_UNITS[unit])

    def __str__(self) -> str:
        return f"{self.limit}/{self.window_s}s"


# Given as text in the environment: "a,b, c" (split by `Settings._commas`).
CommaList = tuple[str, ...]

# Empty means something for these settings only; for every other one it means unset.
_EMPTY_IS_A_VALUE = frozenset({"sample_corpus"})
# Lambda's synchronous invocation payload is 6 MB; a body must fit with the event around it.
LAMBDA_MAX_BODY_BYTES = 5 * 1024 * 1024
# The SAM template's parameter behind each variable (template.yaml), named in startup errors.
TEMPLATE_PARAMETERS = {
    "OPENAI_API_KEY": "OpenAIApiKey",
    "OPENAI_BASE_URL": "OpenAIBaseUrl",
    "CHAT_MODEL": "ChatModel",
    "EMBEDDING_MODEL": "EmbeddingModel",
    "QDRANT_URL": "QdrantUrl",
    "QDRANT_API_KEY": "QdrantApiKey",
    "QDRANT_COLLECTION": "QdrantCollection",
    "UPSTASH_REDIS_REST_URL": "UpstashRedisRestUrl",
    "UPSTASH_REDIS_REST_TOKEN": "UpstashRedisRestToken",
    "API_KEYS": "ApiKeys",
    "ADMIN_API_KEYS": "AdminApiKeys",
    "RATE_LIMIT_ANON": "RateLimitAnon",
    "RATE_LIMIT_KEY": "RateLimitKey",
    "RATE_LIMIT_FAIL_OPEN": "RateLimitFailOpen",
    "CORS_ALLOW_ORIGINS": "CorsAllowOrigins",
    "LOG_LEVEL": "LogLevel",
    "SINGLE_INSTANCE_TRIAL": "SingleInstanceTrial",
    "INSIGHTS": "Insights",
    "INSIGHTS_RETENTION_DAYS": "InsightsRetentionDays",
}
# Secrets that can be read from AWS at startup instead of given as plain text: VARIABLE_PARAMETER
# names an SSM parameter (a SecureString, decrypted), VARIABLE_SECRET_ARN a Secrets Manager
# secret whose string is the value. At most one of the three per secret.
SECRET_VARIABLES = (
    "API_KEYS",
    "ADMIN_API_KEYS",
    "OPENAI_API_KEY",
    "QDRANT_API_KEY",
    "UPSTASH_REDIS_REST_TOKEN",
    "REDIS_URL",
)
SECRET_SOURCES = {"_PARAMETER": "ssm", "_SECRET_ARN": "secretsmanager"}
TEMPLATE_PARAMETERS |= {
    variable + suffix: TEMPLATE_PARAMETERS[variable] + parameter
    for variable in SECRET_VARIABLES
    if variable in TEMPLATE_PARAMETERS
    for suffix, parameter in (("_PARAMETER", "Parameter"), ("_SECRET_ARN", "SecretArn"))
}


def _named(variable: str, on_lambda: bool) -> str:
    """The variable, and on Lambda the template parameter that sets it."""
    parameter = TEMPLATE_PARAMETERS.get(variable)
    return f"{variable} (template parameter {parameter})" if on_lambda and parameter else variable


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(BaseModel):
    """Docent's configuration, from the environment (names match the README's table).

    `load_settings` reads it: each field from the variable of its name, in any case, as text
    (pydantic converts it; lists are comma-separated). A plain pydantic model rather than
    pydantic-settings, whose import (its CLI, dotenv and cloud sources) cost every cold start
    about 0.03 s for a lookup this module does in three lines.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    # Vectors
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    qdrant_path: str = ".data/qdrant"
    qdrant_collection: str = "docent"
    qdrant_prefer_grpc: bool = False
    # Embedded store only: free space a write must leave on its disk, on top of four times the
    # write's own size (unset: 4 MB); and deleted points after which the shard is optimised.
    qdrant_disk_reserve_mb: float | None = Field(default=None, ge=0)
    qdrant_optimize_deletes: int = Field(default=1000, ge=0)

    # Models
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    embedding_provider: Literal["openai", "local", "none"] | None = None
    embedding_model: str = "text-embedding-3-small"
    embedding_dimensions: int | None = Field(default=None, ge=1)
    embedding_batch_size: int = Field(default=256, ge=1, le=2048)
    embedding_concurrency: int = Field(default=4, ge=1, le=64)
    chat_model: str = "gpt-4o-mini"
    model_timeout_s: float = Field(default=30.0, gt=0)
    model_max_retries: int = Field(default=2, ge=0, le=10)
    # The SDK's HTTP transport: aiohttp (its C parser) when installed (requirements-serve.txt),
    # else httpx; about a quarter less of the server's CPU per token and per request with aiohttp.
    model_http_client: Literal["auto", "httpx", "aiohttp"] = "auto"

    # Limits and cache
    upstash_redis_rest_url: str | None = None
    upstash_redis_rest_token: str | None = None
    redis_url: str | None = None
    store_timeout_s: float = Field(default=0.5, gt=0)
    key_prefix: str = Field(default="docent", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    rate_limit_anon: RateRule = RateRule(10, 60)
    rate_limit_key: RateRule = RateRule(100, 60)
    rate_limit_bad_key: RateRule = RateRule(5, 60)
    rate_limit_fail_open: bool | None = None
    trusted_proxy_hops: int = Field(default=0, ge=0, le=10)
    embedding_cache_ttl_s: int = Field(default=30 * 86400, ge=0)

    # Keys
    api_keys: CommaList = ()
    admin_api_keys: CommaList = ()

    # Requests and answers
    max_context_tokens: int = Field(default=3000, ge=100)
    max_history_tokens: int = Field(default=1000, ge=0)
    max_answer_tokens: int = Field(default=700, ge=16)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_chat_body_bytes: int = Field(default=256 * 1024, ge=1024)
    chunk_tokens: int = Field(default=350, ge=32, le=8000)
    chunk_overlap_tokens: int = Field(default=50, ge=0)
    sse_ping_s: float = Field(default=15.0, gt=0)
    stream_frame_ms: float = Field(default=40.0, ge=0, le=1000)
    extractive_pace_ms: float = Field(default=0.0, ge=0, le=1000)
    request_timeout_s: float = Field(default=60.0, gt=0)
    ready_timeout_s: float = Field(default=2.0, gt=0)

    # Serving
    host: str = "127.0.0.1"
    port: int = Field(default=7860, ge=1, le=65535)
    # "docent": Docent's own documentation (what `make run` asks for); "": none. Never a folder
    # name: a relative one meant whatever the working directory held.
    sample_corpus: Literal["", "docent"] = ""
    cors_allow_origins: CommaList = ()
    log_level: str = "INFO"
    log_questions: bool = False
    # Insights (docent.insights): question texts kept only with "on", for this many days.
    insights: Literal["off", "on"] = "off"
    insights_retention_days: int = Field(default=30, ge=1, le=3650)
    docent_url: str = "http://127.0.0.1:7860"
    docent_api_key: str | None = None  # the CLI's key for a running server's admin routes
    api_docs: bool = True  # serve /docs and /openapi.json
    parse_timeout_s: float = Field(default=60.0, gt=0)  # per file (PDF) read from disk or S3
    # `docent serve` against slow clients: the request head, then its body, each within its
    # time; at most this many open connections per peer address (0: no cap).
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=60.0, gt=0)
    max_connections_per_client: int = Field(default=64, ge=0)

    # Protocols (/v1/chat/completions, /mcp)
    completions_sources_block: bool = True

    # Lambda: set by the runtime; the trial mode waives the shared backends Lambda needs.
    aws_lambda_function_name: str | None = None
    single_instance_trial: bool = False
    # The Web Adapter's SnapStart hooks (it POSTs to these paths; the chat app serves them).
    aws_lwa_snapstart_before_checkpoint_path: str | None = None
    aws_lwa_snapstart_after_restore_path: str | None = None

    # Sync from web sources (sitemaps, pages)
    sync_allowed_hosts: CommaList = ()
    sync_allow_networks: CommaList = ()
    sync_max_pages: int = Field(default=2000, ge=1, le=100_000)
    sync_max_page_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    sync_timeout_s: float = Field(default=10.0, gt=0)
    sync_concurrency: int = Field(default=4, ge=1, le=32)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        kept = {
            name: value
            for name, value in data.items()
            if name in _EMPTY_IS_A_VALUE or not (isinstance(value, str) and not value.strip())
        }
        if kept.get("aws_lambda_function_name") and "max_body_bytes" not in kept:
            kept["max_body_bytes"] = LAMBDA_MAX_BODY_BYTES
        return kept

    @field_validator(
        "api_keys",
        "admin_api_keys",
        "cors_allow_origins",
        "sync_allowed_hosts",
        "sync_allow_networks",
        mode="before",
    )
    @classmethod
    def _commas(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("rate_limit_anon", "rate_limit_key", "rate_limit_bad_key", mode="before")
    @classmethod
    def _rule(cls, value: object) -> object:
        return RateRule.parse(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.qdrant_api_key and not self.qdrant_url:
            raise ValueError("QDRANT_API_KEY is set but QDRANT_URL is not")
        if bool(self.upstash_redis_rest_url) != bool(self.upstash_redis_rest_token):
            raise ValueError(
                "UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN must be set together"
            )
        if self.upstash_redis_rest_url and self.redis_url:
            raise ValueError("set UPSTASH_REDIS_REST_URL or REDIS_URL, not both")
        for network in self.sync_allow_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"SYNC_ALLOW_NETWORKS: {network!r} is not a network") from None
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("CHUNK_OVERLAP_TOKENS must be smaller than CHUNK_TOKENS")
        if self.model_http_client == "aiohttp" and importlib.util.find_spec("aiohttp") is None:
            raise ValueError("MODEL_HTTP_CLIENT=aiohttp needs aiohttp (requirements-serve.txt)")
        if self.embedding_provider == "openai" and not self.llm_configured:
            raise ValueError("EMBEDDING_PROVIDER=openai needs OPENAI_API_KEY or OPENAI_BASE_URL")
        if self.on_lambda:
            self._lambda_ready()
        return self

    def _lambda_ready(self) -> None:
        """Lambda instances share no disk and no memory: the index and limits must be shared."""
        if self.max_body_bytes > LAMBDA_MAX_BODY_BYTES:
            raise ValueError(
                f"MAX_BODY_BYTES is {self.max_body_bytes}: on Lambda at most "
                f"{LAMBDA_MAX_BODY_BYTES} (the invocation payload limit is 6 MB)"
            )
        if self.single_instance_trial:
            return
        trial = (
            "or set SINGLE_INSTANCE_TRIAL=true (template parameter SingleInstanceTrial) for a "
            "single-instance trial (reserved concurrency 1, nothing shared between functions)"
        )
        if not self.qdrant_url:
            raise ValueError(
                f"{_named('QDRANT_URL', True)} is required on Lambda: each instance's /tmp index "
                f"is private and lost on recycle; {trial}"
            )
        if self.store_backend == "memory":
            raise ValueError(
                f"{_named('UPSTASH_REDIS_REST_URL', True)} (or REDIS_URL) is required on Lambda: "
                f"in-process rate limits count per instance, which limits nothing; {trial}"
            )

    @property
    def on_lambda(self) -> bool:
        """True inside the Lambda runtime (it sets AWS_LAMBDA_FUNCTION_NAME)."""
        return bool(self.aws_lambda_function_name)

    @property
    def llm_configured(self) -> bool:
        """True when an OpenAI-compatible server is configured for answers (and embeddings)."""
        return bool(self.openai_api_key or self.openai_base_url)

    @property
    def token_model(self) -> str | None:
        """The model whose encoding counts tokens: the chat model when one answers."""
        return self.chat_model if self.llm_configured else None

    @property
    def embeddings(self) -> Literal["openai", "local", "none"]:
        """The dense embedding provider: as set, else OpenAI when a model server is configured."""
        if self.embedding_provider is not None:
            return self.embedding_provider
        return "openai" if self.llm_configured else "none"

    @property
    def store_backend(self) -> Literal["upstash", "redis", "memory"]:
        if self.upstash_redis_rest_url:
            return "upstash"
        return "redis" if self.redis_url else "memory"

    def fail_open(self, route: Literal["chat", "ingest", "feedback"]) -> bool:
        """Whether a request proceeds when the limit store cannot answer in time."""
        if self.rate_limit_fail_open is not None:
            return self.rate_limit_fail_open
        return route != "ingest"


def _secrets(overrides: dict[str, object]) -> dict[str, object]:
    """The secrets the environment names by reference (`SECRET_SOURCES`), read from AWS."""
    import os

    environ = {name.upper(): value for name, value in os.environ.items() if value.strip()}
    on_lambda = bool(environ.get("AWS_LAMBDA_FUNCTION_NAME"))
    references: dict[str, tuple[str, str]] = {}
    for variable in SECRET_VARIABLES:
        if variable.lower() in overrides:
            continue
        given = [variable + suffix for suffix in SECRET_SOURCES if variable + suffix in environ]
        if len(given) + (variable in environ) > 1:
            named = " and ".join(_named(v, on_lambda) for v in [variable, *given][-2:])
            raise ConfigurationError(f"Invalid configuration: {named}: set one of them, not both")
        if given:
            references[given[0]] = (SECRET_SOURCES[given[0][len(variable) :]], environ[given[0]])
    if not references:
        return {}
    from docent.aws import read_secrets

    values, failures = read_secrets(references)
    if failures:
        problems = [f"{_named(reference, on_lambda)}: {why}" for reference, why in failures.items()]
        raise ConfigurationError("Invalid configuration: " + "; ".join(problems))
    return {
        reference.removesuffix(suffix).lower(): value
        for reference, value in values.items()
        for suffix in SECRET_SOURCES
        if reference.endswith(suffix)
    }


def _environment() -> dict[str, str]:
    """The environment's value for each field, by the field's name in any case."""
    import os

    fields = Settings.model_fields
    return {name.lower(): value for name, value in os.environ.items() if name.lower() in fields}


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (plus overrides and the secrets it names by
    reference, read from AWS, in that order of precedence), naming the variable on failure."""
    try:
        values = {**_environment(), **_secrets(overrides), **overrides}
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        import os

        # The runtime's variable (also a field above): read directly, as validation failed.
        on_lambda = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
        problems = []
        for error in exc.errors():
            where = _named("_".join(str(part) for part in error["loc"]).upper(), on_lambda)
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
        raise ConfigurationError("Invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return load_settings()
