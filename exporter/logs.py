"""Logging set-up: one line per event, with the job id where there is one."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_exporter", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._exporter = True
        root.addHandler(handler)
    root.setLevel(level)
    # Libraries' own warnings (urllib3's "Retrying ...") are for a verbose run or a service's log;
    # a quiet command line shows only the error it ends with.
    libraries = logging.WARNING if root.level <= logging.INFO else logging.ERROR
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "kombu", "amqp", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(libraries, root.level))
