"""How long a finished job's artifacts are kept: per kind, configurable, or forever."""

from __future__ import annotations

from datetime import datetime, timedelta

from .errors import ConfigError


def as_kind_seconds(name: str, raw: str) -> dict[str, int]:
    """`kind=seconds` pairs, comma-separated; 0 means keep forever."""
    out: dict[str, int] = {}
    for item in filter(None, (p.strip() for p in raw.split(","))):
        kind, sep, value = item.partition("=")
        try:
            seconds = int(value)
        except ValueError:
            seconds = -1
        if not sep or not kind.strip() or seconds < 0:
            raise ConfigError(f"EXPORTER_{name} has an invalid entry {item!r} (expected kind=seconds, e.g. export_private=86400)")
        out[kind.strip()] = seconds
    return out


def expiry_seconds(settings, kind: str, kind_default: int | None) -> int:
    """The setting for this kind, else the kind's own default, else JOB_EXPIRY_SECONDS; 0 is forever."""
    overrides: dict[str, int] = getattr(settings, "kind_expiry", {}) or {}
    if kind in overrides:
        return overrides[kind]
    if kind_default is not None:
        return kind_default
    return settings.job_expiry_seconds


def expires_at(settings, kind: str, kind_default: int | None, now: datetime) -> datetime | None:
    seconds = expiry_seconds(settings, kind, kind_default)
    return now + timedelta(seconds=seconds) if seconds else None


def cache_max_age_seconds(settings, kind: str) -> int:
    """How old a finished job's result may be and still answer an equal request; 0 is no limit."""
    overrides: dict[str, int] = getattr(settings, "kind_cache_max_age", {}) or {}
    if kind in overrides:
        return overrides[kind]
    return settings.cache_max_age_seconds


def cache_fresh(settings, kind: str, finished_at: datetime | None, now: datetime) -> bool:
    """Whether a result finished at `finished_at` is still young enough to be reused at `now`."""
    seconds = cache_max_age_seconds(settings, kind)
    if not seconds:
        return True
    return finished_at is not None and now - finished_at < timedelta(seconds=seconds)
