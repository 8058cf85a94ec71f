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
from contextlib import contextmanager

import httpx
import pytest

GATEWAY_TOKEN = "gateway-test-token"


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
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", folder, "--protected-mode", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def ping() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")

        try:
            _wait(ping, "redis-server", process)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


@contextmanager
def gateway_server(redis_url: str, token: str = GATEWAY_TOKEN) -> Iterator[str]:
    """`docent gateway` in its own process; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "docent.gateway", "--redis-url", redis_url,
         "--token", token, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        response = httpx.post(url, json=["PING"], headers={"Authorization": f"Bearer {token}"})
        return response.status_code == 200

    try:
        _wait(ready, "gateway", process)
        yield url
    finally:
        process.terminate()
        process.wait(10)


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


@contextmanager
def docent_server(
    env: dict[str, str], data_dir: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`docent serve` in its own process (its own interpreter and memory): (base URL, process)."""
    port = free_port()
    full_env = {
        **os.environ,
        "QDRANT_PATH": f"{data_dir}/qdrant",
        "SAMPLE_CORPUS": "",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "docent.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(f"{url}/health", timeout=1).status_code == 200, "docent", process)
        yield url, process
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def docent_process(env: dict[str, str], data_dir: str) -> Iterator[str]:
    """`docent serve` in its own process; yields its base URL."""
    with docent_server(env, data_dir) as (url, _):
        yield url
