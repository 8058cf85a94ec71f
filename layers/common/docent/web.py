"""What every Docent app shares: the app factory, request context, errors, keys and limits.

The functions under `functions/` hold only their routes and request models; each builds its app
with `create_app(router)`, and the bundled app composes all the routers the same way.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docent import __version__, logs, metrics
from docent.auth import Caller, KeyRing, client_ip, key_id, presented_key
from docent.config import Settings, get_settings
from docent.errors import (
    BadRequest,
    DocentError,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from docent.services import Services, get_services

log = logging.getLogger("docent")

_BODY_METHODS = {"POST", "PUT", "PATCH"}

# Every response: no MIME sniffing. HTML pages: never framed (clickjacking), and a policy that
# lets them load only what they use: Docent's pages their own script and the API; Swagger UI
# (`/docs`) its bundle from jsDelivr, as FastAPI serves it.
_ALWAYS = {"x-content-type-options": "nosniff"}
_PAGE = {"x-frame-options": "DENY", "referrer-policy": "strict-origin-when-cross-origin"}
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_SWAGGER_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: "
    "https://fastapi.tiangolo.com; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def error_body(exc: DocentError, request_id: str) -> dict[str, Any]:
    return {"error": {"code": exc.code, "message": exc.message, "request_id": request_id}}


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


class RequestContext:
    """Pure ASGI middleware (streams pass through untouched).

    Gives each request an id, refuses wrong content types (415) and oversized bodies (413) before
    the body is read, adds the rate-limit headers, and logs one structured line per request.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def _limit_for(self, path: str) -> int:
        return (
            self.settings.max_chat_body_bytes
            if path.startswith(("/chat", "/v1/", "/mcp", "/feedback"))
            else self.settings.max_body_bytes
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = _headers(scope)
        if "aws.context" not in scope:  # behind the Web Adapter: its forwarded Lambda context
            from docent.aws import adapter_context

            forwarded = adapter_context(headers)
            if forwarded is not None:
                scope["aws.context"] = forwarded
        context = scope.get("aws.context")
        request_id = getattr(context, "aws_request_id", None) or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = {"code": 500}

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                out = list(message.get("headers", []))
                present = {k.lower() for k, _ in out}
                extra = {"x-request-id": request_id, **state.get("rate_limit_headers", {})}
                extra.update(_security_headers(scope["path"], dict(out).get(b"content-type")))
                for name, value in extra.items():
                    if name.lower().encode() not in present:
                        out.append((name.lower().encode(), str(value).encode()))
                message = {**message, "headers": out}
            await send(message)

        token = logs.request_id_var.set(request_id)  # every line logged meanwhile carries it
        try:
            refusal = self._refusal(scope, headers)
            if refusal is not None:
                await _send_error(refusal, request_id, send_wrapped)
                return
            limit = self._limit_for(scope["path"])
            received = 0

            async def receive_limited() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        # An HTTPException survives FastAPI's body parsing, which would turn
                        # any other exception into a 400.
                        raise StarletteHTTPException(413, f"Request body exceeds {limit} bytes.")
                return message

            await self.app(scope, receive_limited, send_wrapped)
        finally:
            elapsed = time.perf_counter() - started
            # The route's template (/documents/{document_id}), never the raw path: bounded labels.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "route": route,
                    "status": status["code"],
                    "latency_ms": round(elapsed * 1000, 2),
                    "tier": state.get("tier"),
                },
            )
            metrics.request(route, status["code"], elapsed)
            metrics.flush()
            logs.request_id_var.reset(token)

    def _refusal(self, scope: Scope, headers: Mapping[str, str]) -> DocentError | None:
        if scope.get("method") not in _BODY_METHODS:
            return None
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._limit_for(scope["path"]):
            return PayloadTooLarge(f"Request body exceeds {self._limit_for(scope['path'])} bytes.")
        has_body = (length is not None and length != "0") or "transfer-encoding" in headers
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if has_body and not (media == "application/json" or media.endswith("+json")):
            return UnsupportedMediaType()
        return None


def _security_headers(path: str, content_type: bytes | None) -> dict[str, str]:
    if not (content_type or b"").startswith(b"text/html"):
        return _ALWAYS
    csp = _SWAGGER_CSP if path == "/docs" else PAGE_CSP
    return {**_ALWAYS, **_PAGE, "content-security-policy": csp}


