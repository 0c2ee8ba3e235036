"""Helpers to run real Celery worker processes against the Redis broker in tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis
from celery import Celery

from .conftest import REDIS_URL, require_service

ROOT = Path(__file__).resolve().parent.parent


def redis_broker(db: int) -> str:
    """A Redis database of its own for a test module, emptied first."""
    require_service("Redis", "127.0.0.1", 6379)
    url = f"{REDIS_URL}/{db}"
    redis.Redis.from_url(url).flushdb()
    return url


def sender(broker_url: str) -> Callable[[str, str, str], None]:
    """An enqueue function (task, job id, queue) that sends to the given broker."""
    app = Celery("test-sender", broker=broker_url)
    app.conf.task_serializer = "json"

    def send(task: str, job_id: str, queue: str) -> None:
        app.send_task(task, args=[job_id], queue=queue)

    return send


def worker_env(settings, broker_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTER_")}
    env.update({
        "EXPORTER_VAR_DIR": str(settings.var_dir),
        "EXPORTER_DATABASE_URL": settings.database_url,
        "EXPORTER_STORAGE_URL": settings.storage_url,
        "EXPORTER_SECRET_KEY": settings.secret_key,
        "EXPORTER_BROKER_URL": broker_url,
        "EXPORTER_S3_ENDPOINT_URL": settings.s3_endpoint_url,
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


class LoggedProcess:
    """A subprocess in its own process group, its output in a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        """True while running; a process that exited fails the test with its log."""
        if self.proc.poll() is not None:
            raise AssertionError(f"{' '.join(self.proc.args[:6])} exited ({self.proc.returncode}):\n{self.text()[-3000:]}")
        return True

    def wait_for_log(self, needle: str, timeout: float, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.text().count(needle) >= count:
                return
            self.alive()
            time.sleep(0.1)
        raise AssertionError(f"log never showed {needle!r} within {timeout}s:\n{self.text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group: it dies mid-work, as on a lost machine."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


class WorkerProcess(LoggedProcess):
    """`celery worker`, started and waited for until it is ready."""

    def __init__(self, env: dict[str, str], log_path: Path, queues: str = "engine,exports,archive,webhooks,dumps", pool: str = "solo", concurrency: int = 1):
        argv = [sys.executable, "-m", "celery", "-A", "workers.app:celery_app", "worker", "-l", "INFO", "-P", pool, "-c", str(concurrency), "-Q", queues, "-E", "--without-gossip", "--without-mingle", "-n", f"test-{os.getpid()}-{time.monotonic_ns()}@%h"]
        super().__init__(argv, env, log_path)
        self.wait_for_log("ready.", 60)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
