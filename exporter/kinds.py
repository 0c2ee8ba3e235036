"""The registry of job kinds: what each runs, on which Celery task and queue."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import InvalidRequest

# Every Celery queue: one per job family, plus the engine's own. Workers consume them all by default.
QUEUES: tuple[str, ...] = ("engine", "exports", "archive", "webhooks", "publish", "dumps", "collections")

# Modules that register job kinds when imported; one line per area.
KIND_MODULES = [
    "exporter.synthetic",
    "exporter.archiver.kinds",
    "exporter.raids.kinds",
    "exporter.tiles.kinds",
    "exporter.publish.kinds",
    "exporter.dumps.kinds",
    "exporter.collections.kinds",
]


@dataclass(frozen=True)
class JobKind:
    name: str
    task: str  # Celery task name, exporter.<verb>
    queue: str  # one queue per job family
    run: Callable[[Any], dict[str, Any] | None]  # called with an exporter.runner.JobRun
    normalize: Callable[[dict[str, Any]], dict[str, Any]]  # validate, fill defaults; raise InvalidRequest
    expiry_seconds: int | None = None  # None: the JOB_EXPIRY_SECONDS setting
    description: str = ""
    # Bytes a job is expected to write, as estimate(ctx, kind, params); None: admitted without a size check.
    estimate: Callable[[Any, str, dict[str, Any]], int | None] | None = None
    # What its callback URLs receive, as callback_payload(ctx, job, status); None: the API's job shape.
    callback_payload: Callable[[Any, Any, str], dict[str, Any]] | None = None
    # Its events are its family's own steps, named `<namespace>.<event>` in the X-Exporter-Event
    # header (and in its payload's `event`); None: `job.<status>`.
    event_namespace: str | None = None


KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    KINDS[kind.name] = kind
    return kind


def load_all() -> dict[str, JobKind]:
    for module in KIND_MODULES:
        importlib.import_module(module)
    return KINDS


def get_kind(name: str) -> JobKind:
    load_all()
    try:
        return KINDS[name]
    except KeyError:
        raise InvalidRequest(f"unknown job kind {name!r}; known: {', '.join(sorted(KINDS))}", field="kind") from None
