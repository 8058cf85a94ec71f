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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


class DocentError(Exception):
    """Base of every error Docent reports, rendered as `{"error": {code, message, request_id}}`."""

    status_code: int = 500
    code: str = "internal_error"
    default_message: str = "Internal error."

    def __init__(self, message: str | None = None, *, headers: Mapping[str, str] | None = None):
        self.message = message or self.default_message
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(self.message)


class ConfigurationError(DocentError):
    """A setting is missing or contradicts another; raised at start, names the variable."""

    code = "configuration_error"
    default_message = "Invalid configuration."


class BadRequest(DocentError):
    status_code = 400
    code = "bad_request"
    default_message = "Bad request."


class Unauthorized(DocentError):
    status_code = 401
    code = "unauthorized"
    default_message = "Missing or invalid API key."


class Forbidden(DocentError):
    status_code = 403
    code = "forbidden"
    default_message = "This key may not use this route."


class NotFound(DocentError):
    status_code = 404
    code = "not_found"
    default_message = "Not found."


class MethodNotAllowed(DocentError):
    status_code = 405
    code = "method_not_allowed"
    default_message = "Method not allowed."


class PayloadTooLarge(DocentError):
    status_code = 413
    code = "payload_too_large"
    default_message = "Request body too large."


class UnsupportedMediaType(DocentError):
    status_code = 415
    code = "unsupported_media_type"
    default_message = "Content-Type must be application/json."


class RateLimited(DocentError):
    status_code = 429
    code = "rate_limited"
    default_message = "Too many requests."


class UpstreamError(DocentError):
    """A dependency answered, but with an error we cannot recover from."""

    status_code = 502
    code = "upstream_error"
    default_message = "A backend service failed."


class AnswerFailed(UpstreamError):
    """The answer broke after its stream began, for a reason that is not a `DocentError`."""

    code = "internal_error"
    default_message = "The answer failed."


class Unavailable(DocentError):
    """A dependency is down or refusing work; worth retrying later."""

    status_code = 503
    code = "unavailable"
    default_message = "A backend service is unavailable."


class UpstreamTimeout(DocentError):
    status_code = 504
    code = "upstream_timeout"
    default_message = "A backend service did not answer in time."


class InsufficientStorage(DocentError):
    """The disk holding the embedded store lacks room for a write: refused, nothing written."""

    status_code = 507
    code = "insufficient_storage"
    default_message = (
        "The disk holding the vector store is too full for this write; nothing was written. "
        "Free disk space (or raise its size), then retry."
    )


class StoreLocked(Unavailable):
    """Another process holds the embedded store's folder (its OS lock): this one touches nothing."""

    default_message = (
        "The vector store is held by another process (a running `docent serve`?): stop it, "
        "or point DOCENT_URL at it."
    )


class DocumentError(BadRequest):
    """A document cannot be read or parsed (bad PDF, binary data, unsupported format)."""

    code = "invalid_document"
    default_message = "The document could not be read."


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
