"""The registry: tables, the domain API's updated_at/version/tombstones, import and generator."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text

from exporter.errors import InvalidRequest, NotFound
from exporter.raids import generator, registry
from exporter.raids.importer import ImportFailed, import_file
from exporter.raids.models import Raid, RegistrationAgency, ServicePoint
from tests.raids_helpers import AGENCY, SP, future, handle, record, save


def raid(ctx, n) -> Raid:
    with ctx.db.session() as s:
        return registry.get_raid(s, handle(n), include_deleted=True)


def test_save_derives_columns_and_creates_agency_and_service_point(ctx):
    save(ctx, record(1, access="embargoed", expiry=future(10), title="Genome"))
    r = raid(ctx, 1)
    assert (r.access_type, r.embargo_expiry, r.title, r.version, r.deleted_at) == ("embargoed", future(10), "Genome", 1, None)
    assert r.access_statement == "This RAiD is embargoed" and r.access_statement_language == "eng"
    assert r.created_at.timestamp() == 1_600_000_000
    with ctx.db.session() as s:
        sp = s.get(ServicePoint, SP)
        assert sp.agency_id == "038sjwq14"
        assert s.get(RegistrationAgency, "038sjwq14").ror == AGENCY


def test_every_change_bumps_updated_at_and_version_and_identical_saves_do_not(ctx):
    save(ctx, record(1))
    first = raid(ctx, 1)
    save(ctx, record(1))
    assert (raid(ctx, 1).updated_at, raid(ctx, 1).version) == (first.updated_at, 1)
    with ctx.db.session() as s:
        registry.update_raid(s, handle(1), {"date": {"startDate": "2021-01-01"}})
    second = raid(ctx, 1)
    assert second.version == 2 and second.updated_at > first.updated_at
    with ctx.db.session() as s:  # an ORM change that forgets updated_at still moves it
        s.get(Raid, second.id).title = "renamed"
    third = raid(ctx, 1)
    assert third.version == 3 and third.updated_at > second.updated_at


def test_raw_sql_updates_still_bump_updated_at_and_version(ctx):
    save(ctx, record(1), record(2))
    before = raid(ctx, 1)
    with ctx.db.session() as s:
        s.execute(text("UPDATE raids SET title = 'bulk' WHERE handle = :h"), {"h": handle(1)})
    after = raid(ctx, 1)
    assert after.title == "bulk" and after.version == before.version + 1 and after.updated_at > before.updated_at
    assert raid(ctx, 2).version == 1


def test_delete_leaves_a_tombstone(ctx):
    save(ctx, record(1))
    before = raid(ctx, 1)
    with ctx.db.session() as s:
        registry.delete_raid(s, handle(1))
    gone = raid(ctx, 1)
    assert gone.deleted_at is not None and gone.version == 2 and gone.updated_at > before.updated_at
    with ctx.db.session() as s, pytest.raises(NotFound):
        registry.get_raid(s, handle(1))
    save(ctx, record(1, title="back"))
    revived = raid(ctx, 1)
    assert revived.deleted_at is None and revived.version == 3 and revived.title == "back"


def test_a_service_point_cannot_move_to_another_agency(ctx):
    save(ctx, record(1))
    with ctx.db.session() as s, pytest.raises(InvalidRequest, match="belongs to agency 038sjwq14"):
        registry.save_raid(s, record(2, agency="https://ror.org/02stey378"))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.pop("identifier"), "identifier must be an object"),
        (lambda r: r["identifier"].pop("id"), "identifier.id"),
        (lambda r: r["identifier"]["owner"].update(servicePoint="x"), "servicePoint"),
        (lambda r: r["access"]["type"].update(id="https://example.org/secret"), "not a known access type"),
        (lambda r: r["access"].update(embargoExpiry="soon"), "not a date"),
        (lambda r: r["title"][0].update(text="a\x00b"), "NUL character"),
    ],
)
def test_invalid_records_are_refused_with_the_field(ctx, change, message):
    rec = record(1)
    change(rec)
    with ctx.db.session() as s, pytest.raises(InvalidRequest, match=message):
        registry.save_raid(s, rec)


def _count(ctx) -> int:
    with ctx.db.session() as s:
        return s.scalar(select(func.count()).select_from(Raid))


def test_import_json_lines_reports_bad_lines_and_keeps_the_rest(ctx, tmp_path):
    path = tmp_path / "raids.jsonl"
    bad_access = record(4)
    bad_access["access"]["type"]["id"] = "nope"
    lines = [json.dumps(record(1)), "{not json", "", json.dumps(record(2)), json.dumps(bad_access), "[1, 2]", json.dumps(record(3))]
    path.write_text("\n".join(lines) + "\n")
    report = import_file(ctx, path)
    assert (report.created, report.failed) == (3, 3)
    assert [n for n, _ in report.errors] == [2, 5, 6]
    assert "not valid JSON" in report.errors[0][1] and "access type" in report.errors[1][1] and "must be an object" in report.errors[2][1]
    assert _count(ctx) == 3
    again = import_file(ctx, path)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    changed = record(2, title="new title")
    path.write_text(json.dumps(changed) + "\n")
    assert import_file(ctx, path).updated == 1 and raid(ctx, 2).title == "new title"


def test_import_json_array(ctx, tmp_path):
    path = tmp_path / "raids.json"
    body = json.dumps([record(1), record(2), {"identifier": 3}, record(4)], indent=2)
    path.write_text(body)
    report = import_file(ctx, path)
    assert (report.created, report.failed) == (3, 1)
    [(line, message)] = report.errors
    assert body.splitlines()[line - 1].strip() == "{" and "identifier" in message
    path.write_text("[" + json.dumps(record(5)) + ",\n" + json.dumps(record(6))[:-5])
    report = import_file(ctx, path)
    assert report.created == 1 and report.failed == 1 and report.errors[0][0] == 2


def test_strict_import_writes_nothing_on_error(ctx, tmp_path):
    path = tmp_path / "raids.jsonl"
    path.write_text(json.dumps(record(1)) + "\n" + json.dumps(record(2)) + "\n{oops\n")
    with pytest.raises(ImportFailed, match=r"raids.jsonl:3: not valid JSON.*nothing was imported"):
        import_file(ctx, path, strict=True)
    assert _count(ctx) == 0
    with ctx.db.session() as s:
        assert s.scalar(select(func.count()).select_from(ServicePoint)) == 0


def test_import_cli(ctx, tmp_path):
    from cli.main import main

    path = tmp_path / "raids.jsonl"
    path.write_text(json.dumps(record(1)) + "\nnope\n")
    result = CliRunner().invoke(main, ["raids", "import", str(path)])
    assert result.exit_code == 1
    assert f"{path}:2: not valid JSON" in result.output and "1 created, 0 updated, 0 unchanged, 1 rejected" in result.output
    result = CliRunner().invoke(main, ["raids", "import", "--strict", str(path)])
    assert result.exit_code == 1 and "nothing was imported" in result.output
    result = CliRunner().invoke(main, ["raids", "import", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 1 and "cannot read" in result.output


def test_generator_makes_realistic_mixed_raids(ctx):
    from click.testing import CliRunner

    from cli.main import main

    result = CliRunner().invoke(main, ["raids", "generate", "60", "--service-point", "20000000", "--service-point", "20000001", "--seed", "7"])
    assert result.exit_code == 0, result.output
    with ctx.db.session() as s:
        raids = s.scalars(select(Raid)).all()
    assert len(raids) == 60 and {r.service_point_id for r in raids} == {20000000, 20000001}
    today = generator.utcnow().date()
    kinds = {("open" if r.access_type == "open" else "expired" if r.embargo_expiry < today else "embargoed") for r in raids}
    assert kinds == {"open", "embargoed", "expired"}
    rec = raids[0].record
    assert len(rec["title"]) >= 2 and rec["contributor"][0]["id"].startswith("https://orcid.org/") and rec["organisation"][0]["id"].startswith("https://ror.org/")
    assert all(r.updated_at - r.created_at > timedelta(days=1) for r in raids)
