"""Celery settings, read from EXPORTER_* environment variables (see exporter/config.py)."""

from __future__ import annotations

from datetime import timedelta

from kombu import Queue

from exporter.config import load_settings
from exporter.kinds import QUEUES

_s = load_settings()

broker_url = _s.broker_url
if _s.is_embedded_broker:
    broker_transport = "workers.fsbroker:Transport"  # kombu's filesystem transport, each message file written whole (workers/fsbroker.py)
    _folder = _s.broker_folder
    for _sub in ("queue", "processed", "control"):
        (_folder / _sub).mkdir(parents=True, exist_ok=True)
    broker_transport_options = {
        "data_folder_in": str(_folder / "queue"),
        "data_folder_out": str(_folder / "queue"),
        "control_folder": str(_folder / "control"),
        "processed_folder": str(_folder / "processed"),
        "store_processed": True,
        "polling_interval": 0.02,
    }
else:
    # Longer than the longest job: Redis redelivers an unacked message after this.
    broker_transport_options = {"visibility_timeout": _s.task_time_limit + 3600}

# The jobs table is the source of truth; Celery keeps no results.
task_ignore_result = True
result_backend = None

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_soft_time_limit = _s.task_soft_time_limit
task_time_limit = _s.task_time_limit

worker_send_task_events = True
task_send_sent_event = True

task_queues = [Queue(name) for name in QUEUES]
task_default_queue = "engine"
broker_connection_retry_on_startup = True
worker_hijack_root_logger = False
timezone = "UTC"
enable_utc = True

beat_schedule_filename = str(_s.var_dir / "celerybeat-schedule")
beat_schedule = {
    "reap-jobs": {"task": "exporter.reap", "schedule": timedelta(seconds=_s.reaper_interval), "options": {"queue": "engine"}},
    "cleanup-expired": {"task": "exporter.cleanup", "schedule": timedelta(seconds=_s.cleanup_interval), "options": {"queue": "engine"}},
}
beat_schedule["webhook-sweep"] = {"task": "exporter.webhook_sweep", "schedule": timedelta(seconds=_s.webhook_sweep_interval), "options": {"queue": "webhooks"}}
from celery.schedules import crontab  # noqa: E402, I001
beat_schedule["export-public-nightly"] = {"task": "exporter.export_public_nightly", "schedule": crontab(hour=_s.export_nightly_hour, minute=0), "options": {"queue": "exports"}}
beat_schedule["archiver-resweep"] = {"task": "exporter.resweep_portals", "schedule": timedelta(seconds=_s.archiver_sweep_interval), "options": {"queue": "archive"}}
beat_schedule["archiver-prune"] = {"task": "exporter.prune_archives", "schedule": timedelta(seconds=_s.archiver_sweep_interval), "options": {"queue": "archive"}}
beat_schedule["search-refresh"] = {"task": "exporter.search_refresh", "schedule": timedelta(seconds=_s.search_refresh_interval), "options": {"queue": "engine"}}
beat_schedule["collections-poll"] = {"task": "exporter.collections_poll", "schedule": timedelta(seconds=_s.collections_poll_interval), "options": {"queue": "collections"}}
