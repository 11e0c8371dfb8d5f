"""structlog set-up: one event name per happening, ids bound to the logger."""

from __future__ import annotations

import logging
import sys

import structlog


def setup(level: str = "info", fmt: str = "console") -> None:
    """Configure structlog for this process (readable in dev, JSON in production)."""
    # JSON needs tracebacks rendered to text; the console renderer prints them itself.
    tail: list[structlog.typing.Processor] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if fmt == "json"
        else [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *tail,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(component=name)  # type: ignore[no-any-return]
