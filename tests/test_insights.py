"""Insights (`docent.insights`): recording from the chat pipeline, `POST /feedback`,
`GET`/`DELETE /insights`, on each store: SQLite beside the embedded index, a real Redis, and
the Upstash gateway through the real upstash-redis client.

The stores are driven with an injected clock (retention), and each scripted session must give
the same report on all three (congruence). Over HTTP the bundled app runs under uvicorn.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from docent import insights
from docent.config import load_settings
from docent.insights import (
    DAY_S,
    Answer,
    InsightsStore,
    Page,
    RedisInsights,
    SqliteInsights,
    UpstashInsights,
    day_of,
    iso_day,
    mask,
    normalize,
    report,
)
from tests.conftest import (
    ADMIN_KEY,
    USER_KEY,
    Docent,
    corpus_documents,
    parse_sse,
    running_docent,
)
from tests.support.servers import GATEWAY_TOKEN
from tests.support.windows import clear_of_window_roll

# Redis and the Upstash gateway are servers the test setup starts: marked as such.
STORES = [
    "sqlite",
    pytest.param("redis", marks=pytest.mark.services),
    pytest.param("upstash", marks=pytest.mark.services),
]
# The store tests' "now": today's noon UTC. Redis expires keys by its own (real) clock, so the
# injected clock stays near it; retention is then checked by moving the clock back.
NOW = time.time() // DAY_S * DAY_S + DAY_S / 2
TODAY = iso_day(day_of(NOW))


class Clock:
    """The injected clock: what time the store believes it is."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# Masking and normalising ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+docs@example.co.uk please", "write to [email] please"),
        ("call +44 20 7946 0958 today", "call [phone] today"),
        ("or (555) 123-4567", "or [phone]"),
        ("my account 12345678 is locked", "my account [number] is locked"),
        ("card 4111 1111 1111 1111", "card [number]"),
        ("order 987654", "order [number]"),
        # Left alone: versions, ports, years, short numbers.
        ("python 3.11.4 on port 8080 since 2024", "python 3.11.4 on port 8080 since 2024"),
    ],
)
def test_personal_data_is_masked(text: str, expected: str) -> None:
    assert mask(text) == expected


def test_masking_stays_linear_on_long_input() -> None:
    hostile = "a" * 2000 + "." * 2000 + "1 " * 1000
    started = time.process_time()
    mask(hostile)
    assert time.process_time() - started < 0.5


def test_questions_differing_in_case_space_and_punctuation_are_one() -> None:
    forms = [
        "How do I configure rate limits?",
        "how do i  configure RATE-limits",
        "How do I configure rate limits!!",
    ]
    assert {normalize(f) for f in forms} == {"how do i configure rate limits"}
    assert normalize(mask("Mail me: a@b.io?")) == "mail me [email]"


