"""`exporter demo` (run by `make run`) adds a small registry once."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import func, select

from cli.main import main
from exporter.raids.models import Raid, RegistrationAgency, ServicePoint


def test_demo_seeds_once(ctx):
    runner = CliRunner()
    first = runner.invoke(main, ["demo", "--per-agency", "5"])
    assert first.exit_code == 0, first.output
    assert "10 synthetic raids" in first.output
    second = runner.invoke(main, ["demo", "--per-agency", "5"])
    assert second.exit_code == 0 and "nothing added" in second.output
    with ctx.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Raid)) == 10
        assert s.scalar(select(func.count(func.distinct(Raid.service_point_id)))) == 3
        assert s.scalars(select(RegistrationAgency.name).order_by(RegistrationAgency.name)).all() == ["Demo agency A", "Demo agency B"]
        assert s.get(ServicePoint, 20000001).name == "Demo service point A2"
