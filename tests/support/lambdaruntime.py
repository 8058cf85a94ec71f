"""Built Lambda functions run as Lambda runs them, on this machine.

- `RuntimeAPI`: the documented Lambda Runtime API (2018-06-01): `GET .../invocation/next` hands
  out queued events with Lambda's headers, `POST .../invocation/{id}/response|error` return
  results, `init/error`, `restore/next` and `restore/error` are recorded (SnapStart).
- `runtime_site()`: AWS's runtime interface client (`awslambdaric`, which brings the SnapStart
  hooks' `snapshot_restore_py`) and boto3 (the Lambda runtime provides both), installed once for
  Python 3.13 in a cached venv: the stand-in for Lambda's /var/runtime.
- `lambda_function()`: one function in a fresh Python 3.13 interpreter with only the built
  layer (as /opt/python) and the built function code on its path, both read-only copies, with
  PYTHONDONTWRITEBYTECODE=1 as on Lambda, driven by awslambdaric against a `RuntimeAPI`.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.servers import stop

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("DOCENT_CACHE", Path.home() / ".cache" / "docent"))
# What Lambda's Python 3.13 runtime provides beside the function (pinned like the rest).
RUNTIME_PACKAGES = ("awslambdaric==4.2.2", "boto3==1.44.8")
PREFIX = "/2018-06-01/runtime"


def python313() -> str:
    """The Lambda runtime's Python version on this machine (pyenv's), or a clear failure."""
    found = sorted((Path.home() / ".pyenv" / "versions").glob("3.13*/bin/python3.13"))
    if found:
        return str(found[-1])
    on_path = shutil.which("python3.13")
    if on_path and subprocess.run([on_path, "-V"], capture_output=True).returncode == 0:
        return on_path
    raise RuntimeError("Python 3.13 (the template's runtime) is needed: pyenv install 3.13")


def runtime_site() -> Path:
    """site-packages of the cached Python 3.13 venv holding awslambdaric and boto3."""
    tag = "-".join(p.replace("==", "") for p in RUNTIME_PACKAGES)
    venv = CACHE / f"lambda-runtime-py313-{tag}"
    site = venv / "lib" / "python3.13" / "site-packages"
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python313(), "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
             "--disable-pip-version-check", *RUNTIME_PACKAGES],
            check=True,
        )  # fmt: skip
        (venv / ".complete").touch()
    return site


@dataclass
class Invocation:
    request_id: str
    event: dict[str, Any]
    deadline_ms: int
    done: threading.Event = field(default_factory=threading.Event)
    kind: str = ""  # response | error
    body: Any = None


class RuntimeAPI:
    """A local implementation of the Lambda Runtime API for one function instance."""

    def __init__(self, function_arn: str) -> None:
        self.function_arn = function_arn
        self.pending: queue.Queue[Invocation] = queue.Queue()
        self.invocations: dict[str, Invocation] = {}
        self.init_errors: list[dict[str, Any]] = []
        self.restore_errors: list[dict[str, Any]] = []
        self.restored = threading.Event()
        self.polled = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(
                self, status: int, body: bytes = b"{}", headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    return json.loads(raw) if raw else None
                except ValueError:
                    return raw.decode(errors="replace")

            def do_GET(self) -> None:
                if self.path == f"{PREFIX}/invocation/next":
                    api.polled.set()
                    invocation = api.pending.get()
                    self._reply(
                        200,
                        json.dumps(invocation.event).encode(),
                        {
                            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                            "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
                            "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-"
                            f"{uuid.uuid4().hex[:24]};Sampled=0",
                        },
                    )
                elif self.path == f"{PREFIX}/restore/next":
                    api.restored.set()
                    self._reply(200)
                else:
                    self._reply(404, b'{"errorMessage":"unknown path"}')

            def do_POST(self) -> None:
                body = self._body()
                parts = self.path.removeprefix(PREFIX + "/").split("/")
                if parts[0] == "invocation" and len(parts) == 3 and parts[1] in api.invocations:
                    invocation = api.invocations[parts[1]]
                    invocation.kind, invocation.body = parts[2], body
                    invocation.done.set()
                    self._reply(202)
                elif parts == ["init", "error"]:
                    api.init_errors.append({"type": self.headers.get(
                        "Lambda-Runtime-Function-Error-Type"), "body": body})  # fmt: skip
                    self._reply(202)
                elif parts == ["restore", "error"]:
                    api.restore_errors.append(body)
                    self._reply(202)
                else:
                    self._reply(404, b'{"errorMessage":"unknown path"}')

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def invoke(self, event: dict[str, Any], timeout_s: float = 60) -> Invocation:
        """Hand `event` to the function and wait for its response or error."""
        invocation = Invocation(str(uuid.uuid4()), event, int((time.time() + timeout_s) * 1000))
        self.invocations[invocation.request_id] = invocation
        self.pending.put(invocation)
        if not invocation.done.wait(timeout_s):
            raise TimeoutError(f"no answer to {invocation.request_id} in {timeout_s}s")
        return invocation

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def read_only_copy(source: Path | list[Path], target: Path) -> Path:
    """`source` copied to `target` with every write bit removed; several sources are merged, as
    Lambda extracts every layer of a function into one /opt."""
    for each in source if isinstance(source, list) else [source]:
        shutil.copytree(each, target, symlinks=True, dirs_exist_ok=True)
    for folder, _dirs, files in os.walk(target):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode & 0o555)
        os.chmod(folder, 0o555)  # noqa: S103  # read and enter, as /opt on Lambda
    return target


def make_writable(path: Path) -> None:
    for folder, _, files in os.walk(path):
        os.chmod(folder, 0o755)  # noqa: S103  # back to a normal temp folder
        for name in files:
            full = os.path.join(folder, name)
            if not os.path.islink(full):
                os.chmod(full, 0o644)


def listing(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@dataclass
class LambdaInstance:
    """A running function: its Runtime API, process, and the folders it runs from."""

    name: str
    api: RuntimeAPI
    process: subprocess.Popen[bytes]
    task_root: Path
    layer_root: Path
    log: Path

    def invoke(self, event: dict[str, Any], timeout_s: float = 60) -> Invocation:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited {self.process.returncode}: {self.output()}")
        return self.api.invoke(event, timeout_s)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def lambda_environment(
    name: str, handler_env: dict[str, str], layer: Path, task: Path, tmp: Path, api: str
) -> dict[str, str]:
    """What the Lambda Python 3.13 runtime sets, plus the function's template environment."""
    return {
        "PATH": f"{Path(python313()).parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "HOME": str(tmp),
        "TMPDIR": str(tmp),
        "LAMBDA_TASK_ROOT": str(task),
        "LAMBDA_RUNTIME_DIR": str(runtime_site()),
        "AWS_LAMBDA_RUNTIME_API": api,
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "1",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/26/[1]0123456789abcdef",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        # Lambda's order: the task, the layers (/opt/python), then the runtime.
        "PYTHONPATH": f"{task}:{layer}:{runtime_site()}",
        **handler_env,
    }


