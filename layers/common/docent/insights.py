"""Insights for the docs owner: what visitors ask, what the docs could not answer, what was rated.

The chat pipeline records each answer (a `Recorder`, bound by `chat.begin`) just before its
`done` event: its request id, day, whether it was answered and the pages it cited; with
`INSIGHTS=on` also the question, with e-mail addresses, phone numbers and long digit runs
masked first. Never an IP address or a key.
Visitors rate an answer by its request id (`POST /feedback`); the owner reads the figures
(`GET /insights`) and can erase them (`DELETE /insights`).

Three stores behind `InsightsStore`, chosen like the limiter and the cache: SQLite beside the
embedded index (the default; the index folder is one process's, see `docent.edge`), TCP Redis
and Upstash. Redis and Upstash keep per-day hashes and sorted sets, each expiring with its day,
so nothing there grows without bound. Everything recorded on a day is gone
`INSIGHTS_RETENTION_DAYS` after that day began; each store enforces it on its own clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from docent import metrics
from docent.config import Settings
from docent.errors import NotFound, Unavailable, backend

if TYPE_CHECKING:
    import sqlite3

    from docent.services import Services

log = logging.getLogger("docent.insights")

Rating = Literal["up", "down"]
DAY_S = 86400
TOP = 20  # most asked questions, and documentation gaps, in a report
PAGES = 10  # most and least cited pages in a report
RATED_DOWN = 50  # newest answers rated down in a report
# Redis and Upstash: most distinct questions (and gaps) kept per day, most rated-down answers.
MAX_PER_DAY = 1000
_COUNTS = ("questions", "answered", "up", "down")  # each day's counts

# Privacy masks, applied before a question or comment is stored. An e-mail address; a phone
# number (7 to 15 digits, led by `+` or broken by spaces, dots, dashes or brackets); any other
# run of 6 digits or more, or of 16 to 19 broken up (an account, card or order number).
# Lookbehinds anchor each match at a token's start, so the patterns stay linear on long input.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w+])\+?\(?\d(?:[ ().-]{0,2}\d){6,18}(?!\d)")
_DIGITS = re.compile(r"\d{6,}")
_MASK = re.compile(r"\[(?:email|phone|number)\]")


def mask(text: str) -> str:
    """`text` with e-mail addresses, phone numbers and long digit runs replaced by markers."""
    text = _EMAIL.sub("[email]", text)
    text = _PHONE.sub(_phone, text)
    return _DIGITS.sub("[number]", text)


def _phone(match: re.Match[str]) -> str:
    found = match[0]
    digits = sum(c.isdigit() for c in found)
    return "[number]" if found.isdigit() or digits > 15 else "[phone]"


def normalize(text: str) -> str:
    """One form for questions that differ only in case, whitespace or punctuation."""
    parts: list[str] = []
    for piece in re.split(f"({_MASK.pattern})", text):
        if _MASK.fullmatch(piece):
            parts.append(piece)
            continue
        kept = "".join(" " if unicodedata.category(c)[0] in "PSZC" else c for c in piece.casefold())
        parts.append(kept)
    return " ".join("".join(parts).split())


@dataclass(frozen=True)
class Page:
    """A cited page: its url without the section anchor (or the document id), and its title."""

    key: str
    title: str


@dataclass(frozen=True)
class Answer:
    """One answer as recorded: `question` and `normalized` only with `INSIGHTS=on`, masked."""

    request_id: str
    answered: bool
    pages: tuple[Page, ...] = ()
    question: str | None = None
    normalized: str | None = None


def cited_pages(sources: Sequence[Mapping[str, Any]], cited: Iterable[str]) -> tuple[Page, ...]:
    """The pages behind the cited sources, each once, in citation order."""
    by_id = {s.get("id"): s for s in sources}
    pages: dict[str, Page] = {}
    for source_id in cited:
        source = by_id.get(source_id)
        if source is None:
            continue
        url = source.get("url")
        key = url.split("#", 1)[0] if url else str(source.get("document_id") or "")
        if key and key not in pages:
            pages[key] = Page(key, str(source.get("title") or source.get("document_id") or key))
    return tuple(pages.values())


@dataclass
class Tally:
    """What a store read for a range of days; `report` turns it into the response."""

    today: int = 0
    per_day: dict[int, dict[str, int]] = field(default_factory=dict)
    questions: Counter[str] = field(default_factory=Counter)
    gaps: Counter[str] = field(default_factory=Counter)
    pages: Counter[str] = field(default_factory=Counter)
    titles: dict[str, str] = field(default_factory=dict)
    # Newest first: (request_id, day, question, comment).
    rated_down: list[tuple[str, int, str | None, str | None]] = field(default_factory=list)


class InsightsStore(Protocol):
    """Where answers, ratings and their aggregates live."""

    async def record(self, answer: Answer) -> None:
        """Keep one answer (its request id is new)."""
        ...

    async def rate(self, request_id: str, rating: Rating, comment: str | None) -> bool:
        """Set an answer's rating and comment (replacing any earlier); False if it is unknown."""
        ...

    async def tally(self, days: int) -> Tally:
        """The aggregates of the last `days` days (today included)."""
        ...

    async def erase(self) -> None:
        """Delete everything recorded."""
        ...