async def _send_error(exc: DocentError, request_id: str, send: Send) -> None:
    body = json.dumps(error_body(exc, request_id)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "-"))


def _field(loc: Iterable[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _docent_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DocentError)
    if exc.status_code >= 500:
        log.warning("error", extra={"code": exc.code, "status": exc.status_code})
    return JSONResponse(error_body(exc, _request_id(request)), exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        bad = DocentError("The request body is not valid JSON.")
        bad.status_code, bad.code = 400, "bad_request"
        return JSONResponse(error_body(bad, _request_id(request)), 400)
    details = [{"field": _field(e.get("loc", ())), "message": str(e.get("msg"))} for e in errors]
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    body = {
        "error": {
            "code": "validation_error",
            "message": summary or "Invalid request.",
            "request_id": _request_id(request),
            "fields": details,
        }
    }
    return JSONResponse(body, 422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    mapped: DocentError
    if exc.status_code == 404:
        mapped = NotFound()
    elif exc.status_code == 413:
        mapped = PayloadTooLarge(str(exc.detail))
    elif exc.status_code == 400:
        mapped = BadRequest("The request body could not be parsed.")
    elif exc.status_code == 405:
        mapped = MethodNotAllowed()
    else:
        mapped = DocentError(str(exc.detail))
        mapped.status_code = exc.status_code
        mapped.code = "http_error"
    return JSONResponse(
        error_body(mapped, _request_id(request)), exc.status_code, headers=exc.headers
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Outside the request middleware (Starlette's outermost layer calls this): bind it again.
    with logs.bound(_request_id(request)):
        log.exception("unhandled error")
    return JSONResponse(error_body(DocentError(), _request_id(request)), 500)


def create_app(
    *routers: APIRouter,
    title: str = "Docent",
    settings: Settings | None = None,
    services: Services | None = None,
) -> FastAPI:
    """A FastAPI app with Docent's middleware and error handling around the given routers.

    Settings are read here, so a bad configuration fails at start and names the variable. The
    app serves the given settings and services (tests), else the process's (`get_services`).
    """
    given = settings
    settings = settings or get_settings()
    KeyRing(settings.api_keys, settings.admin_api_keys)
    app = FastAPI(
        title=title,
        version=__version__,
        docs_url="/docs" if settings.api_docs else None,
        openapi_url="/openapi.json" if settings.api_docs else None,
        redoc_url=None,
    )
    app.state.settings, app.state.services = given, services
    for router in routers:
        app.include_router(router)
    app.add_exception_handler(DocentError, _docent_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(RequestContext, settings=settings)
    if settings.cors_allow_origins:
        from fastapi.middleware.cors import CORSMiddleware

        # Outermost (added last): the 413 and 415 that RequestContext sends before the body is
        # read carry the CORS headers too, so a browser can read them.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_allow_origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["content-type", "authorization", "x-api-key", "accept",
                           "mcp-protocol-version"],
            expose_headers=["x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining",
                            "x-ratelimit-reset", "retry-after"],
        )  # fmt: skip
    return app


# Dependencies -------------------------------------------------------------------------------


def app_settings(app: Any) -> Settings:
    """The settings `app` serves: its own (`create_app(settings=...)`), else the process's."""
    return getattr(app.state, "settings", None) or get_settings()


def app_services(app: Any) -> Services:
    """The services `app` serves: its own (`create_app(services=...)`), else the process's."""
    return getattr(app.state, "services", None) or get_services()


# Coroutines, not plain functions: FastAPI would run those in a worker thread on every request.
async def _settings(request: Request) -> Settings:
    return app_settings(request.app)


async def _services(request: Request) -> Services:
    return app_services(request.app)


SettingsDep = Annotated[Settings, Depends(_settings)]
ServicesDep = Annotated[Services, Depends(_services)]

_keyrings: dict[tuple[tuple[str, ...], tuple[str, ...]], KeyRing] = {}


def _keyring(settings: Settings) -> KeyRing:
    cache_key = (settings.api_keys, settings.admin_api_keys)
    if cache_key not in _keyrings:
        _keyrings[cache_key] = KeyRing(*cache_key)
    return _keyrings[cache_key]


# One body for every 401 (missing, wrong or revoked key): it tells a caller nothing.
UNAUTHORIZED = "A valid API key is required."


async def get_caller(request: Request, settings: SettingsDep, services: ServicesDep) -> Caller:
    """Who is calling. A key that is sent but unknown is refused, never treated as anonymous."""
    state = request.scope.setdefault("state", {})
    decided = state.get("caller")
    if isinstance(decided, Caller):
        return decided  # already decided (and any bad key counted) by `AdminRoute`
    headers = request.headers
    ip = client_ip(request.scope, headers, settings.trusted_proxy_hops)
    key = presented_key(headers)
    if key is None:
        caller = Caller("anonymous", ip)
    else:
        tier = _keyring(settings).tier_of(key)
        if tier is None:
            await _count_bad_key(ip, settings, services)
            raise Unauthorized(UNAUTHORIZED)
        caller = Caller(tier, ip, key_id(key))
    state["tier"] = caller.tier
    state["caller"] = caller
    return caller


async def _count_bad_key(ip: str, settings: Settings, services: Services) -> None:
    """Guessing keys is limited per IP, more strictly than normal use: 429 once over the limit."""
    from docent.limits import LimiterUnavailable, check

    rule = settings.rate_limit_bad_key
    try:
        decision = await check(services.limiter, f"badkey:ip:{ip}", rule, settings.store_timeout_s)
    except LimiterUnavailable:
        return  # the 401 stands either way
    if not decision.allowed:
        metrics.rate_limited("bad_key")
        raise RateLimited("Too many requests with invalid API keys.", headers=decision.headers())


CallerDep = Annotated[Caller, Depends(get_caller)]


async def require_admin(caller: CallerDep) -> Caller:
    if caller.tier == "anonymous":
        raise Unauthorized(UNAUTHORIZED)
    if caller.tier != "admin":
        raise Forbidden("This route needs an admin API key.")
    return caller


AdminDep = Annotated[Caller, Depends(require_admin)]


def rate_limit(route: Literal["chat", "ingest", "feedback"]) -> Callable[..., Any]:
    """A dependency counting the request against its tier's sliding window."""

    async def check_limit(
        request: Request, caller: CallerDep, settings: SettingsDep, services: ServicesDep
    ) -> None:
        from docent.limits import LimiterUnavailable, check

        counted = request.scope.setdefault("state", {}).setdefault("limits_counted", set())
        if route in counted:
            return  # one request counts once, however many times the check is declared
        counted.add(route)
        rule = settings.rate_limit_anon if caller.tier == "anonymous" else settings.rate_limit_key
        try:
            decision = await check(
                services.limiter, f"{route}:{caller.identity}", rule, settings.store_timeout_s
            )
        except LimiterUnavailable as exc:
            admitted = settings.fail_open(route)
            metrics.limiter_unavailable(route, admitted)
            if admitted:
                log.warning("rate limit store unavailable: admitting", extra={"route": route})
                return
            raise Unavailable(
                "The rate-limit store is unavailable.", headers={"Retry-After": "5"}
            ) from exc
        headers = decision.headers()
        request.scope.setdefault("state", {})["rate_limit_headers"] = headers
        if not decision.allowed:
            metrics.rate_limited(route)
            raise RateLimited(
                f"Rate limit of {rule.limit} requests per {rule.window_s}s exceeded; "
                f"retry in {headers['Retry-After']}s.",
                headers=headers,
            )

    return check_limit


class AdminRoute(APIRoute):
    """An admin route: the key, then (for a route with a body) the ingest limit, before the body.

    FastAPI reads and parses a request body before it solves the route's dependencies, so an
    anonymous caller could make the server buffer and parse `MAX_BODY_BYTES` per request only
    to be told 401 afterwards. The route's own dependencies still run, and find the answer.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def admitted(request: Request) -> Response:
            settings, services = app_settings(request.app), app_services(request.app)
            caller = await require_admin(await get_caller(request, settings, services))
            if request.method in _BODY_METHODS:
                await rate_limit("ingest")(request, caller, settings, services)
            return await handle(request)

        return admitted
