"""Blocking store calls off the event loop."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


async def blocking(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``call`` in a worker thread, so the event loop never waits on the database."""
    return await anyio.to_thread.run_sync(functools.partial(call, *args, **kwargs))
