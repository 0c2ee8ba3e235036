"""The archiver's outbound HTTP sessions: SSRF-safe (exporter.netsafety), one per thread."""

from __future__ import annotations

import threading

import requests

from ..context import Context
from ..netsafety import safe_session

_local = threading.local()


def session_for(ctx: Context) -> requests.Session:
    """One safe HTTP session per thread and settings (connections are kept alive)."""
    s = ctx.settings
    key = (s.archiver_allow_networks, s.archiver_user_agent)
    cached = getattr(_local, "sessions", None)
    if cached is None:
        cached = _local.sessions = {}
    if key not in cached:
        cached[key] = safe_session(s.archiver_allow_networks, s.archiver_user_agent)
    return cached[key]
