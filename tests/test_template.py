"""The template as CloudFormation receives it: SAM's own translation (the translator shipped
with the SAM CLI), with parameters bound, conditions and rules evaluated. What `sam validate
--lint` and cfn-lint let pass (a CORS block SAM rewrites, an empty variable, a route on the
wrong function) is checked here, and each function's resolved environment is loaded by
Settings as the function would load it on Lambda."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from docent.aws import is_sync_event
from docent.config import TEMPLATE_PARAMETERS, load_settings
from docent.errors import ConfigurationError
from tests.support.cfn import Stack, samconfig_overrides, translated

FUNCTIONS = ("HealthFunction", "IngestFunction", "ChatFunction", "ChatBufferedFunction")
# The parameters a first deploy must give (secrets and backend URLs), as a user would.
PRODUCTION = {
    "AdminApiKeys": "admin-key",
    "QdrantUrl": "https://qdrant.example.com:6333",
    "QdrantApiKey": "qdrant-key",
    "UpstashRedisRestUrl": "https://upstash.example.com",
    "UpstashRedisRestToken": "upstash-token",
}
TRIAL = {"AdminApiKeys": "admin-key", "SingleInstanceTrial": "true"}
# samconfig.toml names its secrets by SSM parameter; these tests give them as plain text instead.
PLAIN = {name: "" for name in samconfig_overrides() if name.endswith("Parameter")}
SECRETS = ("AdminApiKeys", "ApiKeys", "OpenAIApiKey", "QdrantApiKey", "UpstashRedisRestToken")


def stack(**values: str) -> Stack:
    return Stack({**samconfig_overrides(), **PLAIN, **values})


def routes(stack: Stack) -> dict[tuple[str, str], dict[str, Any]]:
    body = stack.resources("AWS::ApiGatewayV2::Api")["HttpApi"]["Body"]
    return {
        (method.upper(), path): operation["x-amazon-apigateway-integration"]
        for path, item in body["paths"].items()
        for method, operation in item.items()
    }


def test_http_api_cors_is_one_object_with_methods_and_headers() -> None:
    origins = "https://docs.example.com,https://www.example.com"
    cors = routes_body(stack(**PRODUCTION, CorsAllowOrigins=origins))["x-amazon-apigateway-cors"]
    assert cors["allowOrigins"] == origins.split(",")
    assert set(cors["allowMethods"]) == {"GET", "POST", "DELETE", "OPTIONS"}
    assert {"content-type", "x-api-key", "authorization"} <= set(cors["allowHeaders"])
    assert "x-request-id" in cors["exposeHeaders"] and cors["maxAge"] == 600
    # No origins configured: no browser origin is allowed, the rest stays an object.
    closed = routes_body(stack(**PRODUCTION))["x-amazon-apigateway-cors"]
    assert isinstance(closed, dict) and "allowOrigins" not in closed
    assert closed["allowMethods"]


def routes_body(stack: Stack) -> dict[str, Any]:
    return dict(stack.resources("AWS::ApiGatewayV2::Api")["HttpApi"]["Body"])


def test_function_url_cors_follows_the_origins_parameter() -> None:
    url = stack(**PRODUCTION, CorsAllowOrigins="https://docs.example.com")
    (config,) = url.resources("AWS::Lambda::Url").values()
    assert config["Cors"]["AllowOrigins"] == ["https://docs.example.com"]
    assert config["Cors"]["AllowMethods"] == ["GET", "POST"]  # GET: /v1/models
    assert "x-api-key" in config["Cors"]["AllowHeaders"]
    (closed,) = stack(**PRODUCTION).resources("AWS::Lambda::Url").values()
    assert "Cors" not in closed


def test_each_route_reaches_the_function_meant_for_its_transport() -> None:
    found = routes(stack(**PRODUCTION))

    def target(integration: dict[str, Any]) -> str:
        match = re.search(r"<(\w+)Aliaslive>", integration["uri"])
        assert match, integration
        return match[1]

    assert {route: target(i) for route, i in found.items()} == {
        ("GET", "/health"): "HealthFunction",
        ("GET", "/health/ready"): "HealthFunction",
        ("POST", "/ingest"): "IngestFunction",
        ("GET", "/documents"): "IngestFunction",
        ("DELETE", "/documents/{id}"): "IngestFunction",
        ("POST", "/sync"): "IngestFunction",
        ("GET", "/insights"): "IngestFunction",
        ("DELETE", "/insights"): "IngestFunction",
        ("POST", "/feedback"): "ChatBufferedFunction",
        ("POST", "/chat"): "ChatBufferedFunction",
        ("POST", "/mcp"): "ChatBufferedFunction",
        ("POST", "/v1/chat/completions"): "ChatBufferedFunction",
        ("GET", "/v1/models"): "ChatBufferedFunction",
        ("GET", "/v1/models/{model}"): "ChatBufferedFunction",
    }
    # The HTTP API cannot stream and waits at most 30 s: the buffered chat answers within it.
    functions = stack(**PRODUCTION).resources("AWS::Lambda::Function")
    buffered = functions["ChatBufferedFunction"]
    assert buffered["Handler"] == "app.handler" and buffered["Timeout"] < 30
    for route in [("POST", "/chat"), ("POST", "/mcp"), ("POST", "/v1/chat/completions")]:
        assert found[route]["timeoutInMillis"] <= 29_000
    request_timeout = float(buffered["Environment"]["Variables"]["REQUEST_TIMEOUT_S"])
    assert request_timeout < buffered["Timeout"]
    # Streaming chat: the function URL only, through the Web Adapter in response_stream mode.
    streaming = functions["ChatFunction"]
    (url,) = stack(**PRODUCTION).resources("AWS::Lambda::Url").values()
    assert url["InvokeMode"] == "RESPONSE_STREAM"
    assert url["TargetFunctionArn"] == "<ChatFunctionAliaslive>"
    assert streaming["Handler"] == "run.sh"
    variables = streaming["Environment"]["Variables"]
    assert variables["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert variables["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert float(variables["REQUEST_TIMEOUT_S"]) < streaming["Timeout"]


@pytest.mark.parametrize("values", [TRIAL, PRODUCTION], ids=["trial", "production"])
def test_no_function_gets_an_empty_variable(values: dict[str, str]) -> None:
    deployed = stack(**values)
    for function in FUNCTIONS:
        environment = deployed.environment(function)
        empty = [name for name, value in environment.items() if not value.strip()]
        assert not empty, (function, empty)


@pytest.mark.parametrize("values", [TRIAL, PRODUCTION], ids=["trial", "production"])
def test_each_function_starts_with_the_environment_the_template_gives(
    values: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed = stack(**values)
    for function in FUNCTIONS:
        for name, value in deployed.environment(function).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", f"docent-{function}")
        settings = load_settings()
        assert settings.on_lambda
        assert settings.max_body_bytes <= 5 * 1024 * 1024
        assert settings.store_backend == ("memory" if values is TRIAL else "upstash")


def test_defaults_fail_at_deploy_and_at_start_naming_the_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stack with nothing but the admin key: the Rules refuse it; were it deployed anyway,
    each function would refuse to start, naming the same parameters."""
    deployed = stack(AdminApiKeys="admin-key")
    failed = " ".join(deployed.failed_rules())
    assert "QdrantUrl" in failed and "UpstashRedisRestUrl" in failed
    assert "SingleInstanceTrial" in failed
    for name, value in deployed.environment("HealthFunction").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "docent-health-prod")
    with pytest.raises(ConfigurationError, match="QdrantUrl"):
        load_settings()
    assert stack(**TRIAL).failed_rules() == []
    assert stack(**PRODUCTION).failed_rules() == []
    assert deployed.violations() == []
    no_admin = " ".join(stack(**{**PRODUCTION, "AdminApiKeys": ""}).failed_rules())
    assert "AdminApiKeysParameter" in no_admin and "QdrantUrl" not in no_admin


