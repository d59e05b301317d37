"""Named failpoints for crash tests.

``PARTNERSYNC_FAILPOINTS="after_page_commit:3"`` kills the process with SIGKILL the third time
the engine passes the ``after_page_commit`` point. Unset (production), :func:`failpoint` is one
dictionary lookup. Several points may be given, comma-separated.
"""

from __future__ import annotations

import os
import signal

_ENV = "PARTNERSYNC_FAILPOINTS"


def _parse(spec: str) -> dict[str, int]:
    points: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, nth = item.partition(":")
        points[name] = int(nth or "1")
    return points


_armed = _parse(os.environ.get(_ENV, ""))
_hits: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Kill this process with SIGKILL if the failpoint ``name`` is armed and its hit is due."""
    if not _armed or name not in _armed:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == _armed[name]:
        os.kill(os.getpid(), signal.SIGKILL)
