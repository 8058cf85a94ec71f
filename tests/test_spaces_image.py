"""Dockerfile.spaces followed step by step on this machine, without Docker.

The Dockerfile itself is the script: each instruction of each stage is carried out here (ENV,
WORKDIR, COPY, RUN, USER, HEALTHCHECK, CMD), so the test and the image cannot drift. Differences,
all mechanical: the image's filesystem paths live under a temporary root; the base image's Python
is pyenv's of the same minor version (copied there, as the image has its own); the image's user
1000 is `nobody` (no user is created on this machine); pip keeps its cache between runs. The
server then runs as that unprivileged user with only the data folder writable: /health, the
HEALTHCHECK command, a first chat, and JSON logs on stdout.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.lambdaruntime import python313
from tests.support.servers import free_port

# The build installs every requirement for Python 3.13: on a fresh machine, downloads too.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1200),
    # Serving as another user (the image's USER) and chown need root, as CI and these machines run.
    pytest.mark.skipif(os.geteuid() != 0, reason="runs the server as another user: needs root"),
]

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534
IMAGE_ROOTS = ("/opt/", "/src", "/home/", "/tmp/")


@dataclass
class Stage:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: int | None = None
    healthcheck: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of Dockerfile.spaces, continuation lines joined."""
    text = (ROOT / "Dockerfile.spaces").read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


class Builder:
    """Carries out the Dockerfile's instructions under `root` (the image's `/`)."""

    def __init__(self, root: Path, python_home: Path) -> None:
        self.root = root
        self.python_home = python_home
        self.stage = Stage("")
        self.stages: dict[str, Stage] = {}

    def path(self, image_path: str) -> str:
        return str(self.root) + image_path if image_path.startswith("/") else image_path

    def remap(self, text: str) -> str:
        """Image paths in a command or value, moved under the temporary root."""
        pattern = "|".join(re.escape(p) for p in IMAGE_ROOTS)
        return re.sub(rf"(?<![\w./])({pattern})", lambda m: f"{self.root}{m[1]}", text)

    def environment(self) -> dict[str, str]:
        # The base image's PATH: its Python first (pyenv's copy here), then the system's.
        env = {
            "PATH": f"{self.python_home}/bin:/usr/local/bin:/usr/bin:/bin",
            "LD_LIBRARY_PATH": f"{self.python_home}/lib",  # pyenv's python finds its libpython
            "LANG": "C.UTF-8",
            **self.stage.env,
        }
        env.pop("PIP_NO_CACHE_DIR", None)  # the wheels stay cached between test runs
        return env

    def run(self, keyword: str, args: str) -> None:
        stage = self.stage
        if keyword == "FROM":
            parts = args.split()
            self.stage = Stage(parts[-1] if "AS" in [p.upper() for p in parts] else "final")
            self.stages[self.stage.name] = self.stage
            Path(self.root).mkdir(exist_ok=True)
        elif keyword == "ENV":
            for pair in shlex.split(args):
                key, value = pair.split("=", 1)
                value = self.remap(value).replace("$PATH", self.environment()["PATH"])
                stage.env[key] = value
        elif keyword == "WORKDIR":
            stage.workdir = args
            Path(self.path(args)).mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            self.copy(shlex.split(args))
        elif keyword == "RUN":
            if "useradd" in args:
                # The image's user 1000 and its home: `nobody` stands in for it here.
                home = Path(self.path("/home/user"))
                home.mkdir(parents=True, exist_ok=True)
                os.chown(home, NOBODY, NOBODY)
                return
            command = self.remap(args).replace("user:user", f"{NOBODY}:{NOBODY}")
            subprocess.run(
                ["sh", "-c", command],
                cwd=self.path(stage.workdir),
                env=self.environment(),
                check=True,
                capture_output=True,
                timeout=900,
            )
        elif keyword == "USER":
            stage.user = NOBODY  # 1000 in the image
        elif keyword == "HEALTHCHECK":
            stage.healthcheck = json.loads(args[args.index("CMD") + 3 :].strip())
        elif keyword == "CMD":
            stage.cmd = json.loads(args)
        elif keyword != "EXPOSE":
            raise AssertionError(f"the test does not know {keyword}: teach it")

    def copy(self, args: list[str]) -> None:
        chown = next((a for a in args if a.startswith("--chown=")), None)
        source_stage = next((a for a in args if a.startswith("--from=")), None)
        *sources, target = [a for a in args if not a.startswith("--")]
        for source in sources:
            # From the build context (the repository) or a stage (already under the root).
            origin = Path(self.path(source)) if source_stage else ROOT / source
            base = Path(self.path(self.stage.workdir))
            destination = Path(self.path(target)) if target.startswith("/") else base / target
            if origin.is_dir():
                if origin != destination:
                    shutil.copytree(origin, destination, dirs_exist_ok=True, symlinks=True)
            else:
                if target.endswith("/"):
                    destination = destination / origin.name
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, destination)
            if chown:
                for folder, _, files in os.walk(destination):
                    os.chown(folder, NOBODY, NOBODY)
                    for name in files:
                        os.chown(os.path.join(folder, name), NOBODY, NOBODY)


