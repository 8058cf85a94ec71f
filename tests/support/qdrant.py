"""The Qdrant server stand-in (`python -m docent.qdrantstandin`, over Qdrant Edge) in its own
process on a free port, for the tests that need a Qdrant server's REST API."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.support.servers import background_process, free_port


@contextmanager
def qdrant_standin(api_key: str | None = None, host: str = "127.0.0.1") -> Iterator[str]:
    """A stand-in server over a throwaway folder; yields its URL. (qdrant-client warns when an
    API key goes over plain HTTP, and the tests turn warnings into errors: no key by default.)"""
    port = free_port()
    url = f"http://{host}:{port}"
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "docent.qdrantstandin", "--path", folder,
                   "--host", host, "--port", str(port)]  # fmt: skip
        if api_key:
            command += ["--api-key", api_key]
        ready = lambda: httpx.get(f"{url}/readyz", timeout=1).status_code == 200  # noqa: E731
        with background_process(command, ready, "qdrant stand-in"):
            yield url


@pytest.fixture(scope="session")
def qdrant_url() -> Iterator[str]:
    with qdrant_standin() as url:
        yield url