# Each store -----------------------------------------------------------------------------------


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Stores:
    """Stores of one kind sharing one place (a file, a key prefix), each with its own clock, and
    a look at everything that place holds, read behind the store's back."""

    def __init__(self, kind: str, request: pytest.FixtureRequest, folder: Path) -> None:
        self.kind = kind
        self.request = request
        self.folder = folder
        self.prefix = f"t{uuid.uuid4().hex[:10]}:in"
        self.made: list[Any] = []

    def __call__(self, clock: Clock, retention_days: int = 30) -> InsightsStore:
        store: Any
        if self.kind == "sqlite":
            path = str(self.folder / "docent.insights.sqlite3")
            store = SqliteInsights(path, retention_days=retention_days, clock=clock)
        elif self.kind == "redis":
            url = self.request.getfixturevalue("redis_url")
            # A 5 s bound, not 0.5 s: 100 ratings at once open 100 fresh connections, and on a
            # busy machine one connect overran 0.5 s (a CI run). Timeouts are tested elsewhere.
            store = RedisInsights(
                url, prefix=self.prefix, retention_days=retention_days, clock=clock, timeout_s=5
            )
        else:
            url = self.request.getfixturevalue("gateway_url")
            store = UpstashInsights(
                url, GATEWAY_TOKEN, prefix=self.prefix, retention_days=retention_days, clock=clock
            )
        self.made.append(store)
        return store  # type: ignore[no-any-return]

    async def raw(self) -> str:
        """Everything stored, as text: the SQLite files' bytes, or every key (less the random
        prefix, whose hex once held "555", a secret a test looks for) and value."""
        if self.kind == "sqlite":
            return "".join(p.read_bytes().decode("latin-1") for p in sorted(self.folder.iterdir()))
        client = aioredis.Redis.from_url(self.request.getfixturevalue("redis_url"))
        parts: list[str] = []
        try:
            async for key in client.scan_iter(match=f"{self.prefix}:*"):
                kind = (await client.type(key)).decode()
                parts.append(key.decode().removeprefix(self.prefix))
                if kind == "hash":
                    value: Any = await client.hgetall(key)
                elif kind == "zset":
                    value = await client.zrange(key, 0, -1, withscores=True)
                else:
                    value = await client.get(key)
                parts.append(repr(value))
        finally:
            await client.aclose()
        return "\n".join(parts)

    async def expiry_times(self) -> dict[str, int]:
        """Each Redis key's expiry (unix s; -1 for none)."""
        client = aioredis.Redis.from_url(self.request.getfixturevalue("redis_url"))
        try:
            return {
                k.decode(): int(await client.expiretime(k))
                async for k in client.scan_iter(match=f"{self.prefix}:*")
            }
        finally:
            await client.aclose()

    async def keys(self) -> int:
        """How many rows or keys the place holds."""
        if self.kind == "sqlite":
            import sqlite3

            with sqlite3.connect(self.folder / "docent.insights.sqlite3") as db:
                return sum(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # noqa: S608
                           for t in ("answers", "citations"))  # fmt: skip
        client = aioredis.Redis.from_url(self.request.getfixturevalue("redis_url"))
        try:
            return len([k async for k in client.scan_iter(match=f"{self.prefix}:*")])
        finally:
            await client.aclose()


@pytest.fixture
async def stores(
    store_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Stores]:
    made = Stores(store_kind, request, tmp_path / "qdrant")
    made.folder.mkdir()
    yield made
    for store in made.made:
        await store.aclose()


PAGES = {
    "install": Page("https://docs.example.com/install", "Install"),
    "limits": Page("https://docs.example.com/limits", "Rate limits"),
    "deploy": Page("https://docs.example.com/deploy", "Deploy"),
}


def answer(question: str | None, answered: bool = True, *pages: str) -> Answer:
    masked = mask(question) if question is not None else None
    return Answer(
        uuid.uuid4().hex,
        answered,
        tuple(PAGES[p] for p in pages),
        masked,
        normalize(masked) if masked is not None else None,
    )


