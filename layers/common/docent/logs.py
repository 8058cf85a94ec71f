"""Structured JSON logs through Powertools Logger, for every `docent.*` logger.

Powertools Logger owns the `docent` logger (service name `docent`); the module loggers
(`docent.chat`, `docent.web`, ...) propagate to it, so every line is one JSON object with the
level, message, extra fields (request_id, route, status, latency_ms, tier) and, on Lambda, the
function context and correlation id. Keys, tokens and question text are never logged
(questions only with LOG_QUESTIONS=true).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

_logger: Logger | None = None


def get_logger(level: str | None = None) -> Logger:
    """The process's Powertools Logger, created on first use."""
    global _logger
    if _logger is None:
        from aws_lambda_powertools import Logger

        _logger = Logger(
            service=os.environ.get("POWERTOOLS_SERVICE_NAME", "docent"),
            level=level or os.environ.get("LOG_LEVEL", "INFO"),
        )
    return _logger
