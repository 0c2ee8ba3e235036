"""Cached results have a bounded age, a hit never extends them, and incremental requests are never cached."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from exporter import runner, submissions
from exporter.db import utcnow
from exporter.errors import ConfigError
from exporter.models import Job
from tests.raids_helpers import AGENCY, exported, handle, record, save

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


def test_an_incremental_export_request_always_makes_a_new_delta_and_full_ones_obey_their_kinds_age(ctx):
    ctx.settings = ctx.settings.replace(export_settle_seconds=0, cache_max_age_seconds=3600, kind_cache_max_age={"export_public": 60})
    save(ctx, record(1), record(2))
    incremental = {"agency": AGENCY, "mode": "incremental"}
    first = submissions.request_job(ctx, "export_public", incremental, enqueue=False)
    assert runner.run_job(ctx, first.job.id) == "succeeded"
    save(ctx, record(3, title="new since the first"))
    second = submissions.request_job(ctx, "export_public", incremental, enqueue=False)
    assert second.outcome == "created" and second.job.id != first.job.id
    assert runner.run_job(ctx, second.job.id) == "succeeded"
    assert list(exported(ctx, submissions._load(ctx, second.job.id))) == [handle(3)]  # the new delta

    full = {"agency": AGENCY, "mode": "full"}
    made = submissions.request_job(ctx, "export_public", full, enqueue=False)
    assert runner.run_job(ctx, made.job.id) == "succeeded"
    _age(ctx, made.job.id, 30)
    assert (submissions.request_job(ctx, "export_public", full).outcome, submissions.request_job(ctx, "export_public", full).job.id) == ("cached", made.job.id)
    _age(ctx, made.job.id, 61)  # older than export_public's own age, younger than the default
    assert submissions.request_job(ctx, "export_public", full, enqueue=False).outcome == "created"


def test_a_result_about_to_expire_is_not_handed_out_as_cached(ctx):
    """A hit's download links (DOWNLOAD_URL_TTL) must not outlive the result: cleanup would
    expire it under a client just told "completed", and the download would be a 410."""
    first = submissions.request_job(ctx, "synthetic", PARAMS)
    assert runner.run_job(ctx, first.job.id) == "succeeded"
    now = utcnow()
    with ctx.db.session() as s:
        s.execute(update(Job).where(Job.id == first.job.id).values(expires_at=now + timedelta(seconds=ctx.settings.download_url_ttl - 5)))
    again = submissions.request_job(ctx, "synthetic", PARAMS, now=now)
    assert again.outcome == "created" and again.job.id != first.job.id
    assert runner.run_job(ctx, again.job.id) == "succeeded"
    hit = submissions.request_job(ctx, "synthetic", PARAMS)
    assert (hit.outcome, hit.job.id) == ("cached", again.job.id)
    assert hit.job.expires_at > utcnow() + timedelta(seconds=ctx.settings.download_url_ttl)
