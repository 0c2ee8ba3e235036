"""Demo data for `make run`: a small registry to export, created once."""

from __future__ import annotations

from sqlalchemy import func, select

from .context import Context
from .raids.generator import generate
from .raids.models import Raid
from .raids.registry import ensure_agency, ensure_service_point

DEMO_AGENCIES = {
    "https://ror.org/038sjwq14": [20000000, 20000001],
    "https://ror.org/04s1nv328": [20000002],
}


def seed(ctx: Context, per_agency: int = 150) -> dict[str, int]:
    """Generate synthetic raids for two agencies and three service points, unless raids exist."""
    with ctx.db.session() as s:
        existing = s.scalar(select(func.count()).select_from(Raid))
    if existing:
        return {"created": 0, "existing": existing}
    with ctx.db.session() as s:  # names a person can tell apart in the forms and lists
        for letter, (agency, service_points) in zip("AB", DEMO_AGENCIES.items(), strict=True):
            ensure_agency(s, agency, name=f"Demo agency {letter}")
            for n, sp in enumerate(service_points, 1):
                ensure_service_point(s, sp, agency, name=f"Demo service point {letter}{n}")
    created = 0
    for i, (agency, service_points) in enumerate(DEMO_AGENCIES.items()):
        created += generate(ctx, per_agency, agency=agency, service_points=service_points, seed=1000 + i)
    return {"created": created, "existing": 0}
