"""The command line, an outer layer like web/ and workers/: it calls exporter/ and starts the services."""

from .main import main

__all__ = ["main"]