def test_samconfig_deploys_with_the_secrets_as_ssm_names() -> None:
    """samconfig.toml as it stands: every secret an SSM parameter's name, none a template value;
    only the two (non-secret) backend URLs are left to add, and the Rules say so."""
    config = samconfig_overrides()
    assert {f"{name}Parameter" for name in ("AdminApiKeys", "QdrantApiKey",
            "UpstashRedisRestToken")} <= set(config)  # fmt: skip
    assert not set(config) & set(SECRETS)
    alone = Stack(config)
    assert alone.violations() == []
    failed = " ".join(alone.failed_rules())
    assert "QdrantUrl" in failed and "UpstashRedisRestUrl" in failed
    assert "AdminApiKeys" not in failed and "UpstashRedisRestToken" not in failed
    urls = {"QdrantUrl": "https://q.example.com", "UpstashRedisRestUrl": "https://u.example.com"}
    deployed = Stack({**config, **urls})
    assert deployed.failed_rules() == [] and deployed.violations() == []
    for function in FUNCTIONS:
        environment = deployed.environment(function)
        plain = {v for v in environment if v.removesuffix("_PARAMETER") == v} & {
            "ADMIN_API_KEYS", "API_KEYS", "QDRANT_API_KEY", "UPSTASH_REDIS_REST_TOKEN",
            "OPENAI_API_KEY"}  # fmt: skip
        assert not plain, (function, plain)
        assert environment["QDRANT_API_KEY_PARAMETER"] == config["QdrantApiKeyParameter"]
        assert environment["UPSTASH_REDIS_REST_TOKEN_PARAMETER"].startswith("/docent/")
        # Each function reads only what it needs: health checks backends, it needs no key.
        keys = "ADMIN_API_KEYS_PARAMETER" in environment
        assert keys == (function != "HealthFunction"), function


