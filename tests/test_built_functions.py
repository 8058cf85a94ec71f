"""The built artifacts run as Lambda runs them.

`sam build`'s output; each function in a fresh Python 3.13 interpreter (the template's runtime)
with only the built layer (as /opt/python) and the built function code on its path, read-only
copies, PYTHONDONTWRITEBYTECODE=1; its environment resolved from the template (parameter
defaults and samconfig's overrides, whose secrets are SSM parameter names; the backend URLs
point at the Upstash gateway over a real Redis and the Qdrant stand-in, the AWS endpoint at
moto's server, which holds the secrets (SSM, and Secrets Manager for one) and the S3 bucket); each
handler driven by AWS's runtime interface client (awslambdaric) against the Lambda Runtime API
in tests/support/lambdaruntime.py, with events from `sam local generate-event`. A document
ingested through the ingest function is answered by the chat function in another interpreter.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cfn import Stack, samconfig_overrides
from tests.support.lambdaruntime import (
    aws_client,
    lambda_function,
    make_writable,
    moto_server,
    python313,
    read_only_copy,
    runtime_site,
)
from tests.support.qdrant import qdrant_standin
from tests.support.sam import ARCHITECTURE
from tests.support.servers import GATEWAY_TOKEN, _wait, free_port
from tests.support.tools import tool

# `sam build` (cross-platform wheels) and the runtime venv: on a fresh machine, downloads too.
pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "built-admin-key"
QDRANT_KEY = "built-qdrant-key"
BUCKET = "docs-bucket"
DOCUMENT = (
    "# Snapshots\n\nAfter every SnapStart restore Docent reseeds its random generator and opens "
    "new connection pools, so restored copies never share a retry schedule or a socket.\n"
)
QUESTION = "What does Docent do after a SnapStart restore?"
S3_DOCUMENT = (
    b"# Rotation\n\nRotate the admin key by deploying the stack with a new AdminApiKeys.\n"
)


@cache
def generated(*args: str) -> dict[str, Any]:
    """An event from `sam local generate-event` (the SAM CLI's own samples)."""
    result = subprocess.run(
        [tool("sam"), "local", "generate-event", *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
        cwd=ROOT,
    )
    return dict(json.loads(result.stdout))


def http_event(method: str, path: str, body: Any = None, **headers: str) -> dict[str, Any]:
    """An HTTP API (payload 2.0) event for `method path`, from the SAM CLI's sample."""
    text = json.dumps(body) if body is not None else ""
    args = ("--method", method, "--path", path.lstrip("/"), "--body", text)
    event = json.loads(json.dumps(generated("apigateway", "http-api-proxy", *args)))
    # The sample's placeholders, replaced by what API Gateway sends for this request.
    for key in ("cookies", "queryStringParameters", "pathParameters", "stageVariables"):
        event.pop(key, None)
    event["rawQueryString"] = ""
    event["routeKey"] = f"{method} {path}"
    event["requestContext"]["routeKey"] = event["routeKey"]
    event["requestContext"]["http"]["sourceIp"] = "198.51.100.7"
    event["headers"] = {"accept": "application/json", **headers}
    if body is not None:
        event["headers"]["content-type"] = "application/json"
        event["body"], event["isBase64Encoded"] = text, False
    else:
        event.pop("body", None)
        event["isBase64Encoded"] = False
    return event


def s3_event(key: str) -> dict[str, Any]:
    return json.loads(json.dumps(generated("s3", "put", "--bucket", BUCKET, "--key", key)))


def answer(invocation: Any) -> tuple[int, Any]:
    """The HTTP status and JSON body of a Mangum response."""
    assert invocation.kind == "response", invocation.body
    response = invocation.body
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return int(response["statusCode"]), json.loads(body) if body else None


@pytest.fixture(scope="module")
def backends(gateway_url: str) -> Iterator[dict[str, str]]:
    """The stack's backends on this machine: Qdrant (stand-in), Upstash (gateway), and moto's
    server as AWS: S3, and the secrets at the SSM names samconfig.toml gives (the Upstash token
    in Secrets Manager instead)."""
    with moto_server() as aws:
        s3 = aws_client("s3", aws)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="ops/rotation.md", Body=S3_DOCUMENT)
        s3.put_object(Bucket=BUCKET, Key="ops/queued.md", Body=S3_DOCUMENT)
        config = samconfig_overrides()
        ssm = aws_client("ssm", aws)
        for parameter, value in (
            ("AdminApiKeysParameter", ADMIN),
            ("QdrantApiKeyParameter", QDRANT_KEY),
        ):
            ssm.put_parameter(Name=config[parameter], Value=value, Type="SecureString")
        token = aws_client("secretsmanager", aws).create_secret(
            Name="docent/prod/upstash-token", SecretString=GATEWAY_TOKEN
        )
        with qdrant_standin(api_key=QDRANT_KEY) as qdrant:
            yield {"qdrant": qdrant, "upstash": gateway_url, "aws": aws, "token": token["ARN"]}


@pytest.fixture(scope="module")
def stack(backends: dict[str, str]) -> Stack:
    """The template's parameters: defaults, samconfig's overrides (its secrets as SSM names),
    then the backends' URLs and the Upstash token's secret."""
    return Stack(
        {
            **samconfig_overrides(),
            "Architecture": ARCHITECTURE,  # what runs on this machine (the default is arm64)
            "QdrantUrl": backends["qdrant"],
            "UpstashRedisRestUrl": backends["upstash"],
            "UpstashRedisRestTokenParameter": "",
            "UpstashRedisRestTokenSecretArn": backends["token"],
        }
    )


@pytest.fixture(scope="module")
def run(
    sam_built: Path,
    stack: Stack,
    backends: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Any]:
    """Start a built function: `run(logical_id)` -> a context manager of LambdaInstance."""
    assert stack.failed_rules() == []
    functions = stack.resources("AWS::Lambda::Function")

    def start(name: str, **extra: str) -> Any:
        environment = stack.environment(name)
        return lambda_function(
            f"docent-{name}",
            sam_built / name,
            built_layers(sam_built, functions[name]),
            functions[name]["Handler"],
            environment,
            tmp_path_factory.mktemp(name),
            {"AWS_ENDPOINT_URL": backends["aws"], **extra},
        )

    return start


def built_layers(sam_built: Path, function: dict[str, Any]) -> list[Path]:
    """The built folders of the function's own layers (translated ids carry a hash suffix);
    the Web Adapter's public layer is not built here (run.sh's test stands in for it)."""
    found = []
    for layer in function.get("Layers", []):
        name = str(layer).strip("<>")
        matches = [d for d in sam_built.iterdir() if d.name.endswith("Layer")
                   and name.startswith(d.name)]  # fmt: skip
        if matches:
            found.append(matches[0])
        else:
            assert "LambdaAdapterLayer" in name, layer
    assert found and found[0].name == "CommonLayer"
    return found


def test_health_answers_live_and_ready(run: Any) -> None:
    with run("HealthFunction") as health:
        status, body = answer(health.invoke(http_event("GET", "/health")))
        assert status == 200 and body["status"] == "ok"
        status, body = answer(health.invoke(http_event("GET", "/health/ready")))
        assert status == 200, body
        assert body["status"] == "ok"
        assert body["checks"]["vectors"]["ok"] and body["checks"]["store"]["ok"]


def test_keys_come_from_ssm_and_a_missing_secret_stops_the_start(run: Any, stack: Stack) -> None:
    """The admin key the ingest function accepts is the SSM parameter's value (no plain key in
    its environment); a secret that cannot be read is an init error naming its variable and
    template parameter."""
    environment = stack.environment("IngestFunction")
    assert "ADMIN_API_KEYS" not in environment and "ADMIN_API_KEYS_PARAMETER" in environment
    with run("IngestFunction") as ingest:
        status, _ = answer(ingest.invoke(http_event("GET", "/documents", **{"x-api-key": ADMIN})))
        assert status == 200
        status, _ = answer(ingest.invoke(http_event("GET", "/documents", **{"x-api-key": "no"})))
        assert status in (401, 403)
    with (
        pytest.raises(RuntimeError) as raised,
        run("HealthFunction", QDRANT_API_KEY_PARAMETER="/docent/prod/missing-qdrant-key"),
    ):
        pass
    assert "QDRANT_API_KEY_PARAMETER (template parameter QdrantApiKeyParameter)" in str(
        raised.value
    )
    assert "/docent/prod/missing-qdrant-key" in str(raised.value)


def test_ingested_through_ingest_answered_by_chat_in_another_interpreter(run: Any) -> None:
    admin = {"x-api-key": ADMIN}
    with run("IngestFunction") as ingest:
        document = {"id": "guide/snapshots.md", "text": DOCUMENT}
        status, body = answer(
            ingest.invoke(http_event("POST", "/ingest", {"documents": [document]}, **admin))
        )
        assert status == 200, (body, ingest.output())
        assert body["chunks"] >= 1
        # S3 put, directly: every record ingested, the result says so.
        direct = ingest.invoke(s3_event("ops/rotation.md"))
        assert direct.kind == "response", direct.body
        assert direct.body["failed"] == []
        assert [r["key"] for r in direct.body["processed"]] == ["ops/rotation.md"]
        # The same notification through SQS: a partial batch response with no failures.
        # (The sample's --body is pasted into its JSON unescaped: the message body goes in after.)
        message = json.loads(json.dumps(generated("sqs", "receive-message")))
        message["Records"][0]["body"] = json.dumps(s3_event("ops/queued.md"))
        queued = ingest.invoke(message)
        assert queued.kind == "response", queued.body
        assert queued.body == {"batchItemFailures": []}
        # A missing object fails the direct invocation, so Lambda retries it.
        missing = ingest.invoke(s3_event("ops/missing.md"))
        assert missing.kind == "error", missing.body
        status, listing = answer(ingest.invoke(http_event("GET", "/documents", **admin)))
        ids = {d["id"] for d in listing["documents"]}
        assert {"guide/snapshots.md", "ops/rotation.md", "ops/queued.md"} <= ids
    with run("ChatBufferedFunction") as chat:
        invocation = chat.invoke(http_event("POST", "/chat", {"question": QUESTION}))
        status, body = answer(invocation)
        assert status == 200, body
        assert body["answered"] is True
        assert body["sources"][0]["document_id"] == "guide/snapshots.md"
        assert "reseeds" in body["answer"]
        # Lambda's request id, not one of the app's own.
        assert body["request_id"] == invocation.request_id
        assert invocation.body["headers"]["x-ratelimit-limit"] == "10"


def ingest_the_document(run: Any) -> None:
    """DOCUMENT ingested through the built ingest function (unchanged: a no-op when it is in)."""
    with run("IngestFunction") as ingest:
        document = {"id": "guide/snapshots.md", "text": DOCUMENT}
        status, _ = answer(
            ingest.invoke(
                http_event("POST", "/ingest", {"documents": [document]}, **{"x-api-key": ADMIN})
            )
        )
        assert status == 200


def test_snapstart_hooks_run_as_the_runtime_calls_them(run: Any) -> None:
    """With AWS_LAMBDA_INITIALIZATION_TYPE=snap-start awslambdaric runs the before-snapshot
    hooks, asks for restore/next, runs the after-restore hooks, then serves."""
    ingest_the_document(run)  # on its own too, not only after the ingest test
    with run("ChatBufferedFunction", AWS_LAMBDA_INITIALIZATION_TYPE="snap-start") as chat:
        assert chat.api.restored.is_set()
        assert chat.api.restore_errors == [] and chat.api.init_errors == []
        status, body = answer(chat.invoke(http_event("POST", "/chat", {"question": QUESTION})))
        assert status == 200 and body["answered"] is True


@pytest.fixture(scope="module")
def streaming_chat(
    sam_built: Path,
    stack: Stack,
    backends: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, dict[str, str]]]:
    """functions/chat/run.sh as the Web Adapter starts it, with the template's environment."""
    tmp = tmp_path_factory.mktemp("stream")
    task = read_only_copy(sam_built / "ChatFunction", tmp / "task")
    layers = built_layers(sam_built, stack.resources("AWS::Lambda::Function")["ChatFunction"])
    opt = read_only_copy(layers, tmp / "opt")
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(python313())
    environment = stack.environment("ChatFunction")
    port = free_port()
    environment.update(
        {
            "PORT": str(port),  # the template's 8000, moved to a free port here
            "AWS_LWA_PORT": str(port),
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "PYTHONPATH": f"{opt / 'python'}:{runtime_site()}",
            "PYTHONDONTWRITEBYTECODE": "1",
            "LAMBDA_TASK_ROOT": str(task),
            "AWS_LAMBDA_FUNCTION_NAME": "docent-chat",
            "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",  # set for the app by Lambda
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",  # Lambda sets both; boto3 reads this one
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ENDPOINT_URL": backends["aws"],  # the secrets, from moto's SSM
            "HOME": str(tmp),
        }
    )
    log = tmp / "run.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(task / "run.sh")], cwd=task, env=environment, stdout=output, stderr=output
        )
    base = f"http://127.0.0.1:{port}"
    try:
        # The adapter's readiness check: GET the template's path until it answers.
        path = environment["AWS_LWA_READINESS_CHECK_PATH"]
        bound = float(environment["AWS_LWA_READINESS_CHECK_TIMEOUT_SECONDS"])
        started = time.monotonic()
        try:
            _wait(lambda: httpx.get(f"{base}{path}").status_code == 200, "run.sh", process, 60)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {log.read_text()[-3000:]}") from exc
        environment["_ready_s"] = f"{time.monotonic() - started:.2f}"
        assert float(environment["_ready_s"]) < bound * 3  # generous: a busy machine
        yield base, environment
    finally:
        process.terminate()
        process.wait(10)
        make_writable(task)
        make_writable(opt)


