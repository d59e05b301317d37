"""Logging to the project's log file, with every known secret redacted at the root handler."""

from __future__ import annotations

import json
import logging
import os
import sys
from contextvars import ContextVar
from pathlib import Path

from partnersync.errors import ConfigError


class RedactingFilter(logging.Filter):
    """Replaces registered secret values in every formatted record with ``***``."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def register(self, *values: str) -> None:
        """Add secrets to redact (empty and very short values are ignored)."""
        self._secrets.update(v for v in values if v and len(v) >= 4)

    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Format once, redact, and freeze the message."""
        message = self.redact(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


CURRENT_RUN: ContextVar[int | None] = ContextVar("partnersync_run", default=None)
"""The sync run the current task works for: JSON log lines carry it as ``run_id``."""


class RunIdFilter(logging.Filter):
    """Stamps each record with the current run's id (``None`` outside a run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``run_id``; never drops a record."""
        record.run_id = CURRENT_RUN.get()
        return True


LEVEL_ENV = "PARTNERSYNC_LOG_LEVEL"
FORMAT_ENV = "PARTNERSYNC_LOG_FORMAT"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (for log shippers)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON (its message already redacted by the filter)."""
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        run_id = getattr(record, "run_id", None)
        if run_id is not None:
            entry["run_id"] = run_id
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(
    log_file: Path, level: int | str | None = None, *, to_stderr: bool = False
) -> RedactingFilter:
    """Send partnersync's (and httpx's) logs to ``log_file`` (and stderr, for daemons under
    systemd or Kubernetes, with ``to_stderr``); returns the redaction filter.

    The level is ``level``, else ``$PARTNERSYNC_LOG_LEVEL``, else INFO (waits and retries are
    said at INFO); database-migration chatter is kept to warnings.
    """
    chosen = level or os.environ.get(LEVEL_ENV) or "INFO"
    resolved = logging.getLevelName(chosen.upper()) if isinstance(chosen, str) else chosen
    if not isinstance(resolved, int):
        raise ConfigError(f"log level must be one of DEBUG, INFO, WARNING, ERROR (got {chosen!r})")
    log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not log_file.exists():  # owner-only from the first byte (0600)
        os.close(os.open(log_file, os.O_WRONLY | os.O_CREAT, 0o600))
    redactor = RedactingFilter()
    handlers: list[logging.Handler] = [logging.FileHandler(log_file, encoding="utf-8")]
    if to_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_partnersync", False):
            root.removeHandler(existing)
            existing.close()
    for handler in handlers:
        if os.environ.get(FORMAT_ENV, "").lower() == "json":
            handler.setFormatter(JsonFormatter())
        else:
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
        handler.addFilter(redactor)
        handler.addFilter(RunIdFilter())
        handler._partnersync = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(resolved)
    logging.getLogger("alembic").setLevel(max(resolved, logging.WARNING))
    # httpx says every request at INFO: kept for DEBUG (our client says waits and retries).
    logging.getLogger("httpx").setLevel(max(resolved, logging.WARNING))
    # APScheduler says "Running job ..." at INFO on every fire; we log what the job did.
    logging.getLogger("apscheduler").setLevel(max(resolved, logging.WARNING))
    return redactor
