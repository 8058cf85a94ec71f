"""A reproducible documentation corpus for the benchmarks: seeded markdown files and questions.

Each file is a product-docs page: front matter, a title, sections of prose over a technical
vocabulary, now and then a code block or a list. The same seed gives byte-identical files.
"""

from __future__ import annotations

import random
from pathlib import Path

TOPICS = (
    "billing invoices refunds subscriptions webhooks tokens sessions passwords rotation "
    "deployments regions replicas backups snapshots restores quotas limits retries timeouts "
    "caching headers cookies redirects domains certificates dns proxies firewalls audit logs "
    "metrics alerts dashboards exports imports migrations schemas indexes queries pagination "
    "filters sorting search embeddings permissions roles teams invitations sso saml oauth "
    "scopes clients secrets keys signing encryption storage buckets uploads downloads queues "
    "workers schedules cron jobs events triggers functions runtimes builds artifacts releases"
).split()
VERBS = (
    "configure enable disable rotate create delete update list inspect monitor retry limit "
    "schedule export import migrate verify sign encrypt restore deploy scale cache invalidate"
).split()
FILLER = (
    "the a an each every your this that when then before after only also never always must "
    "should can will may with without from into over under per by for to of on in at as"
).split()


def sentence(rng: random.Random, words: int) -> str:
    picked = []
    for i in range(words):
        pool = FILLER if i % 3 == 1 else (VERBS if i % 5 == 2 else TOPICS)
        picked.append(rng.choice(pool))
    return picked[0].capitalize() + " " + " ".join(picked[1:]) + "."


def page(rng: random.Random, number: int) -> str:
    topic = rng.choice(TOPICS)
    title = f"{topic.capitalize()} guide {number}"
    parts = [f"---\ntitle: {title}\nurl: https://docs.example.test/{topic}/{number}\n---\n"]
    parts.append(f"# {title}\n\n{sentence(rng, 18)} {sentence(rng, 14)}\n")
    for section in range(rng.randint(3, 8)):
        heading = f"{rng.choice(VERBS).capitalize()} {rng.choice(TOPICS)} {section + 1}"
        paragraphs = [
            " ".join(sentence(rng, rng.randint(8, 20)) for _ in range(rng.randint(2, 5)))
            for _ in range(rng.randint(1, 3))
        ]
        body = "\n\n".join(paragraphs)
        extra = ""
        if rng.random() < 0.25:
            name = rng.choice(TOPICS)
            extra = f"\n\n```bash\ndocent {rng.choice(VERBS)} --{name} {rng.randint(1, 99)}\n```"
        elif rng.random() < 0.25:
            extra = "\n\n" + "\n".join(f"- {sentence(rng, 6)}" for _ in range(3))
        parts.append(f"## {heading}\n\n{body}{extra}\n")
    return "\n".join(parts)


def write_corpus(folder: Path, files: int, seed: int = 7, start: int = 0) -> list[Path]:
    """Write `files` pages numbered from `start`; the same arguments give the same bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(start, start + files):
        rng = random.Random(f"{seed}:{number}")
        path = folder / f"page-{number:05d}.md"
        path.write_text(page(rng, number))
        paths.append(path)
    return paths


def questions(count: int, seed: int = 11) -> list[str]:
    """Distinct questions over the corpus vocabulary (distinct, so no cache answers them)."""
    rng = random.Random(seed)
    asked = []
    for number in range(count):
        verb, a, b = rng.choice(VERBS), rng.choice(TOPICS), rng.choice(TOPICS)
        asked.append(f"How do I {verb} {a} for {b}? (#{number})")
    return asked