def test_streaming_entry_point_is_ready_hooks_and_streams(
    streaming_chat: tuple[str, dict[str, str]], run: Any
) -> None:
    base, environment = streaming_chat
    ingest_the_document(run)
    # The adapter's SnapStart hooks: empty POSTs, 2xx expected.
    for hook in (
        "AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH",
        "AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH",
    ):
        response = httpx.post(f"{base}{environment[hook]}", timeout=30)
        assert 200 <= response.status_code < 300, (hook, response.status_code)
    # As the adapter forwards a function URL invocation: the event's context in headers.
    headers = {
        "x-amzn-request-context": json.dumps({"http": {"sourceIp": "198.51.100.8"}}),
        "x-amzn-lambda-context": json.dumps(
            {"request_id": "lambda-req-0001", "deadline": int(time.time() * 1000) + 100_000}
        ),
    }
    kinds = []
    done: dict[str, Any] = {}
    with httpx.stream(
        "POST", f"{base}/chat", json={"question": QUESTION}, headers=headers, timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-request-id"] == "lambda-req-0001"
        for line in response.iter_lines():
            if line.startswith("data:"):
                event = json.loads(line[5:])
                kinds.append(event["type"])
                if event["type"] == "done":
                    done = event
    assert kinds[0] == "sources" and "chunk" in kinds and kinds[-1] == "done"
    assert done["answered"] is True and done["request_id"] == "lambda-req-0001"


def test_the_layers_ship_bytecode_for_python_3_13(sam_built: Path) -> None:
    """Docent's modules: source plus unchecked-hash 3.13 bytecode (never re-validated on a
    read-only /opt); third-party packages: bytecode only; no tests, stubs or dev tools."""
    for layer in ("CommonLayer", "IngestLayer"):
        site = sam_built / layer / "python"
        sources = [p for p in site.rglob("*.py") if p.relative_to(site).parts[0] != "docent"]
        assert not sources, sources[:5]
        compiled = list(site.rglob("*.pyc"))
        assert compiled and all(_flags(p) == 0b01 for p in compiled[:200])
        assert not list(site.rglob("*.pyi")) and not [p for p in site.rglob("tests") if p.is_dir()]
    docent = sam_built / "CommonLayer" / "python" / "docent"
    modules = list(docent.glob("*.py"))
    missing = [
        m for m in modules if not (m.parent / "__pycache__" / f"{m.stem}.cpython-313.pyc").exists()
    ]
    assert modules and not missing, missing
    assert _flags(docent / "__pycache__" / "config.cpython-313.pyc") == 0b01
    for tool_module in ("gateway.py", "qdrantstandin.py", "cli.py"):
        assert not (docent / tool_module).exists()


PY313_MAGIC = (3571).to_bytes(2, "little") + b"\r\n"  # importlib.util.MAGIC_NUMBER in 3.13


def _flags(pyc: Path) -> int:
    """The pyc header's flags (0b01: hash-based, no source check), after checking that the
    bytecode is Python 3.13's."""
    header = pyc.read_bytes()[:8]
    assert header[:4] == PY313_MAGIC, pyc
    return int.from_bytes(header[4:8], "little")


# The Web Adapter's public layer, not built here: its bootstrap and extension binary (a few MB).
ADAPTER_LAYER_ALLOWANCE = 10 * 1024 * 1024
BUDGET = 200 * 1024 * 1024  # Lambda allows 250 MB unzipped; the rest is headroom


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def test_each_function_with_its_layers_fits_the_size_budget(sam_built: Path, stack: Stack) -> None:
    functions = stack.resources("AWS::Lambda::Function")
    sizes = {}
    for name, function in functions.items():
        total = size(sam_built / name) + sum(size(d) for d in built_layers(sam_built, function))
        if any("LambdaAdapterLayer" in str(layer) for layer in function.get("Layers", [])):
            total += ADAPTER_LAYER_ALLOWANCE
        sizes[name] = total
    assert sizes and all(total <= BUDGET for total in sizes.values()), {
        name: f"{total / 2**20:.0f} MB" for name, total in sizes.items()
    }


FIRST_RESPONSE = """
import json, sys
import app

class Context:
    function_name = "docent-first"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:docent-first"
    aws_request_id = "c0ffee00-0000-4000-8000-000000000001"

    def get_remaining_time_in_millis(self):
        return 30_000

response = app.handler(json.loads(sys.argv[1]), Context())
print(json.dumps({"status": response["statusCode"], "loaded": sorted(
    m for m in ("sse_starlette", "uvicorn", "prometheus_client", "qdrant_client", "openai",
                "numpy", "boto3") if m in sys.modules)}))
"""


@pytest.mark.parametrize(
    ("function", "event_file"),
    [("HealthFunction", "health.json"), ("ChatBufferedFunction", "chat.json")],
)
def test_a_first_buffered_response_loads_no_stream_or_prometheus_code(
    sam_built: Path, tmp_path: Path, function: str, event_file: str
) -> None:
    """Cold start: a JSON answer on Lambda imports neither the SSE stack (sse_starlette, uvicorn)
    nor prometheus_client (EMF carries Lambda's metrics), nor a backend client it does not use
    (the single-instance trial: no Qdrant server, no model server, no secret references)."""
    event = json.loads((ROOT / "events" / event_file).read_text())
    done = subprocess.run(
        [python313(), "-c", FIRST_RESPONSE, json.dumps(event)],
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": f"{sam_built / function}:{sam_built / 'CommonLayer' / 'python'}:"
            f"{runtime_site()}",
            "AWS_LAMBDA_FUNCTION_NAME": "docent-first",
            "AWS_DEFAULT_REGION": "us-east-1",
            "SINGLE_INSTANCE_TRIAL": "true",
            "QDRANT_PATH": str(tmp_path / "qdrant"),
            "ADMIN_API_KEYS": ADMIN,
            "LOG_LEVEL": "WARNING",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"status": 200, "loaded": []}, done.stderr[-2000:]