def day_of(now: float) -> int:
    """Days since the epoch (UTC) at unix time `now`."""
    return int(now // DAY_S)


def iso_day(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * DAY_S))


def report(tally: Tally, *, days: int, texts: bool, retention_days: int) -> dict[str, Any]:
    """The `GET /insights` body. Without `texts` (INSIGHTS off) it holds counts only."""
    span = list(range(tally.today - days + 1, tally.today + 1))
    per_day = []
    totals = Counter[str]()
    for day in span:
        counts = tally.per_day.get(day, {})
        row = {name: max(0, int(counts.get(name, 0))) for name in _COUNTS}
        totals.update(row)
        per_day.append({"day": iso_day(day), **row})
    ranked = sorted(tally.pages.items(), key=lambda kv: (-kv[1], kv[0]))
    least = sorted(tally.pages.items(), key=lambda kv: (kv[1], kv[0]))

    def page(key: str, count: int) -> dict[str, Any]:
        return {
            "url": key if key.startswith(("http://", "https://")) else None,
            "title": tally.titles.get(key) or key,
            "citations": count,
        }

    def top(counter: Counter[str]) -> list[dict[str, Any]]:
        if not texts:
            return []
        best = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
        return [{"question": q, "count": n} for q, n in best]

    rated_down = []
    for request_id, day, question, comment in tally.rated_down[:RATED_DOWN]:
        item: dict[str, Any] = {"request_id": request_id, "day": iso_day(day)}
        if texts:
            item.update(question=question, comment=comment)
        rated_down.append(item)
    questions = totals["questions"]
    return {
        "days": days,
        "from": iso_day(span[0]),
        "to": iso_day(span[-1]),
        "texts": texts,
        "retention_days": retention_days,
        "totals": {
            **{name: totals[name] for name in _COUNTS},
            "unanswered": questions - totals["answered"],
            "answered_share": round(totals["answered"] / questions, 4) if questions else None,
        },
        "per_day": per_day,
        "top_questions": top(tally.questions),
        "unanswered_questions": top(tally.gaps),
        "rated_down": rated_down,
        "most_cited_pages": [page(k, n) for k, n in ranked[:PAGES]],
        "least_cited_pages": [page(k, n) for k, n in least[:PAGES]],
    }


# The pipeline's side --------------------------------------------------------------------------


def answer_of(
    settings: Settings,
    request_id: str,
    question: str,
    sources: Sequence[Mapping[str, Any]],
    cited: Sequence[str],
) -> Answer:
    """What is kept of one answer under the settings: the question only with INSIGHTS=on."""
    pages = cited_pages(sources, cited)
    if settings.insights != "on":
        return Answer(request_id, bool(cited), pages)
    masked = mask(question)
    return Answer(request_id, bool(cited), pages, masked, normalize(masked) or None)


@dataclass(frozen=True)
class Recorder:
    """What the chat pipeline records each answer with (bound by `chat.begin`): the store and
    the settings that say what is kept."""

    store: InsightsStore
    settings: Settings

    async def __call__(
        self,
        request_id: str,
        question: str,
        sources: Sequence[Mapping[str, Any]],
        cited: Sequence[str],
    ) -> None:
        """Record one answer within the store timeout. Never raises: a failure is logged and
        counted, and the answer goes out as it would have."""
        answer = answer_of(self.settings, request_id, question, sources, cited)
        try:
            async with asyncio.timeout(self.settings.store_timeout_s):
                await self.store.record(answer)
        except Exception as exc:  # the visitor's answer matters more than its statistics
            log.warning("insights not recorded: %s", type(exc).__name__)
            metrics.insights_failed("record")


