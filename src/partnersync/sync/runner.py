"""Holding a run's lease while it works, and stopping a run between pages (DESIGN §4).

:class:`LeaseKeeper` grants a scope's lease, renews it from a thread (every third of its time to
live, so one missed beat never loses it), fences every hub write of the run with its epoch, and
gives it back at the end — synchronously, so it is released even while the event loop is being
torn down by Ctrl-C. :class:`StopRequest` is how SIGTERM asks running work to end after the
page it is committing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

from partnersync.clock import Clock, SystemClock
from partnersync.errors import AlreadyRunningError
from partnersync.sync.offload import blocking
from partnersync.sync.store import HubStore, Lease, fenced

log = logging.getLogger("partnersync.sync")

DEFAULT_LEASE_SECONDS = 60.0


def process_holder() -> str:
    """Who holds a lease: host, pid and a random tag (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class StopRequest:
    """Set once (by SIGTERM, or a daemon shutting down); running work ends after its current
    page or write and reports itself ``interrupted``."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        """Ask every run to stop at its next safe point."""
        if self.reason is None:
            self.reason = reason

    @property
    def requested(self) -> bool:
        """True once a stop was asked for."""
        return self.reason is not None


@dataclass
class HeldLease:
    """A lease while it is held: ``lost`` turns True if a renewal found a later epoch."""

    lease: Lease
    run_id: int | None = None
    lost: bool = field(default=False)


class RunEngine:
    """What the pull and push engines share: the hub, a clock, this process's leases and the
    stop request their runs obey."""

    def __init__(
        self,
        store: HubStore,
        *,
        clock: Clock | None = None,
        leases: LeaseKeeper | None = None,
        stop: StopRequest | None = None,
    ) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.leases = leases or LeaseKeeper(store)
        self.stop = stop or StopRequest()


class LeaseKeeper:
    """Grants, renews and releases leases of one hub for one process."""

    def __init__(self, store: HubStore, *, ttl: float = DEFAULT_LEASE_SECONDS) -> None:
        self.store = store
        self.ttl = ttl
        self.holder = process_holder()

    @asynccontextmanager
    async def hold(
        self,
        scope: str,
        *,
        runs_of: tuple[str, str, str] | None = None,
        fence: bool = True,
        wait: float = 0.0,
    ) -> AsyncIterator[HeldLease]:
        """Hold ``scope`` for the body, or raise AlreadyRunningError — at once, or after
        ``wait`` seconds of asking again while another holder has it. With ``fence``, every
        hub transaction of the body checks the epoch first."""
        deadline = anyio.current_time() + wait
        while True:
            try:
                lease = await blocking(
                    self.store.leases.acquire, scope, self.holder, self.ttl, runs_of=runs_of
                )
                break
            except AlreadyRunningError:
                if anyio.current_time() >= deadline:
                    raise
                await anyio.sleep(0.05)
        held = HeldLease(lease)
        beating = threading.Event()
        # A thread, not a task: the heartbeat goes on while the event loop is busy mapping a big
        # page, and stops only with the process (killed or SIGSTOPped — as it should).
        beat = threading.Thread(
            target=self._beat, args=(held, beating), name=f"lease {scope}", daemon=True
        )
        beat.start()
        try:
            if fence:
                with fenced(lease.fence):
                    yield held
            else:
                yield held
        finally:
            beating.set()
            self.store.leases.release(lease)

    def _beat(self, held: HeldLease, stopped: threading.Event) -> None:
        while not stopped.wait(self.ttl / 3):
            try:
                alive = self.store.leases.renew(held.lease, held.run_id)
            except Exception:  # the hub blinked: try again next beat, the lease has slack
                log.warning("%s: lease renewal failed", held.lease.scope, exc_info=True)
                continue
            if not alive:
                held.lost = True
                log.warning(
                    "%s: lease epoch %s was taken over; this run's writes are refused from now",
                    held.lease.scope,
                    held.lease.epoch,
                )
                return