def test_secret_policies_allow_exactly_the_named_secrets() -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:docent/upstash-AbCdEf"
    deployed = stack(
        **{**PRODUCTION, "AdminApiKeys": "", "UpstashRedisRestToken": "", "QdrantApiKey": ""},
        AdminApiKeysParameter="/docent/prod/admin-api-keys",
        UpstashRedisRestTokenSecretArn=arn,
    )
    assert deployed.failed_rules() == [] and deployed.violations() == []
    policies = deployed.resources("AWS::IAM::ManagedPolicy")
    grants = {
        name: [(s["Action"], s["Resource"]) for s in policy["PolicyDocument"]["Statement"]]
        for name, policy in policies.items()
    }
    assert grants == {
        "KeySecretsRead": [
            ("ssm:GetParameter",
             "arn:aws:ssm:us-east-1:123456789012:parameter/docent/prod/admin-api-keys"),
        ],
        "BackendSecretsRead": [("secretsmanager:GetSecretValue", arn)],
    }  # fmt: skip
    roles = deployed.resources("AWS::IAM::Role")
    attached = {name: set(role["ManagedPolicyArns"]) for name, role in roles.items()}
    assert "<KeySecretsRead>" not in attached["HealthFunctionRole"]
    assert "<BackendSecretsRead>" in attached["HealthFunctionRole"]
    for role in ("ChatFunctionRole", "ChatBufferedFunctionRole", "IngestRole"):
        assert {"<KeySecretsRead>", "<BackendSecretsRead>"} <= attached[role], role
    # No reference: no policy at all, none attached.
    plain = stack(**PRODUCTION)
    assert plain.resources("AWS::IAM::ManagedPolicy") == {}
    for role in plain.resources("AWS::IAM::Role").values():
        assert not {"<KeySecretsRead>", "<BackendSecretsRead>"} & set(role["ManagedPolicyArns"])
    # A name SSM cannot hold, or a partial ARN IAM would not match, is refused at deploy.
    assert stack(**PRODUCTION, ApiKeysParameter="docent/no-slash").violations() == [
        "ApiKeysParameter"
    ]
    assert stack(**PRODUCTION, ApiKeysSecretArn="docent/api-keys").violations() == [
        "ApiKeysSecretArn"
    ]


def test_trial_mode_reserves_one_instance_per_function() -> None:
    trial = stack(**TRIAL).resources("AWS::Lambda::Function")
    production = stack(**PRODUCTION).resources("AWS::Lambda::Function")
    for function in FUNCTIONS:
        assert trial[function]["ReservedConcurrentExecutions"] == 1
        assert "ReservedConcurrentExecutions" not in production[function]
    reserved = stack(**PRODUCTION, ReservedConcurrency="20").resources("AWS::Lambda::Function")
    assert {reserved[f]["ReservedConcurrentExecutions"] for f in FUNCTIONS} == {"20"}


