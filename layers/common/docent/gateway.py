"""A development and test tool: an Upstash-REST-compatible gateway over a real Redis.

Upstash cannot be reached from a laptop without its account, nor from CI; this speaks the REST
protocol the `upstash-redis` and `upstash-ratelimit` clients use, for any Redis command, so
those real clients can be exercised against a local `redis-server`:

- `POST /` with a JSON array command, `POST /pipeline` and `POST /multi-exec` with an array of
  commands; `Authorization: Bearer <token>`; results as `{"result": ...}` or `{"error": ...}`;
- `Upstash-Encoding: base64`: every string in a result base64-encoded (but "OK"), recursively;
- replies in Redis's RESP2 shapes, as Upstash sends them (the tests drive the real client through
  each command family). Module commands (JSON, search) need Redis modules and are not served.

Upstash accepts Lua scripts that begin `#!lua flags=allow-key-locking` (upstash-ratelimit's do);
open-source Redis 7.0 rejects that flag, so the gateway drops the shebang line before EVAL and
SCRIPT LOAD, and maps EVALSHA of the original script to the one Redis loaded.

Not for production: it has no TLS and one shared token.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_SCRIPT_COMMANDS = {"EVAL", "EVAL_RO"}
_SHA_COMMANDS = {"EVALSHA", "EVALSHA_RO"}


def strip_shebang(script: str) -> str:
    """A Lua script without an Upstash-only `#!lua flags=...` first line."""
    if script.startswith("#!lua"):
        return script.split("\n", 1)[1] if "\n" in script else ""
    return script


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


def encode_result(value: Any, base64_strings: bool) -> Any:
    """A raw Redis reply as Upstash's REST API renders it."""
    if isinstance(value, bytes):
        if value == b"OK":
            return "OK"
        if base64_strings:
            return base64.b64encode(value).decode()
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        if value == "OK" or not base64_strings:
            return value
        return base64.b64encode(value.encode()).decode()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, type(None))):
        return value
    if isinstance(value, float):
        return encode_result(repr(value).encode(), base64_strings)
    if isinstance(value, (list, tuple, set)):
        return [encode_result(v, base64_strings) for v in value]
    if isinstance(value, dict):
        flat: list[Any] = []
        for k, v in value.items():
            flat += [k, v]
        return encode_result(flat, base64_strings)
    return encode_result(str(value).encode(), base64_strings)


def create_gateway(redis_url: str, token: str) -> Starlette:
    """The gateway app, forwarding to the Redis at `redis_url`."""
    import redis.asyncio as aioredis

    # RESP2 and raw replies: Upstash renders Redis's RESP2 shapes (flat arrays, scores as
    # strings); RESP3, redis-py's default, nests pairs and sends scores as numbers, which the
    # upstash clients cannot parse. No redis-py conversions either.
    # A burst beyond the pool waits for a connection, as a request to Upstash waits its turn,
    # rather than failing with redis-py's "Too many connections".
    pool = aioredis.BlockingConnectionPool.from_url(
        redis_url, max_connections=256, timeout=30, decode_responses=False, protocol=2
    )
    client = aioredis.Redis.from_pool(pool)
    client.response_callbacks.clear()
    scripts: dict[str, str] = {}  # sha of the script as sent -> sha Redis knows it by

    def rewrite(command: Sequence[Any]) -> list[Any]:
        parts = [str(p) if not isinstance(p, (str, bytes)) else p for p in command]
        name = str(parts[0]).upper() if parts else ""
        if name in _SCRIPT_COMMANDS and len(parts) > 1:
            parts[1] = strip_shebang(str(parts[1]))
        elif name in _SHA_COMMANDS and len(parts) > 1:
            parts[1] = scripts.get(str(parts[1]), str(parts[1]))
        elif name == "SCRIPT" and len(parts) > 2 and str(parts[1]).upper() == "LOAD":
            original = str(parts[2])
            scripts[_sha(original)] = _sha(strip_shebang(original))
            parts[2] = strip_shebang(original)
        return parts

    def authorized(request: Request) -> bool:
        sent = request.headers.get("authorization", "")
        scheme, _, value = sent.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.encode(), token.encode())

    def reply_for(result: Any, base64_strings: bool, name: str) -> dict[str, Any]:
        if isinstance(result, Exception):
            return {"error": str(result)}
        if name == "SCRIPT" and isinstance(result, bytes):
            # SCRIPT LOAD answers with the sha the client computed from the script it sent.
            loaded = result.decode()
            for original, stored in scripts.items():
                if stored == loaded:
                    return {"result": encode_result(original.encode(), base64_strings)}
        return {"result": encode_result(result, base64_strings)}

    async def parse(request: Request) -> tuple[Any, bool] | JSONResponse:
        if not authorized(request):
            return JSONResponse({"error": "Unauthorized"}, 401)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": "ERR failed to parse command"}, 400)
        return body, request.headers.get("upstash-encoding", "").lower() == "base64"

    async def single(request: Request) -> JSONResponse:
        parsed = await parse(request)
        if isinstance(parsed, JSONResponse):
            return parsed
        command, b64 = parsed
        if not isinstance(command, list) or not command:
            return JSONResponse({"error": "ERR command must be a non-empty array"}, 400)
        try:
            result: Any = await client.execute_command(*rewrite(command))  # type: ignore[no-untyped-call]
        except Exception as exc:  # a Redis error reply, rendered as Upstash does
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(reply_for(result, b64, str(command[0]).upper()))

    async def batch(request: Request, transaction: bool) -> JSONResponse:
        parsed = await parse(request)
        if isinstance(parsed, JSONResponse):
            return parsed
        commands, b64 = parsed
        if not isinstance(commands, list) or not all(isinstance(c, list) and c for c in commands):
            return JSONResponse({"error": "ERR body must be an array of commands"}, 400)
        pipe = client.pipeline(transaction=transaction)
        for command in commands:
            pipe.execute_command(*rewrite(command))
        try:
            results = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(
            [reply_for(r, b64, str(c[0]).upper()) for r, c in zip(results, commands, strict=True)]
        )

    async def pipeline(request: Request) -> JSONResponse:
        return await batch(request, transaction=False)

    async def multi_exec(request: Request) -> JSONResponse:
        return await batch(request, transaction=True)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(
        routes=[
            Route("/", single, methods=["POST"]),
            Route("/pipeline", pipeline, methods=["POST"]),
            Route("/multi-exec", multi_exec, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def serve(redis_url: str, token: str, host: str = "127.0.0.1", port: int = 8079) -> None:
    """Run the gateway under uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_gateway(redis_url, token), host=host, port=port, log_level="warning")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Upstash-REST-compatible gateway (dev/test only)")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8079)
    args = parser.parse_args(argv)
    serve(args.redis_url, args.token, args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
