"""Cached results have a bounded age, a hit never extends them, and incremental requests are never cached."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from exporter import runner, submissions
from exporter.db import utcnow
from exporter.errors import ConfigError
from exporter.models import Job

PARAMS = {"size": 64, "steps": 1}


def _age(ctx, job_id: str, seconds: float) -> None:
    with ctx.db.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(finished_at=utcnow() - timedelta(seconds=seconds)))


def test_a_result_is_reused_only_while_younger_than_the_max_age(ctx):
    ctx.settings = ctx.settings.replace(cache_max_age_seconds=600)
    first = submissions.request_job(ctx, "synthetic", PARAMS)
    assert first.outcome == "created"
    assert runner.run_job(ctx, first.job.id) == "succeeded"
    expires = submissions._load(ctx, first.job.id).expires_at
    hit = submissions.request_job(ctx, "synthetic", PARAMS)
    assert (hit.outcome, hit.job.id, hit.job.expires_at) == ("cached", first.job.id, expires)
    _age(ctx, first.job.id, 601)
    fresh = submissions.request_job(ctx, "synthetic", PARAMS)
    assert fresh.outcome == "created" and fresh.job.id != first.job.id
    assert submissions._load(ctx, first.job.id).expires_at == expires


def test_incremental_params_are_never_reused_from_cache(ctx):
    assert submissions.reusable_from_cache({"mode": "full"}) is True
    assert submissions.reusable_from_cache({"mode": "incremental"}) is False
    with ctx.db.session() as s:
        job = Job(kind="synthetic", params={"mode": "incremental"}, dedupe_key="k" * 64, status="succeeded", finished_at=utcnow(), expires_at=utcnow() + timedelta(days=1))
        s.add(job)
        s.flush()
        assert submissions.find_active_or_fresh_duplicate(s, "synthetic", "k" * 64, utcnow(), ctx.settings, cacheable=False) is None
        assert submissions.find_active_or_fresh_duplicate(s, "synthetic", "k" * 64, utcnow(), ctx.settings).id == job.id


def test_cache_max_age_settings_parse_and_refuse_bad_values(make_settings):
    settings = make_settings(cache_max_age_seconds="120", kind_cache_max_age="export_public=60, export_private=0")
    assert settings.cache_max_age_seconds == 120
    assert settings.kind_cache_max_age == {"export_public": 60, "export_private": 0}
    with pytest.raises(ConfigError, match="EXPORTER_CACHE_MAX_AGE_SECONDS"):
        make_settings(cache_max_age_seconds="-1")
    with pytest.raises(ConfigError, match="EXPORTER_KIND_CACHE_MAX_AGE"):
        make_settings(kind_cache_max_age="export_public")