def test_every_parameter_named_in_startup_errors_is_the_templates() -> None:
    parameters = translated()["Parameters"]
    for variable, parameter in TEMPLATE_PARAMETERS.items():
        assert parameter in parameters, (variable, parameter)
        for function in FUNCTIONS:
            environment = translated()["Resources"][function]["Properties"]["Environment"]
            assert variable in environment["Variables"], (function, variable)


def test_operations_resources() -> None:
    """Log retention for every function, a bounded queue consumer, an alarm on dead letters,
    and no managed SQS policy on any role."""
    deployed = stack(**PRODUCTION, LogRetentionDays="14")
    groups = deployed.resources("AWS::Logs::LogGroup")
    functions = deployed.resources("AWS::Lambda::Function")
    for function in FUNCTIONS:
        group = functions[function]["LoggingConfig"]["LogGroup"].strip("<>")
        assert groups[group]["RetentionInDays"] == "14"
        assert groups[group]["LogGroupName"] == f"/aws/lambda/{functions[function]['FunctionName']}"
    (mapping,) = deployed.resources("AWS::Lambda::EventSourceMapping").values()
    assert mapping["ScalingConfig"]["MaximumConcurrency"] == "2"
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    (alarm,) = deployed.resources("AWS::CloudWatch::Alarm").values()
    assert alarm["Dimensions"][0]["Value"] == "<IngestDeadLetterQueue.QueueName>"
    for role in deployed.resources("AWS::IAM::Role").values():
        assert not any("SQSQueueExecutionRole" in arn for arn in role.get("ManagedPolicyArns", []))
    stage = deployed.resources("AWS::ApiGatewayV2::Stage")["HttpApiApiGatewayDefaultStage"]
    assert stage["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": "50",
        "ThrottlingBurstLimit": "100",
    }


@pytest.mark.parametrize(("architecture", "adapter"), [("arm64", "Arm64"), ("x86_64", "X86")])
def test_one_architecture_for_functions_layers_and_the_adapter(
    architecture: str, adapter: str
) -> None:
    values = dict(PRODUCTION)
    if architecture != "arm64":  # arm64 is the default
        values["Architecture"] = architecture
    deployed = stack(**values)
    for function in deployed.resources("AWS::Lambda::Function").values():
        assert function["Architectures"] == [architecture]
    for layer in deployed.resources("AWS::Lambda::LayerVersion").values():
        assert layer["CompatibleArchitectures"] == [architecture]
    chat = deployed.resources("AWS::Lambda::Function")["ChatFunction"]
    assert any(f"LambdaAdapterLayer{adapter}:" in str(layer) for layer in chat["Layers"])


def test_a_sync_source_gets_a_schedule_that_invokes_the_ingest_sync() -> None:
    assert stack(**PRODUCTION).resources("AWS::Scheduler::Schedule") == {}
    source = "https://docs.example.com/sitemap.xml"
    scheduled = stack(**PRODUCTION, SyncSource=source, SyncAllowedHosts="cdn.example.com")
    (schedule,) = scheduled.resources("AWS::Scheduler::Schedule").values()
    assert schedule["ScheduleExpression"] == "rate(1 day)"
    assert "IngestFunction" in str(schedule["Target"]["Arn"])
    # The input is the event the ingest handler recognises as a sync (events/ingest-sync.json).
    event = json.loads(schedule["Target"]["Input"])
    assert event == {"sync_source": source} and is_sync_event(event)
    # The source's host is allowed (the handler refuses any other), beside SyncAllowedHosts.
    hosts = scheduled.environment("IngestFunction")["SYNC_ALLOWED_HOSTS"]
    assert hosts == "cdn.example.com,docs.example.com"
    alone = stack(**PRODUCTION, SyncSource=source).environment("IngestFunction")
    assert alone["SYNC_ALLOWED_HOSTS"] == "docs.example.com"
    assert "SYNC_ALLOWED_HOSTS" not in stack(**PRODUCTION).environment("IngestFunction")
