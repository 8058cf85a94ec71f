"""Structured JSON logs through Powertools Logger, for every `docent.*` logger.

Powertools Logger owns the `docent` logger (service name `docent`); the module loggers
(`docent.chat`, `docent.web`, ...) propagate to it, so every line is one JSON object with the
level, message, extra fields (route, status, latency_ms, tier) and, on Lambda, the function
context and correlation id. Keys, tokens and question text are never logged (questions only
with LOG_QUESTIONS=true).

The request id is context, not a parameter: the request middleware binds it (`bound`) for the
request's duration, and the formatter adds it to every line logged meanwhile, by any module,
in any task the request starts.
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

_logger: Logger | None = None

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "docent_request_id", default=None
)


def current_request_id() -> str:
    """The id of the request being served, or "-" outside one (the CLI, a scheduled sync)."""
    return request_id_var.get() or "-"


@contextmanager
def bound(request_id: str) -> Iterator[None]:
    """Every line logged inside (and in the tasks started inside) carries `request_id`."""
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)


def with_request_id(record: logging.LogRecord) -> logging.LogRecord:
    """`record` with the bound request id, unless it names one itself."""
    request_id = request_id_var.get()
    if request_id is not None and not hasattr(record, "request_id"):
        record.request_id = request_id
    return record


def get_logger(level: str | None = None) -> Logger:
    """The process's Powertools Logger, created on first use (at `level`, else LOG_LEVEL)."""
    global _logger
    if _logger is None:
        from aws_lambda_powertools import Logger
        from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

        class Formatter(LambdaPowertoolsFormatter):
            def format(self, record: logging.LogRecord) -> str:
                return super().format(with_request_id(record))

        if level is None:
            from docent.config import get_settings

            level = get_settings().log_level
        _logger = Logger(
            service=os.environ.get("POWERTOOLS_SERVICE_NAME", "docent"),  # Powertools' own
            level=level,
            logger_formatter=Formatter(),
        )
    return _logger
