"""A token bucket per key kept in the database, so every web worker process shares it.

Not `limits`/Flask-Limiter: they have no SQL storage, and the embedded mode has no Redis but
several gunicorn processes (a memory limiter would give each its own allowance); they have
no token bucket either (fixed, moving and sliding windows), so the burst and the Retry-After
the API and pages promise would change. The database is there in every mode; one path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Float, String, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, utcnow
from .errors import ConfigError


@dataclass(frozen=True)
class Rate:
    """`count` actions per `seconds`, refilled evenly; count 0 means no limit."""

    count: int
    seconds: float

    @property
    def unlimited(self) -> bool:
        return self.count == 0

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds:g}"


def as_rate(name: str, raw: str) -> Rate:
    """Parse `N/SECONDS` (e.g. `30/60`: 30 per minute, bursts of up to 30); `0/1` disables."""
    count, sep, seconds = raw.partition("/")
    try:
        rate = Rate(int(count), float(seconds))
    except ValueError:
        rate = None
    if not sep or rate is None or rate.count < 0 or rate.seconds <= 0:
        raise ConfigError(f"EXPORTER_{name} must look like N/SECONDS (e.g. 30/60), got {raw!r}")
    return rate


class RateBucket(Base):
    __tablename__ = "rate_buckets"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


def take(ctx, key: str, rate: Rate, now: datetime | None = None) -> float:
    """Spend one action from `key`'s bucket: 0 when allowed, else the seconds until it would be."""
    if rate.unlimited:
        return 0.0
    now = now or utcnow()
    per_second = rate.count / rate.seconds
    for _ in range(3):
        try:
            with ctx.db.session() as s:
                # Write first: it takes the row lock (PostgreSQL) or the write lock (SQLite),
                # so concurrent requests on the same key queue up instead of both reading.
                locked = s.execute(update(RateBucket).where(RateBucket.key == key).values(tokens=RateBucket.tokens)).rowcount
                if not locked:
                    # No row to lock yet: create it; if another request did first, the insert
                    # fails and the next round locks that row.
                    s.add(RateBucket(key=key, tokens=rate.count - 1.0, updated_at=now))
                    s.flush()
                    return 0.0
                row = s.get(RateBucket, key, populate_existing=True)
                elapsed = max(0.0, (now - row.updated_at).total_seconds())
                tokens = min(float(rate.count), row.tokens + elapsed * per_second)
                row.updated_at = max(now, row.updated_at)
                if tokens >= 1.0:
                    row.tokens = tokens - 1.0
                    return 0.0
                row.tokens = tokens
                return (1.0 - tokens) / per_second
        except IntegrityError:
            continue  # another process created the bucket at the same moment; read it now
    raise RuntimeError(f"rate bucket {key!r} could not be updated")