async def rate_answer(
    services: Services, request_id: str, rating: Rating, comment: str | None
) -> None:
    """`POST /feedback`: rate a recorded answer; the comment is kept (masked) only with INSIGHTS=on.

    Raises `NotFound` for an answer never recorded (or past retention), `Unavailable` when the
    store fails or does not answer in time.
    """
    settings = services.settings
    text = (comment or "").strip()
    kept = mask(text) if text and settings.insights == "on" else None
    try:
        async with asyncio.timeout(settings.store_timeout_s):
            found = await services.insights.rate(request_id, rating, kept)
    except Exception as exc:
        log.warning("feedback not recorded: %s", type(exc).__name__)
        metrics.insights_failed("feedback")
        raise Unavailable(
            "The insights store is unavailable.", headers={"Retry-After": "5"}
        ) from exc
    if not found:
        raise NotFound("No answer with this request_id (or it is past the retention period).")


async def read_report(services: Services, days: int) -> dict[str, Any]:
    """`GET /insights`: the last `days` days (at most the retention period)."""
    settings = services.settings
    days = min(days, settings.insights_retention_days)
    # An owner's read, not a visitor's wait: ten times the per-call store bound.
    with backend("insights store"):
        async with asyncio.timeout(10 * settings.store_timeout_s):
            tally = await services.insights.tally(days)
    return report(
        tally,
        days=days,
        texts=settings.insights == "on",
        retention_days=settings.insights_retention_days,
    )


async def erase(services: Services) -> None:
    """`DELETE /insights`: every answer, rating, comment and count, in whichever store."""
    with backend("insights store"):
        async with asyncio.timeout(10 * services.settings.store_timeout_s):
            await services.insights.erase()


def create_insights(settings: Settings, clock: Callable[[], float] = time.time) -> InsightsStore:
    """The store the settings choose: Upstash, TCP Redis, else SQLite beside the embedded index."""
    retention = settings.insights_retention_days
    prefix = f"{settings.key_prefix}:in"
    backend = settings.store_backend
    if backend == "upstash":
        return UpstashInsights(
            settings.upstash_redis_rest_url or "",
            settings.upstash_redis_rest_token or "",
            prefix=prefix,
            retention_days=retention,
            clock=clock,
        )
    if backend == "redis":
        return RedisInsights(
            settings.redis_url or "",
            prefix=prefix,
            retention_days=retention,
            timeout_s=settings.store_timeout_s,
            clock=clock,
        )
    path = os.path.join(settings.qdrant_path, f"{settings.qdrant_collection}.insights.sqlite3")
    return SqliteInsights(path, retention_days=retention, clock=clock)


# SQLite ---------------------------------------------------------------------------------------

FLUSH_S = 0.25  # recorded answers wait this long to be written together
FLUSH_TIMEOUT_S = 10.0
MAX_PENDING = 10_000  # answers kept queued while the file cannot be written


def _nothing(db: sqlite3.Connection) -> None:
    """A call that only writes what is queued."""