async def test_a_scripted_session_gives_the_same_report_on_every_store(stores: Stores) -> None:
    clock = Clock()
    store = stores(clock)
    yesterday = [answer("How do I install it?", True, "install")]
    today = [
        answer("How do I install it?", True, "install", "limits"),
        answer("how do I INSTALL it", True, "install"),
        answer("What are the rate limits?", True, "limits"),
        answer("Can I deploy to Mars?", False),
        answer("can i deploy to mars", False),
        answer("Who wrote this? mail me at jane@example.com", False),
    ]
    clock.now = NOW - DAY_S
    for a in yesterday:
        await store.record(a)
    clock.now = NOW
    for a in today:
        await store.record(a)
    assert await store.rate(today[0].request_id, "up", None)
    assert await store.rate(today[3].request_id, "down", "Nothing about Mars")
    assert await store.rate(today[2].request_id, "down", None)
    assert await store.rate(today[2].request_id, "up", None)  # changed their mind
    assert await store.rate(yesterday[0].request_id, "up", None)
    assert not await store.rate("no-such-answer", "up", None)

    body = report(await store.tally(7), days=7, texts=True, retention_days=30)
    assert body["totals"] == {
        "questions": 7, "answered": 4, "up": 3, "down": 1, "unanswered": 3,
        "answered_share": round(4 / 7, 4),
    }  # fmt: skip
    assert [d["questions"] for d in body["per_day"]] == [0, 0, 0, 0, 0, 1, 6]
    assert body["per_day"][-1] == {
        "day": TODAY, "questions": 6, "answered": 3, "up": 2, "down": 1,
    }  # fmt: skip
    assert body["per_day"][-2]["up"] == 1
    assert body["top_questions"][:2] == [
        {"question": "how do i install it", "count": 3},
        {"question": "can i deploy to mars", "count": 2},
    ]
    assert body["unanswered_questions"] == [
        {"question": "can i deploy to mars", "count": 2},
        {"question": "who wrote this mail me at [email]", "count": 1},
    ]
    assert body["rated_down"] == [
        {
            "request_id": today[3].request_id,
            "day": TODAY,
            "question": "Can I deploy to Mars?",
            "comment": "Nothing about Mars",
        }
    ]
    assert body["most_cited_pages"] == [
        {"url": "https://docs.example.com/install", "title": "Install", "citations": 3},
        {"url": "https://docs.example.com/limits", "title": "Rate limits", "citations": 2},
    ]
    assert body["least_cited_pages"][0]["title"] == "Rate limits"
    # Texts off: the same figures, no question and no comment.
    off = report(await store.tally(7), days=7, texts=False, retention_days=30)
    assert off["totals"] == body["totals"] and off["per_day"] == body["per_day"]
    assert off["top_questions"] == off["unanswered_questions"] == []
    assert off["rated_down"] == [{"request_id": today[3].request_id, "day": TODAY}]
    if stores.kind != "sqlite":  # bounded: every key, ratings' included, ends with its day
        ends = await stores.expiry_times()
        assert any(":r:" in k for k in ends) and any(":a:" in k for k in ends)
        assert set(ends.values()) == {(day_of(NOW) + d + 30) * DAY_S for d in (-1, 0)}, ends
    # One day: yesterday's answer is outside it.
    assert (
        report(await store.tally(1), days=1, texts=True, retention_days=30)["totals"]["questions"]
        == 6
    )


async def test_retention_removes_what_is_older(stores: Stores) -> None:
    clock = Clock()
    store = stores(clock, retention_days=3)
    old = answer("An old question about deploys", False, "deploy")
    kept = answer("A recent question about limits", True, "limits")
    clock.now = NOW - 3 * DAY_S  # its day's retention ends today at midnight: gone now
    await store.record(old)
    clock.now = NOW - 2 * DAY_S
    await store.record(kept)
    clock.now = NOW
    body = report(await store.tally(3), days=3, texts=True, retention_days=3)
    assert body["totals"]["questions"] == 1
    assert body["top_questions"] == [{"question": "a recent question about limits", "count": 1}]
    assert [p["title"] for p in body["most_cited_pages"]] == ["Rate limits"]
    assert not await store.rate(old.request_id, "down", "too late")
    raw = await stores.raw()
    assert "old question" not in raw and "deploy" not in raw  # erased, not only hidden
    assert "recent question" in raw
    # Two days on, the other one goes too, and nothing is left behind.
    clock.now = NOW + 2 * DAY_S
    assert (
        report(await store.tally(3), days=3, texts=True, retention_days=3)["totals"]["questions"]
        == 0
    )
    if stores.kind == "sqlite":
        assert await stores.keys() == 0
    else:  # Redis expires by its own clock: every key ends with its day's retention, none later
        ends = await stores.expiry_times()
        assert ends and set(ends.values()) == {(day_of(NOW) - 2 + 3) * DAY_S}, ends


async def test_question_texts_are_masked_before_they_are_stored(stores: Stores) -> None:
    store = stores(Clock())
    settings = load_settings(insights="on")
    question = "I am jane.doe@example.com, +1 (555) 010-9999, account 00123456789: why?"
    await store.record(insights.answer_of(settings, "r-masked", question, [], []))
    assert await store.rate("r-masked", "down", mask("reach me at bob@example.org"))
    raw = await stores.raw()
    for secret in ("jane.doe", "example.com", "555", "00123456789", "bob@", "example.org"):
        assert secret not in raw
    assert "I am [email], [phone], account [number]: why?" in raw