@pytest.fixture(scope="module")
def image() -> Iterator[Builder]:
    root = Path(tempfile.mkdtemp(prefix="docent-image-"))
    os.chmod(root, 0o755)  # noqa: S103  # the image's / : readable by its user
    python_home = root / "usr-local"  # the base image's own Python install
    shutil.copytree(Path(python313()).parents[1], python_home, symlinks=True)
    builder = Builder(root, python_home)
    try:
        for keyword, args in instructions():
            builder.run(keyword, args)
        yield builder
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_syntax_directive_comes_first_and_the_context_is_filtered() -> None:
    first = (ROOT / "Dockerfile.spaces").read_text().splitlines()[0]
    assert first.startswith("# syntax=docker/dockerfile:")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".data", "**/__pycache__"} <= set(ignored)


def test_the_image_serves_as_its_user_with_json_logs(image: Builder) -> None:
    final = image.stages["final"]
    assert final.user == NOBODY and final.cmd and final.healthcheck
    env = {**image.environment(), "ADMIN_API_KEYS": "spaces-admin-key"}  # a Space secret
    command = list(final.cmd)
    port = "7860"
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 7860)) == 0:  # taken here: any free port
            port = str(free_port())
    command[command.index("--port") + 1] = port
    venv = Path(image.path("/opt/venv"))
    # The installed code is compiled and not writable by the user; only the data folder is.
    assert list((venv / "lib").rglob("functions/__pycache__/bundle.cpython-313.pyc"))
    assert os.stat(venv).st_uid == 0 and not os.stat(venv).st_mode & 0o002
    assert os.stat(image.path("/home/user/data")).st_uid == NOBODY
    log = Path(image.path("/")) / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=image.path(final.workdir),
            env=env,
            user=NOBODY,
            group=NOBODY,
            stdout=output,
            stderr=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the image's command did not serve /health"
            time.sleep(0.2)
        # The image's HEALTHCHECK, as Docker runs it (in the container, as its user).
        check = [c.replace(":7860/", f":{port}/") for c in final.healthcheck]
        assert subprocess.run(check, env=env, user=NOBODY, timeout=10).returncode == 0
        # The first chat answers from the sample corpus ingested at start.
        answer = httpx.post(
            f"{url}/chat",
            json={"question": "How do I deploy Docent to Hugging Face Spaces?"},
            headers={"Accept": "application/json"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["answered"] is True and answer.json()["sources"]
        assert list(Path(image.path("/home/user/data")).iterdir())  # the index is there
    finally:
        process.terminate()
        process.wait(15)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every stdout line is one JSON object
    requests = [r for r in records if r.get("message") == "request"]
    assert {r["route"] for r in requests} >= {"/health", "/chat"}
    assert all(r["request_id"] and r["status"] for r in requests)