def _insert(db: sqlite3.Connection, answer: Answer, day: int) -> None:
    added = db.execute(
        "INSERT OR IGNORE INTO answers (request_id, day, answered, question, normalized) "
        "VALUES (?, ?, ?, ?, ?)",
        (answer.request_id, day, int(answer.answered), answer.question, answer.normalized),
    ).rowcount
    if not added:
        return  # recorded already: once only
    db.executemany(
        "INSERT INTO citations (request_id, day, page, title) VALUES (?, ?, ?, ?)",
        [(answer.request_id, day, p.key, p.title) for p in answer.pages],
    )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    request_id TEXT PRIMARY KEY,
    day INTEGER NOT NULL,
    answered INTEGER NOT NULL,
    question TEXT,
    normalized TEXT,
    rating TEXT,
    comment TEXT,
    rated_at REAL
);
CREATE INDEX IF NOT EXISTS answers_day ON answers (day);
CREATE TABLE IF NOT EXISTS citations (
    request_id TEXT NOT NULL,
    day INTEGER NOT NULL,
    page TEXT NOT NULL,
    title TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS citations_day ON citations (day);
"""


class SqliteInsights:
    """`InsightsStore` in one SQLite file; calls run in a worker thread, one at a time, and
    recorded answers are written in batches (`record`)."""

    def __init__(
        self, path: str, *, retention_days: int = 30, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.retention_days = retention_days
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        # Answers recorded and not yet written: the next call's transaction writes them first.
        self._pending: list[tuple[Answer, int]] = []
        self._flush: asyncio.Task[None] | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            import sqlite3

            folder = os.path.dirname(self.path)
            if folder:
                os.makedirs(folder, exist_ok=True)
            db = sqlite3.connect(
                self.path, timeout=5, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            # Deleted rows are overwritten, not left in free pages (see `_forget`).
            db.execute("PRAGMA secure_delete=ON")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    async def _run(self, fn: Callable[[sqlite3.Connection], Any], *, forget: bool = False) -> Any:
        pending, self._pending = self._pending, []

        def locked() -> Any:
            with self._lock:
                db = self._connect()
                db.execute("BEGIN IMMEDIATE")
                try:
                    # Answers recorded since the last call, then retention: nothing older is
                    # ever read, rated or kept.
                    for answer, day in pending:
                        _insert(db, answer, day)
                    oldest = day_of(self._clock()) - self.retention_days + 1
                    gone = db.execute("DELETE FROM answers WHERE day < ?", (oldest,)).rowcount
                    gone += db.execute("DELETE FROM citations WHERE day < ?", (oldest,)).rowcount
                    result = fn(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                if gone or forget:
                    self._forget(db)
                return result

        try:
            return await asyncio.to_thread(locked)
        except BaseException:
            # Not written (or, if only the wait was cut off, written: the rewrite is a no-op).
            self._pending[:0] = pending
            if len(self._pending) > MAX_PENDING:
                lost = len(self._pending) - MAX_PENDING
                del self._pending[:lost]
                log.warning("insights not recorded: %d answers dropped", lost)
                metrics.insights_failed("record")
            raise

    async def _flush_later(self) -> None:
        await asyncio.sleep(FLUSH_S)
        if not self._pending:
            return  # written already, by another call
        try:
            async with asyncio.timeout(FLUSH_TIMEOUT_S):
                await self._run(_nothing)
        except Exception as exc:  # kept pending: the next call writes them
            log.warning("insights not recorded yet: %s", type(exc).__name__)
            metrics.insights_failed("record")

    def _forget(self, db: sqlite3.Connection) -> None:
        """After a deletion: the write-ahead log still holds the rows' earlier page images, so it
        is checkpointed (secure_delete zeroed the pages) and truncated to nothing."""
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def record(self, answer: Answer) -> None:
        """Queued, and written with the answers recorded within `FLUSH_S` of it, in one
        transaction and one hand-off to the worker thread: per answer, that hand-off cost more
        CPU than the write. Any other call (a rating, a tally) writes the queue first, so a
        rating finds its answer at once. A process killed before it closes its services loses
        the answers of its last `FLUSH_S`."""
        self._pending.append((answer, day_of(self._clock())))
        loop = asyncio.get_running_loop()
        flush = self._flush
        # A flush on a loop that has ended (a test client's, one a host closed) never runs.
        if flush is None or flush.done() or flush.get_loop() is not loop:
            self._flush = loop.create_task(self._flush_later())

    async def rate(self, request_id: str, rating: Rating, comment: str | None) -> bool:
        now = self._clock()

        def write(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE answers SET rating = ?, comment = ?, rated_at = ? WHERE request_id = ?",
                (rating, comment, now, request_id),
            )
            return cursor.rowcount > 0

        return bool(await self._run(write))

    async def tally(self, days: int) -> Tally:
        since = day_of(self._clock()) - days + 1

        def read(db: sqlite3.Connection) -> Tally:
            tally = Tally(today=since + days - 1)
            for day, asked, answered, up, down in db.execute(
                "SELECT day, COUNT(*), SUM(answered), SUM(rating IS 'up'), SUM(rating IS 'down') "
                "FROM answers WHERE day >= ? GROUP BY day",
                (since,),
            ):
                tally.per_day[day] = {
                    "questions": asked, "answered": answered, "up": up, "down": down,
                }  # fmt: skip
            for target, answered in ((tally.questions, 1), (tally.gaps, 0)):
                # answered <= 1: every question; answered <= 0: those the docs could not answer.
                rows = db.execute(
                    "SELECT normalized, COUNT(*) AS n FROM answers WHERE day >= ? "
                    "AND normalized IS NOT NULL AND answered <= ? GROUP BY normalized "
                    "ORDER BY n DESC, normalized LIMIT ?",
                    (since, answered, TOP),
                )
                target.update(dict(rows.fetchall()))
            for page, title, count in db.execute(
                "SELECT page, MAX(title), COUNT(*) FROM citations WHERE day >= ? GROUP BY page",
                (since,),
            ):
                tally.pages[page] = count
                tally.titles[page] = title
            tally.rated_down = list(
                db.execute(
                    "SELECT request_id, day, question, comment FROM answers "
                    "WHERE day >= ? AND rating = 'down' ORDER BY rated_at DESC, request_id "
                    "LIMIT ?",
                    (since, RATED_DOWN),
                )
            )
            return tally

        return await self._run(read)  # type: ignore[no-any-return]

    async def erase(self) -> None:
        def wipe(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM answers")
            db.execute("DELETE FROM citations")

        await self._run(wipe, forget=True)

    async def aclose(self) -> None:
        flush = self._flush
        if (
            flush is not None
            and not flush.done()
            and flush.get_loop() is asyncio.get_running_loop()
        ):
            flush.cancel()
        if self._pending:
            await self._run(_nothing)

        def close() -> None:
            with self._lock:  # after any call still running in its thread
                if self._db is not None:
                    self._db.close()
                    self._db = None

        await asyncio.to_thread(close)


# Redis and Upstash ----------------------------------------------------------------------------

# One rating, atomically: the answer must still exist; the day's counts move from the old rating
# to the new one; the rated-down set follows; the comment is replaced.
# KEYS: answer hash, day hash, the day's rated-down set.
# ARGV: rating, comment ('' for none), now, expire-at, request id, most rated-down kept.
RATE_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local old = redis.call('HGET', KEYS[1], 'rating')
if old ~= ARGV[1] then
  if old then redis.call('HINCRBY', KEYS[2], old, -1) end
  redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
  redis.call('EXPIREAT', KEYS[2], ARGV[4])
  redis.call('HSET', KEYS[1], 'rating', ARGV[1])
end
if ARGV[1] == 'down' then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[5])
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -1 - tonumber(ARGV[6]))
  redis.call('EXPIREAT', KEYS[3], ARGV[4])
else
  redis.call('ZREM', KEYS[3], ARGV[5])
end
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], 'comment')
else
  redis.call('HSET', KEYS[1], 'comment', ARGV[2])
end
return 1
"""

# One answer, atomically and once: a request id already recorded changes nothing (as SQLite's
# primary key). KEYS: answer hash, day hash, the day's questions, gaps, pages and titles.
# ARGV: expire-at, day, answered (1/0), question ('' for none), normalised question ('' for
# none), most questions kept per day, then page and title pairs.
RECORD_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local at = ARGV[1]
redis.call('HSET', KEYS[1], 'day', ARGV[2], 'answered', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'question', ARGV[4]) end
redis.call('EXPIREAT', KEYS[1], at)
redis.call('HINCRBY', KEYS[2], 'questions', 1)
if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[2], 'answered', 1) end
redis.call('EXPIREAT', KEYS[2], at)
if ARGV[5] ~= '' then
  local sets = {KEYS[3]}
  if ARGV[3] == '0' then sets[2] = KEYS[4] end
  for _, z in ipairs(sets) do
    redis.call('ZINCRBY', z, 1, ARGV[5])
    redis.call('ZREMRANGEBYRANK', z, 0, -1 - tonumber(ARGV[6]))
    redis.call('EXPIREAT', z, at)
  end