async def test_nothing_with_text_is_stored_with_insights_off(stores: Stores) -> None:
    store = stores(Clock())
    settings = load_settings()  # INSIGHTS off by default
    assert settings.insights == "off"
    sources = [{"id": "S1", "document_id": "limits.md", "title": "Rate limits",
                "url": "https://docs.example.com/limits#anonymous"}]  # fmt: skip
    await store.record(
        insights.answer_of(settings, "r-off", "Zanzibar quokka question", sources, ["S1"])
    )
    await store.record(insights.answer_of(settings, "r-off-2", "Another quokka", [], []))
    assert await store.rate("r-off", "down", None)
    raw = await stores.raw()
    assert "quokka" not in raw.lower() and "zanzibar" not in raw.lower()
    body = report(await store.tally(7), days=7, texts=False, retention_days=30)
    assert body["totals"]["questions"] == 2 and body["totals"]["down"] == 1
    # The page, without its section anchor.
    assert body["most_cited_pages"] == [
        {"url": "https://docs.example.com/limits", "title": "Rate limits", "citations": 1}
    ]


async def test_erase_removes_everything(stores: Stores) -> None:
    store = stores(Clock())
    for i in range(5):
        await store.record(answer(f"question {i}", i % 2 == 0, "install"))
    assert (
        report(await store.tally(30), days=30, texts=True, retention_days=30)["totals"]["questions"]
        == 5
    )
    assert await stores.keys() > 0
    await store.erase()
    assert await stores.keys() == 0
    assert "question 3" not in await stores.raw()
    body = report(await store.tally(30), days=30, texts=True, retention_days=30)
    assert body["totals"]["questions"] == 0 and body["most_cited_pages"] == []


def answer_rows(path: Path) -> int:
    """Answers in a SQLite insights file, read beside the store (0 before it has its table)."""
    import sqlite3

    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])
        except sqlite3.OperationalError:  # the file is being made: no table yet
            return 0


