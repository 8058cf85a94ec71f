"""The test support's background servers: a server that fails to start says why."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.servers import STARTUP_ERROR_BYTES, background_process


def test_a_server_that_fails_to_start_shows_the_end_of_its_standard_error() -> None:
    # A long traceback: what is shown is its end, where the exception is.
    script = (
        "import sys\n"
        "sys.stderr.write('noise ' * 5000 + '\\n')\n"
        "raise ModuleNotFoundError(\"No module named 'pydantic_settings'\")\n"
    )
    starting = background_process([sys.executable, "-c", script], lambda: False, "docent")
    with pytest.raises(RuntimeError) as failed, starting:
        pass
    message = str(failed.value)
    assert message.startswith("docent did not start (exit 1); its standard error ends:")
    assert message.endswith("ModuleNotFoundError: No module named 'pydantic_settings'")
    assert len(message) < STARTUP_ERROR_BYTES + 100  # the tail, not the whole output


def test_a_server_whose_standard_error_is_taken_keeps_the_plain_error() -> None:
    command = [sys.executable, "-c", "import sys; sys.stderr.write('quokka'); sys.exit(3)"]
    starting = background_process(command, lambda: False, "docent", stderr=subprocess.DEVNULL)
    with pytest.raises(RuntimeError, match=r"^docent did not start \(exit 3\)$"), starting:
        pass


def test_a_server_that_starts_runs_and_is_stopped() -> None:
    command = [sys.executable, "-c", "import sys, time; sys.stderr.write('up'); time.sleep(60)"]
    with background_process(command, lambda: True, "sleeper") as process:
        assert process.poll() is None
    assert process.returncode is not None  # stopped on leaving
