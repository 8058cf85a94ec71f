"""Deployment artefacts: the SAM template (asserted directly, then `sam validate --lint` and
`sam build`), the built layer's versions, the streaming chat entry point (run.sh) behind a real
HTTP client, and the Spaces image's start command and Dockerfile lint."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import corpus_documents
from tests.support.servers import _wait, free_port
from tests.support.standins import StandIn
from tests.support.tools import tool

ROOT = Path(__file__).resolve().parents[1]
SECRETS = {"OpenAIApiKey", "QdrantApiKey", "UpstashRedisRestToken", "ApiKeys", "AdminApiKeys"}


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags kept as {"!Tag": value}."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {f"!{suffix}": value}


_CfnLoader.add_multi_constructor("!", _tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return dict(yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader))  # noqa: S506


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def test_template_key_properties(template: dict[str, Any]) -> None:
    """What cfn-lint lets pass inside AWS::Serverless::Function is checked here."""
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.13"
    assert globals_["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert globals_["AutoPublishAlias"] == "live"
    assert globals_["Layers"] == [{"!Ref": "CommonLayer"}]
    fns = functions(template)
    assert set(fns) == {"ChatFunction", "ChatBufferedFunction", "IngestFunction", "HealthFunction"}
    for name, props in fns.items():
        assert props.get("Runtime", globals_["Runtime"]) == "python3.13"
        code = name.removesuffix("Function").removesuffix("Buffered").lower()
        assert props["CodeUri"] == f"functions/{code}/"
        assert template["Resources"][name]["Metadata"]["BuildMethod"] == "makefile"
        assert 10 <= props["Timeout"] <= 900
    chat = fns["ChatFunction"]
    assert chat["FunctionUrlConfig"]["InvokeMode"] == "RESPONSE_STREAM"
    assert chat["FunctionUrlConfig"]["AuthType"] == "NONE"
    assert chat["Handler"] == "run.sh"
    env = chat["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert env["AWS_LWA_READINESS_CHECK_PATH"] == "/health"
    # v1.1.0-era adapter (layer version 28 on): the SnapStart hooks exist.
    condition, arm, x86 = chat["Layers"][0]["!If"]
    assert condition == "IsArm64"
    for arn, name in (
        (arm["!Sub"], "LambdaAdapterLayerArm64"),
        (x86["!Sub"], "LambdaAdapterLayerX86"),
    ):
        adapter = re.search(rf"{name}:(\d+)$", arn)
        assert adapter and int(adapter[1]) >= 28
    assert env["AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH"].startswith("/_lwa/")
    assert env["AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH"].startswith("/_lwa/")
    assert fns["HealthFunction"]["Handler"] == fns["IngestFunction"]["Handler"] == "app.handler"
    assert fns["ChatBufferedFunction"]["Handler"] == "app.handler"
    assert globals_["Architectures"] == [{"!Ref": "Architecture"}]
    assert template["Parameters"]["Architecture"]["Default"] == "arm64"
    layer = template["Resources"]["CommonLayer"]
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == [{"!Ref": "Architecture"}]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    parameters = template["Parameters"]
    assert {p for p, v in parameters.items() if v.get("NoEcho")} == SECRETS
    # Least privilege: only ingest gets more than logs and its secrets: its own role, scoped to
    # its queue and (when set) the bucket's objects; SAM's generated role would add the managed
    # SQS policy. The others get only the read policies of the secrets they are given (each on
    # the named parameters or secrets, when any is named; health never gets the keys').
    secrets = {"KeySecretsRead": "HasKeySecrets", "BackendSecretsRead": "HasBackendSecrets"}
    for name in ("ChatFunction", "ChatBufferedFunction", "HealthFunction"):
        assert "Role" not in fns[name]
        for policy in fns[name]["Policies"]:
            condition, attached, absent = policy["!If"]
            assert secrets[attached["!Ref"]] == condition and absent == {"!Ref": "AWS::NoValue"}
    assert len(fns["HealthFunction"]["Policies"]) == 1
    assert fns["HealthFunction"]["Policies"][0]["!If"][1] == {"!Ref": "BackendSecretsRead"}
    assert fns["IngestFunction"]["Role"] == {"!GetAtt": "IngestRole.Arn"}
    queue, bucket = template["Resources"]["IngestRole"]["Properties"]["Policies"]
    (statement,) = queue["PolicyDocument"]["Statement"]
    assert statement["Resource"] == {"!GetAtt": "IngestQueue.Arn"}
    assert all(action.startswith("sqs:") for action in statement["Action"])
    statement = bucket["!If"][1]["PolicyDocument"]["Statement"]
    assert [s["Action"] for s in statement] == ["s3:GetObject"]
    assert fns["IngestFunction"]["Events"]["Queue"]["Properties"]["FunctionResponseTypes"] == [
        "ReportBatchItemFailures"
    ]
    # Every setting the functions read from a parameter is one of the documented env vars.
    from docent.config import SECRET_SOURCES, SECRET_VARIABLES, Settings

    known = {name.upper() for name in Settings.model_fields}
    known |= {f"{name}{suffix}" for name in SECRET_VARIABLES for suffix in SECRET_SOURCES}
    for variable in globals_["Environment"]["Variables"]:
        assert variable in known or variable.startswith("POWERTOOLS_"), variable
    for props in fns.values():
        for variable in (props.get("Environment") or {}).get("Variables", {}):
            assert variable in known or variable.startswith(("AWS_LWA_", "AWS_LAMBDA_")), variable


def test_template_routes_are_the_apps_routes(template: dict[str, Any]) -> None:
    from functions.bundle import app as bundle

    http_routes = {
        (
            event["Properties"]["Method"],
            event["Properties"]["Path"].replace("{id}", "{document_id}"),
        )
        for props in functions(template).values()
        for event in props.get("Events", {}).values()
        if event["Type"] == "HttpApi"
    }
    paths = bundle.openapi()["paths"]
    app_routes = {(m.upper(), p) for p, item in paths.items() for m in item}
    assert http_routes == app_routes


def test_sam_validate_lint() -> None:
    result = subprocess.run(
        [tool("sam"), "validate", "--lint"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def sam_build(sam_built: Path) -> Path:
    return sam_built


@pytest.mark.slow
@pytest.mark.timeout(1200)  # may run the session's `sam build` (downloads on a fresh machine)
def test_sam_build_layer_holds_the_locked_versions_for_python_3_13(sam_build: Path) -> None:
    """The common layer and the ingest layer together hold every locked version, each once;
    the document parsers only in the ingest layer."""
    layers = {}
    for layer in ("CommonLayer", "IngestLayer"):
        installed = {}
        for dist in (sam_build / layer / "python").glob("*.dist-info"):
            name, version = dist.name.removesuffix(".dist-info").rsplit("-", 1)
            installed[re.sub(r"[-_.]+", "-", name).lower()] = version
        layers[layer] = installed
    assert not set(layers["CommonLayer"]) & set(layers["IngestLayer"])
    installed = {**layers["CommonLayer"], **layers["IngestLayer"]}
    locked = {}
    for line in (ROOT / "layers/common/requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            locked[re.sub(r"[-_.]+", "-", name).lower()] = version
    assert {name: installed.get(name) for name in locked} == locked
    assert {"pypdf", "selectolax", "markdown-it-py"} <= set(layers["IngestLayer"])
    site = sam_build / "CommonLayer" / "python"
    assert (site / "docent" / "encodings" / ".complete").exists()
    natives = [p.name for p in site.rglob("*.so") if "cpython" in p.name]
    assert natives and all("cpython-313-x86_64" in n for n in natives), natives[:5]
    for name in ("Chat", "ChatBuffered", "Ingest", "Health"):
        assert (sam_build / f"{name}Function" / "app.py").exists()
    assert os.access(sam_build / "ChatFunction" / "run.sh", os.X_OK)


def test_hadolint_passes_the_spaces_dockerfile() -> None:
    result = subprocess.run(
        [tool("hadolint"), "Dockerfile.spaces"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def dockerfile() -> tuple[dict[str, str], list[str]]:
    """The final stage's ENV and CMD of Dockerfile.spaces."""
    text = (ROOT / "Dockerfile.spaces").read_text().replace("\\\n", " ")
    final = text.split("\nFROM ")[-1]
    env: dict[str, str] = {}
    command: list[str] = []
    for line in final.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, value = pair.split("=", 1)
                env[key] = value
        if line.startswith("CMD "):
            command = json.loads(line[4:])
    return env, command


