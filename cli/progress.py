"""Progress bars of the command line: on stderr (stdout keeps the results), and only when no
log lines would cut through them (`-v` or EXPORTER_LOG_LEVEL=INFO shows the logs instead)."""

from __future__ import annotations

import logging
import sys

import click


def progressbar(**kwargs) -> click.progressbar:
    return click.progressbar(file=sys.stderr, hidden=logging.getLogger().isEnabledFor(logging.INFO), **kwargs)
