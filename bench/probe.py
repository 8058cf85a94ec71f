"""A client apart from the load: when `sources` reaches a reader that is not itself saturated.

The load generator shares two cores with the server it saturates; at 200 streams it reads its
sockets seconds late, and the kernel's "last data received" stamp it falls back on then counts
the chunks that came after `sources`. A visitor's browser is another machine. This probe stands
for one: its own process, two threads on blocking sockets, each asking `/chat` again and again
while the load runs, and stamping `time.monotonic()` (the clock the model stand-in stamps
arrivals with, system-wide) when the `sources` frame is in what it has read.

    python -m bench.probe URL FIRST_TAG

It runs until its standard input closes, then finishes the requests in flight and prints one
JSON list: `{"tag", "started", "sources", "done", "error"}` per request. Each question ends with
its tag, `(#N)`, as the stand-in expects, numbered from FIRST_TAG.
"""

from __future__ import annotations

import itertools
import json
import socket
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

THREADS = 2
QUESTION = "How do I configure the probe for streams? (#{})"


def ask(host: str, port: int, tag: int) -> dict[str, Any]:
    """One `/chat` request on a fresh connection, read to its end."""
    body = json.dumps({"question": QUESTION.format(tag)}).encode()
    head = (
        f"POST /chat HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    result: dict[str, Any] = {"tag": str(tag), "started": time.monotonic(), "sources": None,
                              "done": False, "error": None}  # fmt: skip
    read = b""
    try:
        with socket.create_connection((host, port), timeout=120) as sock:
            sock.sendall(head + body)
            while data := sock.recv(65536):
                read += data
                if result["sources"] is None and b'"type":"sources"' in read:
                    result["sources"] = time.monotonic()
    except OSError as exc:
        result["error"] = type(exc).__name__
    status = read.split(b"\r\n", 1)[0]
    result["done"] = b'"type":"done"' in read
    if result["error"] is None and (b" 200 " not in status or not result["done"]):
        result["error"] = status.decode(errors="replace") or "no response"
    return result


def main(argv: list[str]) -> int:
    parts = urlsplit(argv[0])
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    tags = itertools.count(int(argv[1]))
    lock = threading.Lock()
    stop = threading.Event()
    results: list[dict[str, Any]] = []

    def worker() -> None:
        while True:  # one request at least, however short the load
            with lock:
                tag = next(tags)
            outcome = ask(host, port, tag)
            with lock:
                results.append(outcome)
            if stop.is_set():
                return

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    sys.stdin.read()  # until the bench closes it
    stop.set()
    for thread in threads:
        thread.join(timeout=150)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