end
if #ARGV > 6 then
  for i = 7, #ARGV, 2 do
    redis.call('ZINCRBY', KEYS[5], 1, ARGV[i])
    redis.call('HSET', KEYS[6], ARGV[i], ARGV[i + 1])
  end
  redis.call('EXPIREAT', KEYS[5], at)
  redis.call('EXPIREAT', KEYS[6], at)
end
return 1
"""

Command = tuple[str | int | float, ...]


class RedisLayout:
    """The keys and commands of the Redis and Upstash stores: written once, run by either.

    Per day D (days since the epoch), each key expiring when D's retention ends:
    `in:d:D` hash of counts; `in:q:D` and `in:g:D` sorted sets of normalised questions (all, and
    those not answered) by count; `in:p:D` sorted set of cited pages by count, `in:t:D` hash of
    their titles; `in:r:D` sorted set of rated-down request ids by time. Per answer, `in:a:ID`,
    a hash of its day, answered flag, question, rating and comment.
    """

    def __init__(self, prefix: str, retention_days: int) -> None:
        self.prefix = prefix
        self.retention_days = retention_days

    def key(self, kind: str, name: str | int) -> str:
        return f"{self.prefix}:{kind}:{name}"

    def expire_at(self, day: int) -> int:
        return (day + self.retention_days) * DAY_S

    def record(self, answer: Answer, day: int) -> tuple[list[str], list[str | int | float]]:
        """The recording script's keys and arguments for one answer."""
        keys = [self.key("a", answer.request_id)]
        keys += [self.key(kind, day) for kind in ("d", "q", "g", "p", "t")]
        args: list[str | int | float] = [
            self.expire_at(day),
            day,
            int(answer.answered),
            answer.question or "",
            answer.normalized or "",
            MAX_PER_DAY,
        ]
        for page in answer.pages:
            args += [page.key, page.title]
        return keys, args

    def rate(
        self, request_id: str, day: int, rating: Rating, comment: str | None, now: float
    ) -> tuple[list[str], list[str | int | float]]:
        """The rating script's keys and arguments."""
        keys = [self.key("a", request_id), self.key("d", day), self.key("r", day)]
        args: list[str | int | float] = [
            rating, comment or "", now, self.expire_at(day), request_id, MAX_PER_DAY,
        ]  # fmt: skip
        return keys, args

    def days(self, today: int, days: int) -> list[int]:
        return list(range(today - days + 1, today + 1))

    def tally_reads(self, days: Sequence[int]) -> list[Command]:
        """Reads for a tally: each day's counts and titles, then the unions of the sorted sets."""
        commands: list[Command] = [("HGETALL", self.key("d", d)) for d in days]
        commands += [("HGETALL", self.key("t", d)) for d in days]
        for kind in ("q", "g", "p", "r"):
            keys = [self.key(kind, d) for d in days]
            aggregate = ("AGGREGATE", "MAX") if kind == "r" else ()
            commands.append(("ZUNION", len(keys), *keys, *aggregate, "WITHSCORES"))
        return commands

    def tally_of(
        self, days: Sequence[int], replies: Sequence[Any]
    ) -> tuple[Tally, list[tuple[str, float]]]:
        """The tally from `tally_reads`' replies, and the rated-down ids newest first."""
        tally = Tally(today=days[-1])
        n = len(days)
        for day, counts in zip(days, replies[:n], strict=True):
            pairs = _pairs(counts)
            if pairs:
                tally.per_day[day] = {_text(k): int(float(_text(v))) for k, v in pairs}
        for counts in replies[n : 2 * n]:
            tally.titles.update({_text(k): _text(v) for k, v in _pairs(counts)})
        questions, gaps, pages, down = replies[2 * n :]
        tally.questions.update({_text(k): int(float(_text(v))) for k, v in _pairs(questions)})
        tally.gaps.update({_text(k): int(float(_text(v))) for k, v in _pairs(gaps)})
        tally.pages.update({_text(k): int(float(_text(v))) for k, v in _pairs(pages)})
        newest = sorted(
            ((_text(k), float(_text(v))) for k, v in _pairs(down)), key=lambda kv: (-kv[1], kv[0])
        )
        return tally, newest[:RATED_DOWN]

    def rated_down(
        self, ids: Sequence[str], replies: Sequence[Any]
    ) -> list[tuple[str, int, str | None, str | None]]:
        """(request id, day, question, comment) of each rated-down answer still kept."""
        out = []
        for request_id, (day, question, comment) in zip(ids, replies, strict=True):
            if day is None:
                continue  # expired between the two reads
            out.append((request_id, int(_text(day)), _opt(question), _opt(comment)))
        return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _opt(value: Any) -> str | None:
    return None if value is None else _text(value)


