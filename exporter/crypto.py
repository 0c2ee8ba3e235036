"""Constant-time comparison that accepts any text an attacker may send."""

from __future__ import annotations

import hmac


def same(expected: str, given: str | None) -> bool:
    """True if `given` equals `expected`, in constant time; non-ASCII input is simply unequal.

    hmac.compare_digest raises TypeError on non-ASCII str, which turned a tampered link
    into a server error; comparing UTF-8 bytes cannot raise.
    """
    return hmac.compare_digest(expected.encode("utf-8"), (given or "").encode("utf-8", "replace"))
