"""Real local servers for the tests: redis-server (installed if missing) and the Upstash gateway.

Each starts on a free port and stops after the session; nothing depends on services the
machine may or may not be running.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

GATEWAY_TOKEN = "gateway-test-token"
STARTUP_ERROR_BYTES = 4000  # of a failed start's standard error, in the error raised


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: object, what: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except (OSError, httpx.HTTPError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start (exit {process.poll()})")
        time.sleep(0.05)


@contextmanager
def background_process(
    command: list[str], ready: object, what: str, **popen: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """`command` in its own process, yielded once `ready()` holds; stopped on exit (killed if
    it does not stop). Standard output is discarded and standard error kept in a temporary file
    for a process that fails to start, whose error then ends with it (unless `stdout`/`stderr`
    say otherwise)."""
    popen.setdefault("stdout", subprocess.DEVNULL)
    with ExitStack() as stack:
        errors = None
        if "stderr" not in popen:
            errors = popen["stderr"] = stack.enter_context(tempfile.TemporaryFile())
        process = subprocess.Popen(command, **popen)
        try:
            try:
                _wait(ready, what, process)
            except RuntimeError as exc:
                if errors is None:
                    raise
                errors.seek(0, os.SEEK_END)
                errors.seek(max(0, errors.tell() - STARTUP_ERROR_BYTES))
                tail = errors.read().decode(errors="replace").strip()
                raise RuntimeError(f"{exc}; its standard error ends:\n{tail}") from None
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate `process` and wait for it; killed if it has not ended within 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def ensure_redis_server() -> str:
    """The redis-server binary, installed from Debian's packages when absent."""
    found = shutil.which("redis-server")
    if found:
        return found
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True)
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("redis-server could not be installed")
    return found


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway Redis (no persistence) on a free port; yields its URL."""
    binary = ensure_redis_server()
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:

        def ping() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")

        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", folder, "--protected-mode", "no"]  # fmt: skip
        with background_process(command, ping, "redis-server"):
            yield f"redis://127.0.0.1:{port}/0"


@contextmanager
def gateway_server(redis_url: str, token: str = GATEWAY_TOKEN) -> Iterator[str]:
    """`docent gateway` in its own process; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        response = httpx.post(url, json=["PING"], headers={"Authorization": f"Bearer {token}"})
        return response.status_code == 200

    command = [sys.executable, "-m", "docent.gateway", "--redis-url", redis_url,
               "--token", token, "--port", str(port)]  # fmt: skip
    with background_process(command, ready, "gateway"):
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def gateway_url(redis_url: str) -> Iterator[str]:
    with gateway_server(redis_url) as url:
        yield url


@contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers (a hung dependency)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        listener.close()


def log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a process's log file ('' if it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def docent_server(
    env: dict[str, str], data_dir: str, log: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`docent serve` in its own process (its own interpreter and memory): (base URL, process).

    Its output goes to `log` when given (a failed start then shows its tail), else nowhere.
    """
    port = free_port()
    full_env = {
        **os.environ,
        "QDRANT_PATH": f"{data_dir}/qdrant",
        "SAMPLE_CORPUS": "",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "docent.cli", "serve", "--host", "127.0.0.1", "--port",
               str(port)]  # fmt: skip
    with ExitStack() as stack:
        output: Any = stack.enter_context(log.open("wb")) if log else subprocess.DEVNULL
        try:
            process = stack.enter_context(
                background_process(
                    command,
                    lambda: httpx.get(f"{url}/health", timeout=1).status_code == 200,
                    "docent",
                    env=full_env,
                    stdout=output,
                    stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
                )
            )
        except RuntimeError as exc:
            if log is None:
                raise
            raise RuntimeError(f"{exc}: {log_tail(log)}") from exc
        yield url, process


@contextmanager
def docent_process(env: dict[str, str], data_dir: str) -> Iterator[str]:
    """`docent serve` in its own process; yields its base URL."""
    with docent_server(env, data_dir) as (url, _):
        yield url
