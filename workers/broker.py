"""Asking the broker which job (or part) ids it still holds, so the reaper can tell a backlog from a lost message."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from exporter.context import QueuedIds

log = logging.getLogger(__name__)

PRIORITY_SEP = "\x06\x16"  # kombu's Redis transport keeps priorities 3, 6, 9 in lists "<queue>\x06\x16<n>"
PRIORITY_STEPS = ("3", "6", "9")


def message_id_arg(payload: bytes | str | dict) -> str | None:
    """The first task argument of a kombu message (Celery protocol 2), or None."""
    try:
        msg = json.loads(payload) if isinstance(payload, (bytes, str)) else payload
        body = msg["body"]
        if msg.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0]) if args else None
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _ids(payloads: Iterable[bytes | str | dict]) -> set[str]:
    return {i for i in (message_id_arg(p) for p in payloads) if i is not None}


Held = Callable[[], "set[str] | None"]  # ids of the tasks live workers have reserved or started; None: no answer


def redis_probe(broker_url: str, held_by_workers: Held | None = None) -> QueuedIds:
    """Ids in the queue lists (every priority), and those in the `unacked` hash that a live
    worker still holds.

    A worker killed with messages reserved leaves them in `unacked` until the visibility
    timeout (hours) gives them back; such a message is lost for now, not queued. So an id
    only in `unacked` counts as held when a live worker says it has it reserved or started
    (`held_by_workers`, Celery's inspect); without that check every unacked id counts.
    """
    import redis

    client = redis.Redis.from_url(broker_url)

    def queued_ids(queues: Sequence[str]) -> set[str] | None:
        try:
            found: set[str] = set()
            for q in queues:  # the lists first: a message moving to `unacked` meanwhile is found there
                for key in (q, *(q + PRIORITY_SEP + p for p in PRIORITY_STEPS)):
                    found |= _ids(client.lrange(key, 0, -1))
            unacked: set[str] = set()
            for raw in client.hvals("unacked"):
                try:
                    unacked |= _ids([json.loads(raw)[0]])
                except (ValueError, IndexError, TypeError):
                    continue
        except redis.RedisError:
            log.exception("broker probe: Redis did not answer; not re-enqueueing waiting jobs this time")
            return None
        only_unacked = unacked - found
        if only_unacked and held_by_workers is not None:
            live = held_by_workers()
            if live is None:  # no worker answered: nobody can be holding them
                live = set()
            only_unacked &= live
        return found | only_unacked

    return queued_ids


def inspect_held(app) -> Held:
    """What live workers hold, from Celery's remote control: the first argument of their
    reserved, active and scheduled tasks (a retry's countdown waits in the worker's memory,
    its message unacked in Redis, for up to RETRY_BACKOFF_MAX)."""

    def held() -> set[str] | None:
        try:
            inspect = app.control.inspect(timeout=1.0)
            replies = [inspect.reserved() or {}, inspect.active() or {}, inspect.scheduled() or {}]
        except Exception:
            log.exception("broker probe: asking the workers what they hold failed")
            return None
        ids: set[str] = set()
        for reply in replies:
            for tasks in reply.values():
                for task in tasks or []:
                    args = (task.get("request") or {}).get("args") if "request" in task else task.get("args")
                    if isinstance(args, (list, tuple)) and args:
                        ids.add(str(args[0]))
        return ids

    return held


def filesystem_probe(folder: Path, held_by_workers: Held | None = None) -> QueuedIds:
    """Ids of the message files kombu's filesystem transport has not handed to a worker yet,
    and those a live worker has taken (reserved, running or kept for a countdown): the
    transport keeps a taken message only in that worker's memory."""

    def queued_ids(queues: Sequence[str]) -> set[str] | None:
        wanted = tuple(f".{q}.msg" for q in queues)
        found: set[str] = set()
        try:
            names = [p for p in folder.iterdir() if p.name.endswith(wanted)]
        except OSError:
            return None
        for path in names:
            try:
                found |= _ids([path.read_bytes()])
            except OSError:
                continue  # taken by a worker meanwhile
        if held_by_workers is not None:
            found |= held_by_workers() or set()
        return found

    return queued_ids


def probe_for(broker_url: str, transport_options: dict, held_by_workers: Held | None = None) -> QueuedIds | None:
    """The probe for this broker; None for brokers that cannot tell (AMQP keeps what it was given)."""
    scheme = broker_url.split(":", 1)[0].lower()
    if scheme in ("redis", "rediss"):
        return redis_probe(broker_url, held_by_workers)
    if scheme == "filesystem" and transport_options.get("data_folder_in"):
        return filesystem_probe(Path(transport_options["data_folder_in"]), held_by_workers)
    return None
