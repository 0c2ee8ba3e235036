"""Tokens, roles, visibility, the rate limiter and duplicate requests, as plain functions."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from exporter import access, jobs, ratelimit, submissions, visibility
from exporter.access import ApiToken, Principal
from exporter.config import ConfigError
from exporter.db import utcnow
from exporter.errors import InvalidRequest, NotFound
from exporter.models import Job
from exporter.raids.registry import ensure_service_point
from exporter.ratelimit import Rate, as_rate


def test_tokens_are_stored_hashed_and_shown_once(ctx):
    row, raw = access.create_token(ctx, "service_point", service_point_id=" 20000001 ", name="uni")
    assert raw.startswith("exp_") and len(raw) > 40
    with ctx.db.session() as s:
        stored = s.scalars(select(ApiToken)).one()
    assert stored.token_hash == access.hash_token(raw) != raw
    assert raw not in repr(stored.to_dict()) and stored.prefix == raw[:12]
    assert stored.service_point_id == "20000001"
    p = access.authenticate(ctx, raw)
    assert p == Principal(role="service_point", token_id=row.id, name="uni", service_point_id="20000001")
    assert access.list_tokens(ctx)[0].last_used_at is not None


def test_unknown_malformed_and_revoked_tokens_authenticate_no_one(ctx):
    _, raw = access.create_token(ctx, "operator")
    for bad in (None, "", "exp_nope", raw + "x", raw[4:], "x" * 500):
        assert access.authenticate(ctx, bad) is None
    token = access.list_tokens(ctx)[0]
    assert access.revoke_token(ctx, token.id).revoked_at is not None
    assert access.authenticate(ctx, raw) is None
    assert access.list_tokens(ctx, include_revoked=False) == []
    with pytest.raises(NotFound):
        access.revoke_token(ctx, 9999)


@pytest.mark.parametrize(
    "role, sp, field",
    [("admin", None, "role"), ("service_point", None, "service_point"), ("service_point", "  ", "service_point"), ("operator", "1", "service_point")],
)
def test_token_roles_are_checked(ctx, role, sp, field):
    with pytest.raises(InvalidRequest) as err:
        access.create_token(ctx, role, service_point_id=sp)
    assert err.value.field == field


def _job(kind: str, **params) -> Job:
    return Job(id="j", kind=kind, params=params, dedupe_key="k", status="succeeded")


def test_who_sees_which_job():
    operator = Principal(role="operator", token_id=1)
    reader = Principal(role="read_only", token_id=2)
    sp_a = Principal(role="service_point", token_id=3, service_point_id="20000001")
    sp_b = Principal(role="service_point", token_id=4, service_point_id="20000002")
    private_a = _job("export_private", service_point=20000001, mode="full", format="zip")
    public = _job("export_public", agency="038sjwq14")
    archive = _job("archive_urls", urls=["https://example.org"])
    assert [access.can_see(p, private_a) for p in (operator, reader, sp_a, sp_b, None)] == [True, False, True, False, False]
    assert [access.can_see(p, public) for p in (operator, reader, sp_a, sp_b, None)] == [True, True, False, False, False]
    assert [access.can_see(p, archive) for p in (operator, reader, sp_a)] == [True, True, False]
    assert visibility.job_service_point(private_a) == "20000001" and visibility.job_service_point(public) is None


def test_rate_limit_is_a_token_bucket(ctx):
    t0 = utcnow()
    rate = Rate(2, 60)
    assert ratelimit.take(ctx, "k", rate, now=t0) == 0
    assert ratelimit.take(ctx, "k", rate, now=t0) == 0
    assert ratelimit.take(ctx, "k", rate, now=t0) == pytest.approx(30)
    assert ratelimit.take(ctx, "k", rate, now=t0 + timedelta(seconds=10)) == pytest.approx(20)
    assert ratelimit.take(ctx, "k", rate, now=t0 + timedelta(seconds=31)) == 0
    assert ratelimit.take(ctx, "other", rate, now=t0) == 0
    assert ratelimit.take(ctx, "k", Rate(0, 1), now=t0) == 0  # 0 turns it off


def test_rate_limit_holds_across_concurrent_requests(pg_ctx):
    """The bucket is a row: 20 threads (as many gunicorn workers would) get exactly 5 passes."""
    rate = Rate(5, 3600)
    now = utcnow()
    results: list[float] = []
    barrier = threading.Barrier(20)

    def hit():
        barrier.wait()
        results.append(ratelimit.take(pg_ctx, "shared", rate, now=now))

    threads = [threading.Thread(target=hit) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r == 0 for r in results).count(True) == 5


def _take_in_a_process(env: dict, key: str, barrier, results) -> None:
    from exporter.config import load_settings
    from exporter.context import Context

    ctx = Context(load_settings(env))
    barrier.wait()
    results.put([ratelimit.take(ctx, key, Rate(5, 3600)) for _ in range(4)])
    ctx.close()


def test_rate_limit_holds_across_processes_on_sqlite(make_settings, sqlite_database_url):
    """The embedded mode: gunicorn worker processes on one SQLite file, no Redis. A per-process
    limiter (such as `limits`' memory storage) would let each of them pass its own 5."""
    import multiprocessing
    import uuid

    settings = make_settings(database_url=sqlite_database_url)
    env = {"EXPORTER_VAR_DIR": str(settings.var_dir), "EXPORTER_SECRET_KEY": settings.secret_key, "EXPORTER_BROKER_URL": "memory://", "EXPORTER_DATABASE_URL": sqlite_database_url}
    mp = multiprocessing.get_context("spawn")
    barrier, results, key = mp.Barrier(4), mp.Queue(), f"embedded-{uuid.uuid4()}"
    procs = [mp.Process(target=_take_in_a_process, args=(env, key, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    taken = [w for _ in procs for w in results.get(timeout=120)]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert len(taken) == 16 and [w == 0 for w in taken].count(True) == 5


@pytest.mark.parametrize("raw", ["30", "a/60", "5/0", "-1/60", "5/x"])
def test_bad_rate_settings_stop_start_up(raw):
    with pytest.raises(ConfigError, match="EXPORTER_API_RATE_LIMIT"):
        as_rate("API_RATE_LIMIT", raw)
    assert as_rate("API_RATE_LIMIT", "30/60") == Rate(30, 60.0)


def test_equal_requests_at_the_same_moment_make_one_job(pg_ctx):
    barrier = threading.Barrier(8)
    got: list[submissions.Submission] = []

    def request():
        barrier.wait()
        got.append(submissions.request_job(pg_ctx, "synthetic", {"size": 64, "steps": 2}, requested_by="t"))

    threads = [threading.Thread(target=request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({s.job.id for s in got}) == 1
    assert sorted(s.outcome for s in got) == ["created"] + ["joined"] * 7
    assert len(jobs.list_jobs(pg_ctx)) == 1 and len(pg_ctx.sent) == 1


def test_request_job_records_the_estimate_for_admission(ctx):
    from exporter.admission import JobEstimate, storage_usage

    sub = submissions.request_job(ctx, "synthetic", {"size": 5000})
    with ctx.db.session() as s:
        assert s.get(JobEstimate, sub.job.id).estimated_bytes == 5000
    assert storage_usage(ctx).reserved == 5000
    jobs.cancel(ctx, sub.job.id)
    assert storage_usage(ctx).reserved == 0


def test_audit_rows_keep_who_what_and_where(ctx):
    _, raw = access.create_token(ctx, "operator", name="ops")
    p = access.authenticate(ctx, raw)
    access.audit(ctx, p, "export.create", job_id="abc", target="public agency=x", ip="10.0.0.9", detail={"outcome": "created"})
    access.audit(ctx, None, "export.download", job_id="abc", ip="10.0.0.8")
    rows = access.list_audit(ctx, job_id="abc")
    assert [(r.action, r.actor, r.ip) for r in rows] == [("export.download", "anonymous", "10.0.0.8"), ("export.create", f"token:{p.token_id} (ops)", "10.0.0.9")]
    assert access.list_audit(ctx, token_id=p.token_id)[0].detail == {"outcome": "created"}


def test_tokens_cli_creates_lists_and_revokes(ctx, monkeypatch, tmp_path):
    from cli.main import main

    monkeypatch.setenv("EXPORTER_VAR_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("EXPORTER_SECRET_KEY", "test-secret-key-0123456789")
    runner = CliRunner()
    for unknown in ("20000001", "abc"):  # not registered yet; not a service point id at all
        refused = runner.invoke(main, ["tokens", "create", "--role", "service_point", "--service-point", unknown])
        assert refused.exit_code != 0 and unknown in refused.output and access.list_tokens(ctx) == []
    with ctx.db.session() as session:
        ensure_service_point(session, 20000001, "038sjwq14")
    r = runner.invoke(main, ["tokens", "create", "--role", "service_point", "--service-point", "20000001", "--name", "uni"])
    assert r.exit_code == 0, r.output
    raw = r.stdout.strip().splitlines()[0]
    assert access.authenticate(ctx, raw).service_point_id == "20000001"
    listed = runner.invoke(main, ["tokens", "list"])
    assert raw[:12] in listed.stdout and raw not in listed.stdout and "service_point" in listed.stdout
    token_id = access.list_tokens(ctx)[0].id
    assert runner.invoke(main, ["tokens", "revoke", str(token_id)]).exit_code == 0
    assert access.authenticate(ctx, raw) is None
    bad = runner.invoke(main, ["tokens", "create", "--role", "service_point"])
    assert bad.exit_code != 0 and "--service-point" in bad.output
    missing = runner.invoke(main, ["tokens", "revoke", "4242"])
    assert missing.exit_code != 0 and "no API token 4242" in missing.output