def _pairs(reply: Any) -> list[tuple[Any, Any]]:
    """A reply of field/value or member/score pairs, as a flat list, a list of pairs or a dict."""
    if not reply:
        return []
    if isinstance(reply, Mapping):
        return list(reply.items())
    if isinstance(reply[0], list | tuple):
        return [(k, v) for k, v in reply]
    return list(zip(reply[::2], reply[1::2], strict=True))


class _RedisFamily:
    """What the Redis and Upstash stores share: the layout, the clock, and every read and script
    above two primitives each client does its own way (`_eval` a script, `_all` reads at once)."""

    def __init__(
        self, redis: Any, prefix: str, retention_days: int, clock: Callable[[], float]
    ) -> None:
        self._redis = redis
        self.layout = RedisLayout(prefix, retention_days)
        self._clock = clock

    async def _eval(self, script: str, keys: list[str], args: list[str | int | float]) -> Any:
        raise NotImplementedError

    async def _all(self, commands: Sequence[Command]) -> list[Any]:
        """Reads, in one round trip."""
        raise NotImplementedError

    async def record(self, answer: Answer) -> None:
        await self._eval(RECORD_SCRIPT, *self.layout.record(answer, day_of(self._clock())))

    async def rate(self, request_id: str, rating: Rating, comment: str | None) -> bool:
        day = await self._redis.hget(self.layout.key("a", request_id), "day")
        if day is None:
            return False
        keys, args = self.layout.rate(request_id, int(day), rating, comment, self._clock())
        return bool(await self._eval(RATE_SCRIPT, keys, args))

    async def tally(self, days: int) -> Tally:
        span = self.layout.days(day_of(self._clock()), days)
        tally, down = self.layout.tally_of(span, await self._all(self.layout.tally_reads(span)))
        ids = [request_id for request_id, _ in down]
        reads: list[Command] = [
            ("HMGET", self.layout.key("a", i), "day", "question", "comment") for i in ids
        ]
        tally.rated_down = self.layout.rated_down(ids, await self._all(reads))
        return tally

    async def ping(self) -> None:
        await self._redis.ping()