async def test_sqlite_writes_answers_recorded_together_in_one_call_and_the_rest_on_close(
    tmp_path: Path,
) -> None:
    """Per answer, the hand-off to SQLite's worker thread cost more CPU than the write: answers
    recorded within `FLUSH_S` share one call (one transaction), and closing writes what is
    still queued."""
    path = tmp_path / "docent.insights.sqlite3"
    store = SqliteInsights(str(path), clock=Clock())
    calls = 0
    run = store._run

    async def counted(fn: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await run(fn, **kwargs)

    store._run = counted  # type: ignore[method-assign]

    await asyncio.gather(
        *(store.record(answer(f"question {i}", True, "install")) for i in range(40))
    )
    assert calls == 0 and answer_rows(path) == 0  # queued, not yet written
    deadline = time.monotonic() + 10
    while answer_rows(path) < 40 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert answer_rows(path) == 40 and calls == 1
    await store.record(answer("the last question", True, "install"))
    await store.aclose()
    assert answer_rows(path) == 41 and calls == 2


def test_answers_queued_on_a_loop_that_ended_are_written_from_the_next_one(
    tmp_path: Path,
) -> None:
    """A `Services` outlives event loops (test clients, one per Mangum invocation in some
    hosts): an answer queued on a loop that ended before its flush is written by the next."""
    path = tmp_path / "docent.insights.sqlite3"
    store = SqliteInsights(str(path), clock=Clock())
    first = asyncio.new_event_loop()  # closed without cancelling its tasks, as a host may
    first.run_until_complete(store.record(answer("asked on the first loop", True, "install")))
    first.close()

    async def second() -> int:
        await store.record(answer("asked on the second loop", True, "install"))
        await asyncio.sleep(insights.FLUSH_S + 1)  # the flush's own timer, no other call
        count = answer_rows(path)
        await store.aclose()
        return count

    assert asyncio.run(second()) == 2


async def test_an_answer_recorded_twice_counts_once(stores: Stores) -> None:
    store = stores(Clock())
    one = answer("asked once, recorded twice", False, "install")
    await asyncio.gather(store.record(one), store.record(one))
    await store.record(one)
    body = report(await store.tally(1), days=1, texts=True, retention_days=30)
    assert (body["totals"]["questions"], body["totals"]["unanswered"]) == (1, 1)
    assert (
        body["top_questions"]
        == body["unanswered_questions"]
        == [{"question": "asked once recorded twice", "count": 1}]
    )
    assert body["most_cited_pages"][0]["citations"] == 1


async def test_concurrent_ratings_of_one_answer_count_once(stores: Stores) -> None:
    store = stores(Clock())
    one = answer("rated by many at once", True)
    await store.record(one)
    ratings = ["up", "down"] * 50
    await asyncio.gather(*(store.rate(one.request_id, r, None) for r in ratings))  # type: ignore[arg-type]
    totals = report(await store.tally(1), days=1, texts=True, retention_days=30)["totals"]
    assert totals["up"] + totals["down"] == 1


# Over HTTP: the bundled app under uvicorn -----------------------------------------------------

ADMIN = {"X-API-Key": ADMIN_KEY}


def backend_settings(kind: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The settings that choose `kind` as the store (limits and insights alike)."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    if kind == "redis":
        return {"redis_url": request.getfixturevalue("redis_url"), "key_prefix": prefix}
    if kind == "upstash":
        return {
            "upstash_redis_rest_url": request.getfixturevalue("gateway_url"),
            "upstash_redis_rest_token": GATEWAY_TOKEN,
            "key_prefix": prefix,
        }
    return {}


def ask(docent: Docent, question: str, **headers: str) -> str:
    """One JSON answer from `/chat`; its request id."""
    with docent.client() as client:
        response = client.post(
            "/chat", json={"question": question}, headers={"accept": "application/json", **headers}
        )
    assert response.status_code == 200, response.text
    return str(response.json()["request_id"])


def totals(docent: Docent, days: int = 1) -> dict[str, Any]:
    with docent.client() as client:
        response = client.get("/insights", params={"days": days}, headers=ADMIN)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.slow
@pytest.mark.parametrize("kind", STORES)
def test_concurrent_feedback_counts_exactly(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # Exact counts are the subject: a 5 s bound per store call, so 200 requests at once on two
    # contended cores are not turned away by the 0.5 s default. On a loaded machine some still
    # wait longer (the Upstash gateway is one Python process) and get the contract's 503 with
    # Retry-After: the client here retries as told, as a widget would, and a rating that landed
    # before its timeout and lands again on the retry must still count once.
    with running_docent(
        tmp_path, insights="on", store_timeout_s=5, **backend_settings(kind, request)
    ) as docent:
        docent.ingest(corpus_documents())
        asked = ask(docent, "How do I install Acme?")
        # 199 more answers, recorded through a second store on the same file or keys.
        twin: Any = insights.create_insights(docent.settings)
        others = [answer(f"question number {i}", i % 4 != 0, "install") for i in range(199)]

        async def record_all() -> None:
            try:
                for a in others:
                    await twin.record(a)
            finally:
                await twin.aclose()

        asyncio.run(record_all())
        ids = [asked, *(a.request_id for a in others)]
        ratings = ["up" if i % 5 < 3 else "down" for i in range(200)]  # 120 up, 80 down

        async def rate(c: httpx.AsyncClient, request_id: str, rating: str) -> int:
            body = {"request_id": request_id, "rating": rating, "comment": "meh"}
            for _ in range(8):
                try:
                    response = await c.post("/feedback", json=body)
                except (httpx.ReadError, httpx.RemoteProtocolError):
                    continue  # a kept-alive connection closed under it; a rating is idempotent
                if response.status_code != 503:
                    return response.status_code
                assert response.json()["error"]["code"] == "unavailable", response.text
                # Retry-After, spread so the retries do not come back as one wave.
                await asyncio.sleep(random.uniform(0.5, 1) * float(response.headers["retry-after"]))
            return 503

        async def rate_all() -> list[int]:
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(base_url=docent.url, timeout=60, limits=limits) as c:
                return await asyncio.gather(
                    *(rate(c, i, r) for i, r in zip(ids, ratings, strict=True))
                )

        assert asyncio.run(rate_all()) == [204] * 200
        body = totals(docent)
        assert body["totals"]["questions"] == 200
        assert (body["totals"]["up"], body["totals"]["down"]) == (120, 80)
        assert body["totals"]["answered"] == 1 + sum(a.answered for a in others)
        assert len(body["rated_down"]) == 50  # the newest, bounded
        assert {d["comment"] for d in body["rated_down"]} == {"meh"}
        # Unknown answers are 404; erasing leaves nothing to rate.
        with docent.client() as client:
            unknown = client.post("/feedback", json={"request_id": "nope", "rating": "up"})
            assert unknown.status_code == 404, unknown.text
            assert unknown.json()["error"]["code"] == "not_found"
            assert client.delete("/insights", headers=ADMIN).status_code == 204
            gone = client.post("/feedback", json={"request_id": asked, "rating": "up"})
            assert gone.status_code == 404
        assert totals(docent)["totals"]["questions"] == 0


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docent]:
    """The bundled app with the corpus and INSIGHTS=on, on the embedded default."""
    with running_docent(tmp_path_factory.mktemp("insights"), insights="on") as docent:
        docent.ingest(corpus_documents())
        yield docent


def test_feedback_validation_and_keys(site: Docent) -> None:
    request_id = ask(site, "What does the pro plan cost?")
    with site.client() as client:
        for body in (
            {"request_id": request_id, "rating": "meh"},
            {"request_id": request_id, "rating": "up", "comment": "x" * 1001},
            {"rating": "up"},
            {"request_id": request_id, "rating": "up", "extra": 1},
        ):
            response = client.post("/feedback", json=body)
            assert response.status_code == 422, (body, response.text)
        # Anonymous, a 1000-character comment at most.
        ok = client.post(
            "/feedback", json={"request_id": request_id, "rating": "down", "comment": "y" * 1000}
        )
        assert ok.status_code == 204 and ok.content == b""
        assert "x-ratelimit-remaining" in ok.headers
        for method in ("GET", "DELETE"):
            assert client.request(method, "/insights").status_code == 401
            user = client.request(method, "/insights", headers={"X-API-Key": USER_KEY})
            assert user.status_code == 403
            assert (
                client.request(method, "/insights", headers={"X-API-Key": "wrong"}).status_code
                == 401
            )
        assert client.get("/insights", params={"days": 0}, headers=ADMIN).status_code == 422
        # A public route: its body is bounded like a chat request's, before it is read.
        huge = client.post(
            "/feedback",
            content=b'{"request_id": "' + b"x" * 300_000 + b'", "rating": "up"}',
            headers={"content-type": "application/json"},
        )
        assert huge.status_code == 413, huge.text
    body = totals(site)
    assert any(d["request_id"] == request_id and d["comment"] == "y" * 1000
               for d in body["rated_down"])  # fmt: skip


def test_feedback_is_rate_limited_like_chat(tmp_path: Path) -> None:
    clear_of_window_roll(3600)
    with running_docent(tmp_path, rate_limit_anon="3/3600s") as docent, docent.client() as client:
        codes = [
            client.post("/feedback", json={"request_id": f"r{i}", "rating": "up"}).status_code
            for i in range(4)
        ]
        assert codes == [404, 404, 404, 429]
        refused = client.post("/feedback", json={"request_id": "r", "rating": "up"})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        # Its own window: chat is still open.
        chat = client.post(
            "/chat", json={"question": "anything"}, headers={"accept": "application/json"}
        )
        assert chat.status_code == 200


async def test_every_protocol_records_its_answers(site: Docent) -> None:
    from tests.test_mcp_server import call, text_of

    before = totals(site)["totals"]
    question = "How do I install Acme?"
    bearer = {"Authorization": f"Bearer {USER_KEY}"}
    with site.client() as client:
        streamed = client.post("/chat", json={"question": question})
        done = parse_sse(streamed.text)[-1]
        assert done["type"] == "done" and done["answered"] is True
        whole = client.post(
            "/chat", json={"question": question}, headers={"accept": "application/json"}
        )
        completion = client.post(
            "/v1/chat/completions",
            json={"model": "docent", "messages": [{"role": "user", "content": question}]},
            headers=bearer,
        )
        assert completion.status_code == 200, completion.text
    result = await call(site.url, "ask_docs", {"question": question}, **bearer)
    assert not result.is_error, text_of(result)
    # Not answered, and holding an address: a gap, masked.
    ask(site, "Will the Acme team write to jane.doe@example.com about Mars?")
    body = totals(site)
    assert body["totals"]["questions"] == before["questions"] + 5
    assert body["totals"]["answered"] == before["answered"] + 4
    top = {q["question"]: q["count"] for q in body["top_questions"]}
    assert top["how do i install acme"] >= 4
    gaps = [q["question"] for q in body["unanswered_questions"]]
    assert "will the acme team write to [email] about mars" in gaps
    assert not any("jane" in q for q in top)
    (install,) = [p for p in body["most_cited_pages"] if p["title"] == "Installing Acme"]
    assert install["url"] == "https://docs.acme.test/install" and install["citations"] >= 4
    # Each answer's request id is the one its client got: each can be rated.
    with site.client() as client:
        for request_id in (
            done["request_id"],
            whole.json()["request_id"],
            completion.json()["id"].removeprefix("chatcmpl-"),
        ):
            rated = client.post("/feedback", json={"request_id": request_id, "rating": "up"})
            assert rated.status_code == 204, rated.text
    assert totals(site)["totals"]["up"] == before["up"] + 3
    # No client address and no key (nor its id) in what was stored.
    from docent.auth import key_id

    files = list(Path(site.settings.qdrant_path).glob("*.insights.sqlite3*"))
    stored = b"".join(f.read_bytes() for f in files)
    assert b"how do i install acme" in stored
    for secret in ("127.0.0.1", USER_KEY, key_id(USER_KEY), "jane.doe"):
        assert secret.encode() not in stored, secret


def test_with_insights_off_no_question_text_is_kept(tmp_path: Path) -> None:
    with running_docent(tmp_path) as docent:
        docent.ingest(corpus_documents())
        request_id = ask(docent, "Where is the quokka billing page?")
        with docent.client() as client:
            rated = client.post(
                "/feedback", json={"request_id": request_id, "rating": "down", "comment": "wombat"}
            )
            assert rated.status_code == 204
        body = totals(docent)
        assert body["texts"] is False
        assert body["totals"]["questions"] == 1 and body["totals"]["down"] == 1
        assert body["top_questions"] == [] and body["rated_down"] == [
            {"request_id": request_id, "day": body["to"]}
        ]
        files = list((tmp_path / "qdrant").glob("*.insights.sqlite3*"))
        assert files
        stored = b"".join(f.read_bytes() for f in files).lower()
        assert request_id.encode() in stored  # recorded...
        assert b"quokka" not in stored and b"wombat" not in stored  # ...without its texts


class Hanging:
    """A store that never answers (a hung Redis)."""

    async def record(self, answer: Answer) -> None:
        await asyncio.sleep(30)

    async def rate(self, *args: Any) -> bool:
        await asyncio.sleep(30)
        return True


class Failing:
    """A store that refuses every call (a Redis that is down)."""

    async def record(self, answer: Answer) -> None:
        raise ConnectionError("refused")

    async def rate(self, *args: Any) -> bool:
        raise ConnectionError("refused")


@pytest.mark.parametrize("store", [Hanging(), Failing()], ids=["hanging", "failing"])
def test_a_store_fault_never_reaches_the_visitor(tmp_path: Path, store: Any) -> None:
    with running_docent(tmp_path, insights="on", store_timeout_s=0.3) as docent:
        docent.ingest(corpus_documents())
        docent.services.insights = store

        def failures() -> float:
            with docent.admin() as client:
                text = client.get("/metrics").text
            found = re.search(r'docent_insights_failures_total\{operation="record"\} (\S+)', text)
            return float(found[1]) if found else 0.0

        before = failures()
        started = time.monotonic()
        with docent.client() as client:
            streamed = client.post("/chat", json={"question": "How do I install Acme?"})
        assert streamed.status_code == 200
        events = parse_sse(streamed.text)
        assert events[-1]["type"] == "done" and events[-1]["answered"] is True
        ask(docent, "How do I install Acme?")
        assert time.monotonic() - started < 5  # two answers, each waiting at most 0.3 s
        assert failures() == before + 2
        with docent.client() as client:
            rated = client.post("/feedback", json={"request_id": "x", "rating": "up"})
        assert rated.status_code == 503 and rated.json()["error"]["code"] == "unavailable"
