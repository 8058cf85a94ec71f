"""One error hierarchy: every failure a client sees is a `DocentError` with status and code.

    DocentError                 500 internal_error
    ├── ConfigurationError      500 configuration_error
    ├── BadRequest              400 bad_request
    │   └── DocumentError       400 invalid_document
    ├── Unauthorized            401 unauthorized
    ├── Forbidden               403 forbidden
    ├── NotFound                404 not_found
    ├── MethodNotAllowed        405 method_not_allowed
    ├── PayloadTooLarge         413 payload_too_large
    ├── UnsupportedMediaType    415 unsupported_media_type
    ├── RateLimited             429 rate_limited           (Retry-After)
    ├── UpstreamError           502 upstream_error
    │   └── AnswerFailed        502 internal_error         (the answer broke mid-stream)
    ├── Unavailable             503 unavailable            (Retry-After)
    │   └── StoreLocked         503 unavailable
    ├── UpstreamTimeout         504 upstream_timeout
    └── InsufficientStorage     507 insufficient_storage

The status and headers always come from the instance: a JSON error (`web`), an answer collected
as JSON after its stream failed (`chat.collect` raises the very error the stream reported), the
OpenAI protocol's error payload, and Lambda (Mangum serves the same app). Request validation is
FastAPI's own 422 (`validation_error`).

Each backend maps its own failures onto this tree, in one place, so the code that calls it never
translates: the vector stores (`EdgeStore._run` through `backend()` below, `QdrantStore._call`: a
timeout is 504, a refusal the server answered 502, anything else 503 with Retry-After), the model
server (`modelclient.classify`), the rate-limit store (`limits.check`, which `web` answers with
503 or lets through as `RATE_LIMIT_FAIL_OPEN` says) and the insights store (`backend()` around its
calls in `insights`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


class DocentError(Exception):
    """Base of every error Docent reports, rendered as `{"error": {code, message, request_id}}`.

    A subclass states what differs from its parent as class keywords. One that sets a `status`
    is a new kind of failure, and its `code` is its name in snake case (`NotFound`: `not_found`)
    unless it says `code=`; one that does not keeps its parent's status and code.
    """

    status_code: int = 500
    code: str = "internal_error"
    default_message: str = "Internal error."

    def __init_subclass__(
        cls,
        *,
        status: int | None = None,
        code: str | None = None,
        message: str | None = None,
        **kwargs: object,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status_code = status
            cls.code = _snake(cls.__name__)
        if code is not None:
            cls.code = code
        if message is not None:
            cls.default_message = message

    def __init__(self, message: str | None = None, *, headers: Mapping[str, str] | None = None):
        self.message = message or self.default_message
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(self.message)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class ConfigurationError(DocentError, status=500, message="Invalid configuration."):
    """A setting is missing or contradicts another; raised at start, names the variable."""


class BadRequest(DocentError, status=400, message="Bad request."):
    """The request is not one Docent can act on: a malformed body or a contradictory field."""


class Unauthorized(DocentError, status=401, message="Missing or invalid API key."):
    """No key, or not one this deployment knows."""


class Forbidden(DocentError, status=403, message="This key may not use this route."):
    """A known caller refused here: a chat key on an admin route, an origin MCP does not allow."""


class NotFound(DocentError, status=404, message="Not found."):
    """No such route (or a resource the route names does not exist)."""


class MethodNotAllowed(DocentError, status=405, message="Method not allowed."):
    """The route exists but not with this method."""


class PayloadTooLarge(DocentError, status=413, message="Request body too large."):
    """A body or an object to ingest is over its limit; nothing of it was stored."""


class UnsupportedMediaType(
    DocentError, status=415, message="Content-Type must be application/json."
):
    """A JSON route given another content type."""


class RateLimited(DocentError, status=429, message="Too many requests."):
    """The caller's sliding window is full; `Retry-After` says when it frees."""


class UpstreamError(DocentError, status=502, message="A backend service failed."):
    """A dependency answered, but with an error we cannot recover from."""


class AnswerFailed(UpstreamError, code="internal_error", message="The answer failed."):
    """The answer broke after its stream began, for a reason that is not a `DocentError`."""


class Unavailable(DocentError, status=503, message="A backend service is unavailable."):
    """A dependency is down or refusing work; worth retrying later."""


class UpstreamTimeout(DocentError, status=504, message="A backend service did not answer in time."):
    """A dependency did not answer within its bounded wait."""


class InsufficientStorage(
    DocentError,
    status=507,
    message=(
        "The disk holding the vector store is too full for this write; nothing was written. "
        "Free disk space (or raise its size), then retry."
    ),
):
    """The disk holding the embedded store lacks room for a write: refused, nothing written."""


class StoreLocked(
    Unavailable,
    message=(
        "The vector store is held by another process (a running `docent serve`?): stop it, "
        "or point DOCENT_URL at it."
    ),
):
    """Another process holds the embedded store's folder (its OS lock): this one touches nothing."""


class DocumentError(BadRequest, code="invalid_document", message="The document could not be read."):
    """A document cannot be read or parsed (bad PDF, binary data, unsupported format)."""


@contextmanager
def backend(what: str) -> Iterator[None]:
    """Inside a backend, around its client's calls: 504 when the call timed out, else 503.

    Docent's errors pass through; anything else the client raises (refused connection, protocol
    error, a 5xx of the service, a failing disk) means the dependency is unavailable right now.
    An OS error's description ("No space left on device") is kept: it names no path.
    """
    try:
        yield
    except DocentError:
        raise
    except TimeoutError as exc:
        raise UpstreamTimeout(f"The {what} did not answer in time.") from exc
    except Exception as exc:
        logging.getLogger("docent.errors").warning(
            "%s failed: %s", what, type(exc).__name__, exc_info=exc
        )
        reason = f": {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else ""
        raise Unavailable(
            f"The {what} is unavailable{reason}.", headers={"Retry-After": "5"}
        ) from exc
