"""The OpenAI-compatible stand-in in its own process, for benchmarks.

`python -m bench.standin PORT` serves the tests' stand-in (tests/support/standins.py) plus two
bench routes: `POST /control` sets its timing (first_token_s, token_interval_s, answer), and
`GET /stats` says how many embedding and chat requests it has served.
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.standins import StandIn

CONTROLLABLE = {"first_token_s", "token_interval_s", "answer", "report_usage"}


def build(state: StandIn) -> Any:
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
            }
        )

    app.router.routes.append(Route("/control", control, methods=["POST"]))
    app.router.routes.append(Route("/stats", stats, methods=["GET"]))
    return app


def main() -> None:
    port = int(sys.argv[1])
    state = StandIn()
    # The stand-in keeps what it was asked; bench runs are short enough for that.
    uvicorn.run(
        build(state),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        proxy_headers=False,
        access_log=False,
    )


if __name__ == "__main__":
    main()