@contextmanager
def lambda_function(
    name: str,
    built: Path,
    layers: list[Path],
    handler: str,
    env: dict[str, str],
    tmp: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LambdaInstance]:
    """The built function `built` with its built layers (merged as /opt) under awslambdaric in
    Python 3.13; read-only copies; stopped and checked unwritten on exit."""
    tmp.mkdir(parents=True, exist_ok=True)
    task = read_only_copy(built, tmp / "task")
    opt = read_only_copy(layers, tmp / "opt")
    before = listing(task) | {f"opt/{p}" for p in listing(opt)}
    scratch = tmp / "tmp"
    scratch.mkdir()
    api = RuntimeAPI(f"arn:aws:lambda:us-east-1:123456789012:function:{name}")
    environment = lambda_environment(name, env, opt / "python", task, scratch, api.address)
    environment.update(extra_env or {})
    log = tmp / "function.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [python313(), "-m", "awslambdaric", handler],
            cwd=task,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    instance = LambdaInstance(name, api, process, task, opt, log)
    try:
        deadline = time.monotonic() + 60
        while not api.polled.wait(0.1):
            if process.poll() is not None or api.init_errors or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {api.init_errors} {instance.output()}")
        yield instance
    finally:
        stop(process)
        api.close()
        after = listing(task) | {f"opt/{p}" for p in listing(opt)}
        make_writable(task)
        make_writable(opt)
        written = after - before
        assert not written, f"{name} wrote into its code or layer: {sorted(written)[:10]}"


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server (S3, SSM, Secrets Manager, ...): the AWS endpoint Lambda's code talks to."""
    import httpx

    from tests.support.servers import background_process, free_port
    from tests.support.tools import tool

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    ready = lambda: httpx.get(f"{url}/moto-api/").status_code == 200  # noqa: E731
    with background_process(command, ready, "moto"):
        yield url


def aws_client(service: str, endpoint: str) -> Any:
    """A boto3 client for `service` on the moto server at `endpoint`."""
    import boto3

    return boto3.client(
        service, endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
