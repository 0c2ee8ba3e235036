"""Exceptions with messages a user can act on."""

import re


class ExporterError(Exception):
    """Base class for every error Exporter raises on purpose."""


class ConfigError(ExporterError):
    """A setting has a value Exporter cannot use; the message names the setting."""


class NotFound(ExporterError):
    """The thing asked for does not exist (or is not visible to the caller)."""


class InvalidRequest(ExporterError):
    """Input that cannot be accepted; `field` names the offending field when known."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class JobLost(ExporterError):
    """The job is no longer ours to run: cancelled, reaped, or claimed by another worker."""


class TransientError(ExporterError):
    """A failure worth retrying later (a service briefly down); the job goes back to pending."""


def short_message(exc: BaseException) -> str:
    """The useful end of requests' and urllib3's nested error messages ("[Errno 111] Connection refused")."""
    text = str(exc)
    for pattern in (r"(\[Errno [^\]]+\][^'\")]*)", r"(Read timed out[^'\")]*)", r"(IncompleteRead\([^)]*\))", r"(Connection broken: [^'\")]*)"):
        m = re.search(pattern, text)
        if m:
            return m.group(1).strip()
    return text[:500]
