"""Schemathesis against the WSGI app: generated requests (valid and invalid by the OpenAPI
document) get no 5xx and only answers the document describes. Bounded: a fixed number of
examples per operation, derandomized (the same examples every run), on PostgreSQL with the
real export and archive kinds."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from exporter import runner
from exporter.ratelimit import Rate

from .api_support import SP_A, make_api

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance, response_schema_conformance]
# A body too large is refused before it is read: 413 rejects invalid data as well as 400 does.
CONFIG = {"checks": {"negative_data_rejection": {"expected-statuses": ["400", "401", "403", "404", "405", "409", "410", "413", "429"]}}}
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}
EXAMPLES_ON_A_GIVEN_JOB = 5


AGENCY = "https://ror.org/038sjwq14"


@pytest.fixture
def fuzzed_api(pg_ctx):
    """The app with a small registry and a finished public and private export to find."""
    from exporter import submissions
    from exporter.raids.generator import generate

    # Zenodo configured (never reached: no worker runs the jobs), so publications answer as deployed.
    api = make_api(pg_ctx, api_rate_limit=Rate(0, 1), zenodo_url="http://127.0.0.1:9/api", zenodo_token="fuzz-token")
    generate(pg_ctx, 6, agency=AGENCY, service_points=[int(SP_A)], seed=1)
    api.jobs = {}
    for name, kind, params in (("public", "export_public", {"agency": AGENCY}), ("private", "export_private", {"service_point": int(SP_A)})):
        job = submissions.request_job(pg_ctx, kind, params, requested_by="test").job
        assert runner.run_job(pg_ctx, job.id) == "succeeded"
        api.jobs[name] = job.id
    api.jobs["pending"] = submissions.request_job(pg_ctx, "export_public", {"agency": AGENCY, "mode": "incremental"}).job.id
    return api


def _run(schema, operation_label: str, mode: GenerationMode, headers: dict[str, str], checks, path_parameters=None) -> None:
    operation = next(op.ok() for op in schema.get_all_operations() if op.ok().label == operation_label)

    @settings(
        max_examples=EXAMPLES[mode] if path_parameters is None else EXAMPLES_ON_A_GIVEN_JOB,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    def check(case):
        case.call_and_validate(headers=headers, checks=checks)

    check()


def test_generated_requests_get_no_5xx_and_conform_to_the_document(fuzzed_api):
    app = fuzzed_api.app
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=schemathesis.Config.from_dict(CONFIG))
    labels = [op.ok().label for op in schema.get_all_operations()]
    documented = {f"{m.upper()} {p}" for p, ops in app.test_client().get("/api/v1/openapi.json").json["paths"].items() for m in ops if m != "parameters"}
    assert set(labels) == documented - {"GET /openapi.json"}  # schemathesis leaves out the document itself
    failures = []
    for label in labels:
        op = next(op.ok() for op in schema.get_all_operations() if op.ok().label == label)
        takes_input = bool(op.path_parameters or op.query or op.body)
        runs = [
            (GenerationMode.POSITIVE, "operator", CHECKS, None),
            (GenerationMode.NEGATIVE, "operator", [*CHECKS, negative_data_rejection], None),
            (GenerationMode.POSITIVE, "sp_a", CHECKS, None),
            (GenerationMode.POSITIVE, None, CHECKS, None),
        ]
        if "{jobId}" in label:  # and on jobs that exist, as each role
            runs += [(GenerationMode.POSITIVE, who, CHECKS, {"jobId": job_id}) for job_id in fuzzed_api.jobs.values() for who in ("operator", "sp_a", "reader", None)]
        for mode, who, checks, path_parameters in runs:
            if mode is GenerationMode.NEGATIVE and not takes_input:
                continue  # nothing to make invalid
            try:
                _run(schema, label, mode, fuzzed_api.headers(who), checks, path_parameters)
            except BaseException as exc:  # collect them all, then fail with every finding
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failures.append(f"{label} [{mode.value}, {who or 'no token'}]: {exc}")
    assert not failures, "\n\n".join(failures)
