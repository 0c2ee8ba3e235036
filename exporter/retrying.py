"""How long to wait before trying an outbound HTTP request again: Retry-After, and backoff with jitter."""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime

from .db import utcnow


def retry_after(value: str | None, cap: float) -> float | None:
    """Seconds a Retry-After header asks for (number or HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, min((when - utcnow()).total_seconds(), cap))


def retry_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): doubling, capped, half jittered."""
    step = min(cap, base * 2 ** max(0, attempt - 1))
    return step / 2 + (rng or random).uniform(0, step / 2)
