"""SnapStart hooks, called as the runtime (snapshot_restore_py's registries, as awslambdaric
runs them) and the Web Adapter (empty POSTs to the hook paths) call them. The built functions
run the same hooks under awslambdaric in test_built_functions.py."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from docent import snapstart
from tests.conftest import serve

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from docent.config import get_settings
    from docent.services import reset_services

    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "qdrant"))
    get_settings.cache_clear()
    reset_services(None)
    yield
    reset_services(None)
    get_settings.cache_clear()


def test_before_snapshot_warms_and_holds_no_client(fresh: None) -> None:
    from docent import services, tokens

    services.get_services().store  # noqa: B018  # a client the init phase created
    tokens._encoding.cache_clear()
    imported = snapstart.before_snapshot("chat")
    assert {"docent.chat", "docent.retrieval", "docent.edge"} <= set(imported)
    assert tokens._encoding.cache_info().currsize == 1  # the encoding is built
    assert services._services is None  # nothing open goes into the snapshot


def test_restored_copies_draw_different_randomness(fresh: None) -> None:
    """Two environments restored from one snapshot start with the same random state."""
    draws = []
    for _ in range(2):
        random.seed(1234)  # the state the snapshot holds
        snapstart.after_restore()
        draws.append([random.random() for _ in range(3)])
    assert draws[0] != draws[1]


def test_after_restore_gives_new_clients(fresh: None) -> None:
    from docent.services import get_services

    before = get_services()
    snapstart.after_restore()
    assert get_services() is not before


def test_the_runtime_registry_holds_both_hooks_for_each_function() -> None:
    """What awslambdaric's hooks runner reads: snapshot_restore_py's registries."""
    code = (
        "import functions.health.app, functions.ingest.app, functions.chat.app\n"
        "from snapshot_restore_py import get_before_snapshot, get_after_restore\n"
        "print(sorted(a[0] for _, a, _ in get_before_snapshot()), len(get_after_restore()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "['chat', 'health', 'ingest'] 3"


def test_adapter_hooks_answer_only_where_configured(fresh: None) -> None:
    from fastapi import FastAPI

    from docent import services

    app = FastAPI()
    snapstart.hook_routes(app, "chat", ("/_lwa/before", "/_lwa/after"))
    services.get_services()
    with serve(app) as url:
        before = httpx.post(f"{url}/_lwa/before", timeout=30)
        assert before.status_code == 204 and services._services is None
        services.get_services()
        assert httpx.post(f"{url}/_lwa/after").status_code == 204
        assert services._services is None
    bare = FastAPI()
    snapstart.hook_routes(bare, "chat", (None, None))
    assert [r for r in bare.routes if "_lwa" in getattr(r, "path", "")] == []
