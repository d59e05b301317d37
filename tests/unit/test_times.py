"""``--since`` in the user's words."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from partnersync.config.times import parse_since
from partnersync.errors import ConfigError

NOW = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T08:00", datetime(2026, 11, 1, 8, tzinfo=UTC)),
        ("2026-11-01T08:00+08:00", datetime(2026, 11, 1, 0, tzinfo=UTC)),
        ("2026-11-01T08:00:00Z", datetime(2026, 11, 1, 8, tzinfo=UTC)),
        ("3d", datetime(2026, 11, 19, 10, 30, tzinfo=UTC)),
        ("12h", datetime(2026, 11, 21, 22, 30, tzinfo=UTC)),
        ("90m", datetime(2026, 11, 22, 9, 0, tzinfo=UTC)),
        ("2w", datetime(2026, 11, 8, 10, 30, tzinfo=UTC)),
        ("today", datetime(2026, 11, 22, tzinfo=UTC)),
        ("Yesterday", datetime(2026, 11, 21, tzinfo=UTC)),
    ],
)
def test_since_forms(text: str, moment: datetime) -> None:
    assert parse_since(text, NOW) == moment


@pytest.mark.parametrize("text", ["last week", "2026-13-01", "3 days ago", "", "12x"])
def test_a_bad_since_says_what_is_accepted(text: str) -> None:
    with pytest.raises(ConfigError, match="--since takes an ISO date or time"):
        parse_since(text, NOW)