def test_spaces_image_runs_as_user_1000_on_7860() -> None:
    text = (ROOT / "Dockerfile.spaces").read_text()
    assert "useradd --create-home --uid 1000 user" in text
    assert "\nUSER 1000\n" in text and "EXPOSE 7860" in text and "HEALTHCHECK" in text
    _, command = dockerfile()
    assert command[:2] == ["uvicorn", "functions.bundle:app"]
    assert "--no-proxy-headers" in command and command[command.index("--port") + 1] == "7860"
    readme = (ROOT / "README.md").read_text()
    front = readme.split("---")[1]
    assert "sdk: docker" in front and "app_port: 7860" in front


@pytest.mark.slow
def test_the_image_start_command_serves_health(tmp_path: Path) -> None:
    """The image's exact CMD and ENV (paths moved into a temp home) in the test venv."""
    env, command = dockerfile()
    home = tmp_path / "home"
    shutil.copytree(ROOT / "docs", home / "app" / "docs")
    env = {k: v.replace("/home/user", str(home)) for k, v in env.items()}
    env.pop("PATH", None)
    port = free_port()  # the image binds 7860; here any free port, nothing else changed
    command[command.index("--port") + 1] = str(port)
    venv_bin = str(ROOT / ".venv" / "bin")
    process = subprocess.Popen(
        [f"{venv_bin}/{command[0]}", *command[1:]],
        cwd=home / "app",
        env={**os.environ, **env, "PATH": f"{venv_bin}:{os.environ['PATH']}",
             "ADMIN_API_KEYS": "k", "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(lambda: httpx.get(f"{url}/health").status_code == 200, "image command", process)
        ready = httpx.get(f"{url}/health/ready").json()
        assert ready["status"] == "ok"
        # The sample corpus was ingested into the data directory at start.
        listing = httpx.get(f"{url}/documents", headers={"X-API-Key": "k"}).json()
        assert len(listing["documents"]) >= 5
        assert (home / "data" / "qdrant").exists()
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def chat_run_sh(tmp_path: Path, standin: tuple[str, StandIn]) -> Iterator[tuple[str, StandIn]]:
    """functions/chat/run.sh as the Web Adapter would start it, on an ingested index."""
    import asyncio

    from docent.config import load_settings
    from docent.services import Services

    url, state = standin
    settings = load_settings(qdrant_path=str(tmp_path / "qdrant"), embedding_provider="none")

    async def ingest() -> None:
        from docent.ingest import DocumentIn

        services = Services(settings)
        docs = [DocumentIn(d["id"], d["text"]) for d in corpus_documents()]
        await services.ingestor.ingest(docs)
        await services.aclose()

    asyncio.run(ingest())
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "LAMBDA_TASK_ROOT": str(ROOT / "functions" / "chat"),
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT / "layers" / "common"),
        "QDRANT_PATH": str(tmp_path / "qdrant"),
        "OPENAI_BASE_URL": url,
        "EMBEDDING_PROVIDER": "none",
        "SAMPLE_CORPUS": "",
    }
    process = subprocess.Popen(
        [str(ROOT / "functions/chat/run.sh")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(f"{base}/health").status_code in (200, 404), "run.sh", process)
        yield base, state
    finally:
        process.terminate()
        process.wait(10)


def test_run_sh_streams_events_as_they_are_written(chat_run_sh: tuple[str, StandIn]) -> None:
    """A buffered path would deliver every event at the end: timestamps tell them apart."""
    base, state = chat_run_sh
    state.first_token_s = 1.5
    state.token_interval_s = 0.1
    arrivals: list[tuple[float, dict[str, Any]]] = []
    started = time.monotonic()
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", f"{base}/chat", json={"question": "How do I install Docent?"}) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data:"):
                arrivals.append((time.monotonic() - started, json.loads(line[5:])))
    kinds = [e["type"] for _, e in arrivals]
    assert kinds[0] == "sources" and kinds[-1] == "done"
    sources_at = arrivals[0][0]
    chunk_times = [t for t, e in arrivals if e["type"] == "chunk"]
    # Sent at once, not held until the model's first token 1.5 s later (the first request of
    # a fresh process also opens the index, so no absolute bound on `sources_at` here).
    assert chunk_times[0] - sources_at > 1.0
    assert chunk_times[-1] - chunk_times[0] > 0.5  # chunks arrive as generated, spread out
