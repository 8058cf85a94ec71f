"""The OpenAI-compatible stand-in in its own process, for benchmarks.

`python -m bench.standin PORT` serves the tests' stand-in (tests/support/standins.py) plus three
bench routes: `POST /control` sets its timing (first_token_s, token_interval_s, answer),
`GET /stats` says how many embedding and chat requests it has served, and `GET /arrivals` when
each chat request tagged `(#N)` at the end of its last message arrived (`time.monotonic()`, a
clock every process on the machine shares).

It runs on uvicorn's plain event loop and h11, whatever else is installed: its CPU time is the
bench's yardstick for formatting a token as SSE in Python, so it must not change between runs.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.harness import StandIn

CONTROLLABLE = {"first_token_s", "token_interval_s", "answer", "report_usage"}
_TAG = re.compile(r"\(#(\d+)\)\s*$")


class BenchStandIn(StandIn):
    """The stand-in, noting when each tagged chat request arrived."""

    arrivals: dict[str, float]

    async def chat(self, request: Request) -> Response:
        arrived = time.monotonic()
        response = await super().chat(request)
        # No await since `super().chat` appended this request's body: it is the last one.
        messages = self.chat_requests[-1].get("messages") or [{}]
        tag = _TAG.search(str(messages[-1].get("content", "")))
        if tag:
            self.arrivals[tag.group(1)] = arrived
        return response


def build(state: BenchStandIn) -> Any:
    state.arrivals = {}
    app = state.app()

    async def control(request: Request) -> JSONResponse:
        values = await request.json()
        for name, value in values.items():
            if name not in CONTROLLABLE:
                return JSONResponse({"error": f"unknown field {name}"}, status_code=400)
            setattr(state, name, value)
        return JSONResponse({"ok": True})

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "embedding_requests": len(state.embedding_requests),
                "embedding_inputs": sum(len(r) for r in state.embedding_requests),
                "chat_requests": len(state.chat_requests),
                "tokens_sent": state.tokens_sent,
            }
        )

    async def arrivals(request: Request) -> JSONResponse:
        return JSONResponse(state.arrivals)

    app.router.routes.append(Route("/control", control, methods=["POST"]))
    app.router.routes.append(Route("/stats", stats, methods=["GET"]))
    app.router.routes.append(Route("/arrivals", arrivals, methods=["GET"]))
    return app


def main() -> None:
    port = int(sys.argv[1])
    state = BenchStandIn()
    # The stand-in keeps what it was asked; bench runs are short enough for that.
    uvicorn.run(
        build(state),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        proxy_headers=False,
        access_log=False,
        loop="asyncio",
        http="h11",
    )


if __name__ == "__main__":
    main()
