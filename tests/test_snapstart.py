"""SnapStart hooks, called as the runtime (snapshot_restore_py's registries, as awslambdaric
runs them) and the Web Adapter (empty POSTs to the hook paths) call them. The built functions
run the same hooks under awslambdaric in test_built_functions.py."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from docent import aws, snapstart
from docent.edge import EdgeStore
from docent.services import Services, get_services
from tests.conftest import load_settings, serve
from tests.support.interpreter import fresh_python


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A new container: settings read anew, so the process's services are built anew."""
    from docent.config import get_settings

    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "qdrant"))
    get_settings.cache_clear()
    yield
    aws._run(get_services().aclose())
    get_settings.cache_clear()


def run_registered(hooks: list[tuple[object, tuple[object, ...], dict[str, object]]]) -> None:
    """Call the hooks in a snapshot_restore_py registry, as awslambdaric runs them."""
    for hook, args, kwargs in hooks:
        hook(*args, **kwargs)  # type: ignore[operator]


def open_store() -> EdgeStore:
    """The process's store with its shard open (its folder lock held), as after a request."""
    store = get_services().store
    assert isinstance(store, EdgeStore)
    aws._run(store.total())
    assert store.lock.held
    return store


def test_before_snapshot_warms_and_holds_no_client(fresh: None) -> None:
    from docent import tokens

    store = open_store()  # a client the init phase created
    tokens._encoding.cache_clear()
    imported = snapstart.before_snapshot("chat")
    assert {"docent.chat", "docent.retrieval", "docent.edge"} <= set(imported)
    assert tokens._encoding.cache_info().currsize == 1  # the encoding is built
    assert not store.lock.held  # nothing open goes into the snapshot
    assert get_services().store is not store


def test_restored_copies_draw_different_randomness(fresh: None) -> None:
    """Two environments restored from one snapshot start with the same random state."""
    draws = []
    for _ in range(2):
        random.seed(1234)  # the state the snapshot holds
        snapstart.after_restore()
        draws.append([random.random() for _ in range(3)])
    assert draws[0] != draws[1]


def test_the_registered_after_restore_hook_gives_new_clients(fresh: None) -> None:
    """The hook the runtime finds in the registry closes the restored copy's clients; the next
    request builds new ones, on the same services, and they work."""
    from snapshot_restore_py import get_after_restore, get_before_snapshot

    services = get_services()
    store = open_store()
    before, after = len(get_before_snapshot()), len(get_after_restore())
    snapstart.register("chat")
    added = get_after_restore()[after:]
    try:
        assert [hook for hook, _, _ in added] == [snapstart.after_restore]
        run_registered(added)
    finally:  # the registries are the process's: leave them as they were
        del get_before_snapshot()[before:], get_after_restore()[after:]
    assert not store.lock.held
    assert get_services() is services
    renewed = open_store()
    assert renewed is not store and aws._run(renewed.total()) == 0


async def test_reconnect_keeps_the_backends_it_was_given(tmp_path: Path) -> None:
    """A backend passed to `Services` is the caller's: reconnect neither closes nor drops it."""
    given = EdgeStore(str(tmp_path / "given"))
    services = Services(load_settings(qdrant_path=str(tmp_path / "built")), store=given)
    await given.total()
    kv = services.kv
    await services.reconnect()
    assert services.store is given and given.lock.held
    assert services.kv is not kv
    await given.aclose()


def test_a_misspelt_backend_is_refused_not_silently_built(tmp_path: Path) -> None:
    """`Services(settings, answer=...)` would otherwise build the real answerer unnoticed."""
    settings = load_settings(qdrant_path=str(tmp_path / "built"))
    with pytest.raises(TypeError, match="no backend named answer"):
        Services(settings, answer=object())  # type: ignore[call-arg]
    assert Services(settings, answerer=None).answerer is not None  # None: build it


def test_the_runtime_registry_holds_both_hooks_for_each_function() -> None:
    """What awslambdaric's hooks runner reads: snapshot_restore_py's registries."""
    code = (
        "import functions.health.app, functions.ingest.app, functions.chat.app\n"
        "from snapshot_restore_py import get_before_snapshot, get_after_restore\n"
        "print(sorted(a[0] for _, a, _ in get_before_snapshot()), len(get_after_restore()))\n"
    )
    assert fresh_python(code) == "['chat', 'health', 'ingest'] 3"


def test_adapter_hooks_answer_only_where_configured(fresh: None) -> None:
    from fastapi import FastAPI

    app = FastAPI()
    snapstart.hook_routes(app, "chat", ("/_lwa/before", "/_lwa/after"))
    with serve(app) as url:
        store = open_store()
        before = httpx.post(f"{url}/_lwa/before", timeout=30)
        assert before.status_code == 204 and not store.lock.held
        store = open_store()
        assert httpx.post(f"{url}/_lwa/after").status_code == 204
        assert not store.lock.held
    bare = FastAPI()
    snapstart.hook_routes(bare, "chat", (None, None))
    assert [r for r in bare.routes if "_lwa" in getattr(r, "path", "")] == []
