"""How long to wait before trying an outbound HTTP request again: Retry-After, and backoff with jitter."""

from __future__ import annotations

import random

from urllib3.exceptions import InvalidHeader
from urllib3.util import Retry


def retry_after(value: str | None, cap: float) -> float | None:
    """Seconds a Retry-After header asks for (number or HTTP date, urllib3's parser), capped."""
    if not value:
        return None
    try:
        return min(float(Retry().parse_retry_after(value)), cap)
    except InvalidHeader:
        return None


def retry_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): doubling, capped, half jittered.

    Webhooks keep this wait in a row (`next_attempt_at`, waited out by the broker's countdown),
    which an in-process retry library cannot hold; the Zenodo client hands it to tenacity as the
    wait between attempts when Zenodo names none, so both back off alike."""
    step = min(cap, base * 2 ** max(0, attempt - 1))
    return step / 2 + (rng or random).uniform(0, step / 2)
