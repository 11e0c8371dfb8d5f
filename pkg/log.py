"""structlog set-up: one event name per happening, ids bound to the logger."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterable, Iterator
from typing import Any

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
    return structlog.get_logger(component=name)  # type: ignore[no-any-return]  # structlog returns Any


CALL_IDS = ("request_id", "user_id", "device_id")  # metadata of a call bound to each of its log lines


def call_ids(metadata: Iterable[tuple[str, Any]] | None) -> dict[str, str]:
    """The request_id, user_id and device_id a call's metadata carries (each cut to 24 characters)."""
    return {key: value[:24] for key, value in metadata or () if key in CALL_IDS and isinstance(value, str) and value}


def request_ids(request: Any) -> dict[str, str]:
    """The user_id and device_id fields of a request message that has them (a call
    between nodes: ConnSignIn, Sync, MessageACK, Offline, ...), when set."""
    ids = {}
    for key in ("user_id", "device_id"):
        value = getattr(request, key, 0)
        if value and isinstance(value, int):
            ids[key] = str(value)
    return ids


@contextlib.contextmanager
def bound(**fields: str) -> Iterator[None]:
    """Every log line written inside (this task and the tasks it starts) carries `fields`."""
    if not fields:
        yield
        return
    with structlog.contextvars.bound_contextvars(**fields):
        yield


class Summary:
    """A logger for failures that come in bursts (a dependency down, a flood of bad
    input): each kind is logged at once the first time, then at most once per `interval`
    seconds as one line with `repeated=N` (how many more there were), instead of one line
    (or traceback) per occurrence. A kind is (level, event, `kind`)."""

    def __init__(self, logger: Any, interval: float = 10.0) -> None:
        self._log = logger
        self.interval = interval
        self._windows: dict[tuple[str, str, str], list[Any]] = {}  # key -> [more, last fields]

    def warning(self, event: str, *, kind: str, **fields: Any) -> None:
        self._record("warning", event, kind, fields)

    def error(self, event: str, *, kind: str, **fields: Any) -> None:
        self._record("error", event, kind, fields)

    def exception(self, event: str, *, kind: str, **fields: Any) -> None:
        """An unexpected error: the first of a kind with its traceback, the rest counted."""
        self._record("exception", event, kind, fields)

    def _record(self, level: str, event: str, kind: str, fields: dict[str, Any]) -> None:
        key = (level, event, kind)
        window = self._windows.get(key)
        if window is not None:
            window[0] += 1
            window[1] = fields
            return
        getattr(self._log, level)(event, kind=kind, **fields)
        self._open(key, fields)

    def _open(self, key: tuple[str, str, str], fields: dict[str, Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: nothing to summarise with, log each
            return
        self._windows[key] = [0, fields]
        loop.call_later(self.interval, self._close, key)

    def _close(self, key: tuple[str, str, str]) -> None:
        more, fields = self._windows.pop(key)
        if not more:
            return
        level, event, kind = key
        log = self._log.error if level == "exception" else getattr(self._log, level)
        log(event, kind=kind, repeated=more, seconds=self.interval, **fields)
        self._open(key, fields)  # a steady stream stays one line per interval