class RedisInsights(_RedisFamily):
    """`InsightsStore` on a TCP Redis."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "docent:in",
        retention_days: int = 30,
        timeout_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from docent.redisstore import client

        super().__init__(client(url, timeout_s), prefix, retention_days, clock)

    async def _eval(self, script: str, keys: list[str], args: list[str | int | float]) -> Any:
        return await self._redis.eval(script, len(keys), *keys, *args)

    async def _all(self, commands: Sequence[Command]) -> list[Any]:
        if not commands:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute())

    async def erase(self) -> None:
        async for keys in _batches(self._redis.scan_iter(match=f"{self.layout.prefix}:*")):
            await self._redis.delete(*keys)

    async def aclose(self) -> None:
        await self._redis.aclose()


async def _batches(keys: Any, size: int = 500) -> Any:
    batch: list[Any] = []
    async for key in keys:
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class UpstashInsights(_RedisFamily):
    """`InsightsStore` on Upstash's REST API (through upstash-redis, as the limiter and cache)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        prefix: str = "docent:in",
        retention_days: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from docent.upstash import _client

        # Every call is bounded by its caller (`Recorder`, `rate_answer`, `read_report`, `erase`).
        super().__init__(_client(url, token), prefix, retention_days, clock)

    async def _eval(self, script: str, keys: list[str], args: list[str | int | float]) -> Any:
        return await self._redis.eval(script, keys, [_arg(a) for a in args])

    async def _all(self, commands: Sequence[Command]) -> list[Any]:
        if not commands:
            return []
        pipe = self._redis.pipeline()
        for command in commands:
            pipe.execute([_arg(part) for part in command])
        return list(await pipe.exec())

    async def erase(self) -> None:
        cursor = 0
        while True:
            cursor, keys = await self._redis.scan(
                cursor, match=f"{self.layout.prefix}:*", count=500
            )
            if keys:
                await self._redis.delete(*keys)
            if int(cursor) == 0:
                return

    async def aclose(self) -> None:
        await self._redis.close()


def _arg(value: str | int | float) -> str:
    # The REST API takes every argument as text; JSON keeps floats exact enough for a score.
    return value if isinstance(value, str) else json.dumps(value)
