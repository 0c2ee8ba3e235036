"""The services a process works with: settings, database, storage, and how to enqueue a job."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import cached_property

from .config import Settings, load_settings
from .db import Database
from .errors import ExporterError
from .storage import Storage, open_storage

log = logging.getLogger(__name__)

Enqueue = Callable[[str, str, str], None]  # (task name, job id, queue)
# The ids (first task argument) of the messages the broker holds on these queues, queued or
# reserved by a worker; None when this broker cannot tell.
QueuedIds = Callable[[Sequence[str]], "set[str] | None"]


def _no_dispatcher(task: str, job_id: str, queue: str) -> None:
    raise ExporterError("no broker is configured in this process; cannot enqueue " + task)


class Context:
    def __init__(self, settings: Settings, enqueue: Enqueue | None = None, queued_ids: QueuedIds | None = None):
        self.settings = settings
        self.enqueue: Enqueue = enqueue or _no_dispatcher
        self.queued_ids: QueuedIds | None = queued_ids

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.database_url)

    @cached_property
    def storage(self) -> Storage:
        return open_storage(self.settings)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()


_current: Context | None = None


def get_context() -> Context:
    """The process-wide context, built from the environment on first use."""
    global _current
    if _current is None:
        _current = Context(load_settings())
    return _current


def set_context(ctx: Context | None) -> None:
    global _current
    _current = ctx
