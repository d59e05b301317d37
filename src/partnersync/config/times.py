"""Times in the user's words, for ``--since``: ISO dates and times, durations, today/yesterday.

* ``2026-11-01`` — midnight UTC that day;
* ``2026-11-01T08:00`` — UTC unless an offset is given (``2026-11-01T08:00+08:00``, ``…Z``);
* ``3d``, ``12h``, ``90m``, ``45s``, ``2w`` — that long before now;
* ``today``, ``yesterday`` — midnight UTC.

Anything else is a :class:`~partnersync.errors.ConfigError` saying what is accepted.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from partnersync.errors import ConfigError

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
ACCEPTED = (
    "an ISO date or time (2026-11-01, 2026-11-01T08:00, 2026-11-01T08:00+08:00), a duration "
    "(90m, 12h, 3d, 2w) or today / yesterday"
)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """The moment ``text`` names, as an aware UTC datetime."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    value = text.strip().lower()
    if value in ("today", "yesterday"):
        day = now.date() - timedelta(days=1 if value == "yesterday" else 0)
        return datetime.combine(day, time(), UTC)
    duration = DURATION.match(value)
    if duration:
        amount, unit = int(duration.group(1)), duration.group(2)
        return now - timedelta(**{UNITS[unit]: amount})
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            return datetime.combine(date.fromisoformat(text.strip()), time(), UTC)
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since takes {ACCEPTED}; not {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
