"""How often and how politely the archiver asks: HTTP freshness and per-host request slots.

Politeness holds across every worker process because it lives in the database: a host has
N slot rows (at most N requests at once) and one gate row (slot -1) whose `until` is the
earliest moment the next request may start. Leases expire, so a killed worker cannot keep
a slot forever.

Waiting does not busy-poll the database: threads of one process first take a per-host
in-process semaphore of the same size (so at most `concurrency` of them per process ever
ask the database, the rest block on the semaphore), and a thread that holds it but finds
every slot row leased by other processes retries with exponential backoff, at most a few
times a second (`max_poll`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..context import Context
from ..db import utcnow
from .models import HostSlot

log = logging.getLogger(__name__)

GATE = -1


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else None


def cache_directives(value: str | None) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for part in (value or "").split(","):
        name, _, arg = part.strip().partition("=")
        if name:
            out[name.lower()] = arg.strip().strip('"') or None
    return out


def fresh_until(headers: dict[str, str], now: datetime | None = None) -> datetime | None:
    """Until when a response stays fresh (Cache-Control s-maxage/max-age minus Age, else
    Expires relative to Date), or None when it must be revalidated.

    By hand on purpose: cachecontrol computes freshness only inside its cache lookup (and
    ignores s-maxage and Age, and directive names not in lower case); hishel's functions are
    private and add heuristic freshness from Last-Modified, where we want the recheck interval."""
    now = now or utcnow()
    cc = cache_directives(headers.get("cache-control"))
    if "no-store" in cc or "no-cache" in cc:
        return None
    for name in ("s-maxage", "max-age"):
        if name in cc:
            try:
                ttl = int(cc[name] or "")
            except ValueError:
                return None
            try:
                age = int(headers.get("age") or 0)
            except ValueError:
                age = 0
            ttl -= age
            return now + timedelta(seconds=ttl) if ttl > 0 else None
    expires = headers.get("expires")
    if expires is not None:
        when = _http_date(expires)
        if when is None:
            return None  # an invalid Expires means already expired
        date = _http_date(headers.get("date")) or now
        ttl = (when - date).total_seconds()
        return now + timedelta(seconds=ttl) if ttl > 0 else None
    return None


def _insert_ignore(ctx: Context, rows: list[dict]) -> None:
    with ctx.db.session() as s:
        dialect = s.bind.dialect.name
        mod = postgresql if dialect == "postgresql" else sqlite
        s.execute(mod.insert(HostSlot).values(rows).on_conflict_do_nothing(index_elements=["host", "slot"]))


class HostSlots:
    """At most `concurrency` requests at once per host, starting at least `delay` apart."""

    def __init__(
        self, ctx: Context, concurrency: int, delay: float, lease_seconds: float,
        poll: float = 0.05, max_poll: float = 0.5, sleep: Callable[[float], None] = time.sleep,
    ):
        self.ctx = ctx
        self.concurrency = concurrency
        self.delay = delay
        self.lease = lease_seconds
        self.poll = poll
        self.max_poll = max(poll, max_poll)
        self.sleep = sleep
        self._known: set[str] = set()
        self._local: dict[str, threading.BoundedSemaphore] = {}
        self._local_lock = threading.Lock()

    def _semaphore(self, host: str) -> threading.BoundedSemaphore:
        with self._local_lock:
            sem = self._local.get(host)
            if sem is None:
                sem = self._local[host] = threading.BoundedSemaphore(self.concurrency)
            return sem

    def pause(self, attempt: int) -> float:
        """Seconds to wait before the `attempt`-th retry (0-based): doubling from `poll`, capped at `max_poll`, +-25% jitter."""
        return min(self.max_poll, self.poll * 2 ** min(attempt, 30)) * random.uniform(0.75, 1.25)

    @classmethod
    def from_settings(cls, ctx: Context) -> HostSlots:
        s = ctx.settings
        lease = s.archiver_total_timeout + 3 * (s.archiver_connect_timeout + s.archiver_retry_after_max) + 60
        return cls(ctx, s.archiver_host_concurrency, s.archiver_host_delay_ms / 1000, lease)

    def _ensure(self, host: str) -> None:
        if host in self._known:
            return
        _insert_ignore(self.ctx, [{"host": host, "slot": n} for n in [GATE, *range(self.concurrency)]])
        self._known.add(host)

    def _try_acquire(self, host: str, holder: str) -> int | None:
        now = utcnow()
        free = or_(HostSlot.holder.is_(None), HostSlot.until < now)
        with self.ctx.db.session() as s:
            for slot in random.sample(range(self.concurrency), self.concurrency):
                res = s.execute(
                    update(HostSlot)
                    .where(HostSlot.host == host, HostSlot.slot == slot, free)
                    .values(holder=holder, until=now + timedelta(seconds=self.lease))
                )
                if res.rowcount == 1:
                    return slot
        return None

    def _renew(self, host: str, slot: int, holder: str) -> None:
        with self.ctx.db.session() as s:
            s.execute(
                update(HostSlot)
                .where(HostSlot.host == host, HostSlot.slot == slot, HostSlot.holder == holder)
                .values(until=utcnow() + timedelta(seconds=self.lease))
            )

    def wait_turn(self, host: str) -> None:
        """Block until `delay` has passed since the last request start on `host`, and claim the start."""
        if self.delay <= 0:
            return
        while True:
            now = utcnow()
            with self.ctx.db.session() as s:
                res = s.execute(
                    update(HostSlot)
                    .where(HostSlot.host == host, HostSlot.slot == GATE, or_(HostSlot.until.is_(None), HostSlot.until <= now))
                    .values(until=now + timedelta(seconds=self.delay))
                )
                if res.rowcount == 1:
                    return
                until = s.scalar(select(HostSlot.until).where(HostSlot.host == host, HostSlot.slot == GATE))
            wait = (until - now).total_seconds() if until else self.poll
            self.sleep(min(max(wait, 0.001), self.delay))

    @contextmanager
    def hold(self, host: str) -> Iterator[Callable[[], None]]:
        """Hold one of the host's slots; yields the function to call before each request (it
    waits for the host's delay, and renews the slot's lease for a holder making many requests)."""
        host = host.lower()
        self._ensure(host)
        sem = self._semaphore(host)
        if not sem.acquire(timeout=self.lease):
            raise TimeoutError(f"no request slot for host {host} after {self.lease:.0f}s")
        try:
            holder = str(uuid.uuid4())
            waited, attempt = 0.0, 0
            while (slot := self._try_acquire(host, holder)) is None:
                pause = self.pause(attempt)
                attempt += 1
                self.sleep(pause)
                waited += pause
                if waited > self.lease:
                    raise TimeoutError(f"no request slot for host {host} after {waited:.0f}s")
            renewed = [time.monotonic()]

            def before_request() -> None:
                if time.monotonic() - renewed[0] > self.lease / 2:  # a long lane keeps its slot
                    self._renew(host, slot, holder)
                    renewed[0] = time.monotonic()
                self.wait_turn(host)

            try:
                yield before_request
            finally:
                with self.ctx.db.session() as s:
                    s.execute(
                        update(HostSlot)
                        .where(and_(HostSlot.host == host, HostSlot.slot == slot, HostSlot.holder == holder))
                        .values(holder=None, until=None)
                    )
        finally:
            sem.release()
