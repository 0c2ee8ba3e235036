"""Settings from EXPORTER_* environment variables, validated once at start-up.

Every setting has a default that needs no server (the embedded mode). A value Exporter
cannot use stops start-up with a ConfigError naming the setting; nothing falls back
silently. `SETTINGS` is the one list of settings: the README's table is generated from it
(`exporter config --markdown`) and a test checks that the README matches.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .errors import ConfigError
from .expiry import as_kind_seconds
from .ratelimit import as_rate

PREFIX = "EXPORTER_"

BROKER_SCHEMES = {"filesystem", "redis", "rediss", "amqp", "amqps", "pyamqp", "memory"}
DATABASE_BACKENDS = {"sqlite", "postgresql"}
STORAGE_SCHEMES = {"file", "s3"}


def as_str(name: str, raw: str) -> str:
    return raw


def as_int(name: str, raw: str, minimum: int = 0) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{PREFIX}{name} must be at least {minimum}, got {value}")
    return value


def as_positive_int(name: str, raw: str) -> int:
    return as_int(name, raw, 1)


SITEMAP_URL_LIMIT = 50_000  # sitemaps.org: at most 50,000 URLs per sitemap file


def as_sitemap_urls(name: str, raw: str) -> int:
    value = as_positive_int(name, raw)
    if value > SITEMAP_URL_LIMIT:
        raise ConfigError(f"{PREFIX}{name} must be at most {SITEMAP_URL_LIMIT:,} (the sitemaps.org limit), got {value}")
    return value


def as_hour(name: str, raw: str) -> int:
    value = as_int(name, raw)
    if value > 23:
        raise ConfigError(f"{PREFIX}{name} must be an hour from 0 to 23, got {value}")
    return value


def _float(name: str, raw: str, what: str = "a number") -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be {what}, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{PREFIX}{name} must be {what}, got {raw!r}")
    return value


def as_seconds(name: str, raw: str) -> float:
    value = _float(name, raw, "a number of seconds")
    if value <= 0:
        raise ConfigError(f"{PREFIX}{name} must be greater than 0, got {value}")
    return value


def as_nonnegative_float(name: str, raw: str, high: float | None = None) -> float:
    value = _float(name, raw)
    if value < 0 or (high is not None and value > high):
        raise ConfigError(f"{PREFIX}{name} must be " + (f"between 0 and {high:g}" if high is not None else "0 or more") + f", got {raw!r}")
    return value


def as_ratio(name: str, raw: str) -> float:
    return as_nonnegative_float(name, raw, 1)


def as_percent(name: str, raw: str) -> float:
    return as_nonnegative_float(name, raw, 100)


def as_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{PREFIX}{name} must be true or false, got {raw!r}")


def as_networks(name: str, raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A comma-separated list of CIDR networks (an allowlist)."""
    nets = []
    for item in filter(None, (p.strip() for p in raw.split(","))):
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"{PREFIX}{name} has an invalid network {item!r} (expected CIDR like 127.0.0.1/32)"
            ) from None
    return tuple(nets)


def as_path(name: str, raw: str) -> Path:
    return Path(raw).expanduser().resolve()


def as_database_url(name: str, raw: str) -> str:
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise ConfigError(
            f"{PREFIX}{name} is not a database URL: {raw!r} "
            "(expected sqlite:///path or postgresql+psycopg://user@host/db)"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in DATABASE_BACKENDS:
        raise ConfigError(
            f"{PREFIX}{name} uses {backend!r}; supported: {', '.join(sorted(DATABASE_BACKENDS))}"
        )
    if backend == "postgresql" and parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return raw


def as_broker_url(name: str, raw: str) -> str:
    scheme = urlsplit(raw).scheme
    if scheme not in BROKER_SCHEMES:
        raise ConfigError(
            f"{PREFIX}{name} has unknown scheme {scheme!r}: {raw!r} "
            f"(expected one of {', '.join(sorted(BROKER_SCHEMES))})"
        )
    return raw


def as_storage_url(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in STORAGE_SCHEMES:
        raise ConfigError(
            f"{PREFIX}{name} has unknown scheme {parts.scheme!r}: {raw!r} "
            "(expected file:///path or s3://bucket[/prefix])"
        )
    if parts.scheme == "s3" and not parts.netloc:
        raise ConfigError(f"{PREFIX}{name} must name a bucket: s3://bucket[/prefix], got {raw!r}")
    if parts.scheme == "file" and not parts.path:
        raise ConfigError(f"{PREFIX}{name} must name a folder: file:///path, got {raw!r}")
    return raw


def as_http_url(name: str, raw: str) -> str:
    if urlsplit(raw).scheme not in {"http", "https"}:
        raise ConfigError(f"{PREFIX}{name} must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def as_optional_http_url(name: str, raw: str) -> str:
    """An http(s) URL, or empty (the feature it points at is off)."""
    return as_http_url(name, raw) if raw.strip() else ""


def as_log_level(name: str, raw: str) -> str:
    level = raw.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"{PREFIX}{name} must be DEBUG, INFO, WARNING or ERROR, got {raw!r}")
    return level


def as_basic_auth(name: str, raw: str) -> str:
    if raw and (":" not in raw or not raw.partition(":")[0] or len(raw.partition(":")[2]) < 8):
        raise ConfigError(f"{PREFIX}{name} must be `user:password` with a password of at least 8 characters")
    return raw


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    parse: Callable[[str, str], Any] = as_str


SETTINGS: list[Setting] = [
    Setting("VAR_DIR", "./var", "Folder for embedded-mode state: SQLite file, local storage, broker messages, beat schedule, secret key.", as_path),
    Setting("DATABASE_URL", "sqlite:///{VAR_DIR}/exporter.db", "SQLAlchemy URL: `sqlite:///path` or `postgresql+psycopg://user@host/db`.", as_database_url),
    Setting("BROKER_URL", "filesystem://", "Celery broker: `filesystem://` (no server; messages under VAR_DIR/broker, processed ones kept), `redis://host:6379/0` or `amqp://guest:guest@host//`.", as_broker_url),
    Setting("STORAGE_URL", "file://{VAR_DIR}/storage", "Where artifacts go: `file:///path` or `s3://bucket[/prefix]`.", as_storage_url),
    Setting("S3_ENDPOINT_URL", "", "S3-compatible endpoint (MinIO, moto, ...); empty means AWS. Credentials come from the usual AWS_* variables."),
    Setting("S3_REGION", "us-east-1", "Region for the S3 client."),
    Setting("SECRET_KEY", "", "Signs local download URLs and webhooks; empty means generate one once and keep it in VAR_DIR/secret_key."),
    Setting("PUBLIC_URL", "http://{WEB_HOST}:{WEB_PORT}", "Base URL users reach the web app on; local download links are built from it. The default follows WEB_HOST and WEB_PORT (the embedded mode).", as_http_url),
    Setting("WEB_HOST", "127.0.0.1", "Address `exporter up` serves the web app on."),
    Setting("WEB_PORT", "8000", "Port `exporter up` serves the web app on.", as_positive_int),
    Setting("DOWNLOAD_URL_TTL", "3600", "Seconds a download link stays valid.", as_positive_int),
    Setting("HEARTBEAT_SECONDS", "10", "How often a running job writes its heartbeat.", as_seconds),
    Setting("STALE_AFTER_SECONDS", "120", "A running job whose heartbeat is older than this is taken for dead and re-enqueued.", as_seconds),
    Setting("PENDING_TIMEOUT_SECONDS", "600", "A pending job (or part) nobody claimed for this long is re-enqueued if the broker no longer holds its message; it is never failed for waiting.", as_seconds),
    Setting("MAX_ATTEMPTS", "3", "Times a job may be claimed by a worker before the reaper fails it.", as_positive_int),
    Setting("REAPER_INTERVAL", "60", "Seconds between reaper runs (celery beat).", as_seconds),
    Setting("CLEANUP_INTERVAL", "3600", "Seconds between expired-artifact cleanups (celery beat).", as_seconds),
    Setting("ORPHAN_GRACE_SECONDS", "3600", "Cleanup deletes an object at a final key that no row names (left by an interrupted run) once it is older than this.", as_seconds),
    Setting("TASK_SOFT_TIME_LIMIT", "21600", "Soft time limit of one task in seconds (the job is failed and cleans up).", as_positive_int),
    Setting("TASK_TIME_LIMIT", "22200", "Hard time limit of one task in seconds (the worker process is killed); must exceed the soft limit.", as_positive_int),
    Setting("JOB_EXPIRY_SECONDS", "604800", "How long a finished job's artifacts are kept, unless its kind sets its own.", as_positive_int),
    Setting("LOG_LEVEL", "INFO", "Logging level: DEBUG, INFO, WARNING or ERROR.", as_log_level),
    Setting("KIND_EXPIRY", "", "Per-kind artifact expiry overriding JOB_EXPIRY_SECONDS: `kind=seconds` pairs, comma-separated (e.g. `export_private=86400`); 0 keeps them forever.", as_kind_seconds),
    Setting("CACHE_MAX_AGE_SECONDS", "86400", "An equal request is answered with a finished job's result only while that result is younger than this (from when the job finished) and kept longer than DOWNLOAD_URL_TTL still; 0: no age limit.", as_int),
    Setting("KIND_CACHE_MAX_AGE", "", "Per-kind CACHE_MAX_AGE_SECONDS: `kind=seconds` pairs, comma-separated (e.g. `export_public=3600`); 0 reuses a result until it expires.", as_kind_seconds),
    Setting("WEBHOOK_SECRET", "", "Key of the HMAC-SHA256 signature on webhook calls; empty means SECRET_KEY."),
    Setting("WEBHOOK_ALLOW_NETWORKS", "", "Networks callback URLs may reach although private/loopback (CIDR, comma-separated, e.g. `10.0.0.0/8`).", as_networks),
    Setting("WEBHOOK_TIMEOUT", "10", "Seconds one webhook call may take in all (connect, headers and answer), however steadily the receiver sends.", as_seconds),
    Setting("WEBHOOK_RETRY_BASE", "30", "Seconds before the first webhook retry; each next wait doubles (with jitter) up to WEBHOOK_RETRY_CAP.", as_seconds),
    Setting("WEBHOOK_RETRY_CAP", "3600", "Longest wait between two webhook attempts, in seconds.", as_seconds),
    Setting("WEBHOOK_MAX_ATTEMPTS", "15", "Attempts per webhook before giving up (the defaults retry for 4 to 8 hours).", as_positive_int),
    Setting("WEBHOOK_SWEEP_INTERVAL", "300", "Seconds between sweeps that re-send webhooks whose retry message was lost (celery beat).", as_seconds),
    Setting("FLOWER_URL", "http://127.0.0.1:5555", "Flower (Celery monitor) URL linked from the operator pages; `exporter up` starts Flower on its port.", as_http_url),
    Setting("FLOWER_BASIC_AUTH", "", "`user:password` of Flower's basic auth; empty means user `operator` with a password generated once into VAR_DIR/flower_password.", as_basic_auth),
    Setting("ENV", "", "`production` makes the secret checks of production apply even on embedded defaults; a PostgreSQL database or a Redis/RabbitMQ broker is production anyway."),
    Setting("OPERATOR_PASSWORD", "", "Password of the operator pages; empty means generate one once and keep it in VAR_DIR/operator_password. An operator API token also logs in."),
    Setting("ARCHIVER_ALLOW_NETWORKS", "", "Networks the archiver may fetch from although loopback/private/link-local (CIDR, comma-separated, e.g. `127.0.0.1/32`); everything internal is refused otherwise.", as_networks),
    Setting("ARCHIVER_USER_AGENT", "Exporter-archiver/1.0 (+https://github.com/exporter)", "User-Agent header of every archiver request."),
    Setting("ARCHIVER_MAX_BYTES", "1073741824", "Largest resource the archiver stores; bigger ones are recorded as 'Chose not to download'.", as_positive_int),
    Setting("ARCHIVER_CONNECT_TIMEOUT", "10", "Seconds to wait for a connection to a resource's server.", as_seconds),
    Setting("ARCHIVER_READ_TIMEOUT", "30", "Seconds to wait for the next bytes of a response.", as_seconds),
    Setting("ARCHIVER_TOTAL_TIMEOUT", "3600", "Seconds one download (or one call to a portal's CKAN API) may take in all, however steadily bytes arrive.", as_seconds),
    Setting("ARCHIVER_MAX_REDIRECTS", "5", "Redirects followed per request.", as_int),
    Setting("ARCHIVER_RETRY_BACKOFF_MS", "2000", "Base wait before retrying a timeout, connection error, 5xx or 429 (doubles per attempt, with jitter); 3 attempts at most.", as_int),
    Setting("ARCHIVER_RETRY_AFTER_MAX", "120", "Longest Retry-After (seconds) the archiver waits for; longer ones are capped.", as_seconds),
    Setting("ARCHIVER_HOST_CONCURRENCY", "2", "Requests the archiver runs at once against one host (across all workers).", as_positive_int),
    Setting("ARCHIVER_HOST_DELAY_MS", "500", "Minimum milliseconds between two request starts on one host.", as_int),
    Setting("ARCHIVER_SKIP_CONTENT_TYPES", "text/html,application/xhtml+xml", "Content types that are not data: checked and recorded, not stored (comma-separated; empty stores everything).", as_str),
    Setting("ARCHIVER_RECHECK_SECONDS", "86400", "Seconds until an archived resource is checked again (longer when its Cache-Control says so).", as_positive_int),
    Setting("ARCHIVER_KEEP_VERSIONS", "3", "Stored versions kept per resource when pruning.", as_positive_int),
    Setting("ARCHIVER_GONE_AFTER_SWEEPS", "3", "A portal's resource is marked gone once absent from this many complete sweeps in a row (or for ARCHIVER_GONE_AFTER_DAYS).", as_positive_int),
    Setting("ARCHIVER_GONE_AFTER_DAYS", "14", "Days a resource may be absent from complete sweeps before it is marked gone, whatever the sweep count (0: by count only).", as_int),
    Setting("ARCHIVER_GONE_MAX_PERCENT", "10", "A sweep that would mark more than this percent of a portal's live resources gone marks none and reports it.", as_int),
    Setting("ARCHIVER_GONE_GRACE_DAYS", "30", "Days prune keeps the last stored copy of a resource after it was marked gone.", as_int),
    Setting("ARCHIVER_CKAN_MAX_RESPONSE_BYTES", "52428800", "Largest CKAN API answer read (bytes); a longer one is refused with an error.", as_positive_int),
    Setting("ARCHIVER_WARC", "true", "Also write what each archiving part fetched as WARC/1.1 records (warc/<portal>/...warc.gz, with a CDXJ index), for web-archiving tools.", as_bool),
    Setting("ARCHIVER_WARC_KEEP_DAYS", "365", "Days a WARC file is kept before prune deletes it (the stored copies keep their own retention).", as_positive_int),
    Setting("ARCHIVER_THREADS", "8", "Downloads one worker process runs at once for a part (each host still within ARCHIVER_HOST_CONCURRENCY across all workers).", as_positive_int),
    Setting("ARCHIVER_BATCH_SIZE", "200", "Resources per part when a sweep or URL list fans out (one `exporter.run_part` task each).", as_positive_int),
    Setting("ARCHIVER_SWEEP_INTERVAL", "86400", "Seconds between re-sweeps of every registered portal (celery beat).", as_seconds),
    Setting("ARCHIVER_CHUNK_BYTES", "1048576", "Bytes read from the network per chunk while streaming a download.", as_positive_int),
    Setting("EXPORT_PAGE_SIZE", "1000", "Raids the RAiD exports read per page (keyset pagination).", as_positive_int),
    Setting("EXPORT_COMPRESS_LEVEL", "1", "zlib level (1-9) of export archives; 1 is the fastest.", as_positive_int),
    Setting("EXPORT_SETTLE_SECONDS", "30", "An incremental export leaves changes younger than this to the next one, so a transaction still committing is never skipped.", as_int),
    Setting("EXPORT_SITEMAP_MAX_URLS", "50000", "URLs per sitemap file of a public export (the sitemaps.org limit is 50,000, the most accepted).", as_sitemap_urls),
    Setting("EXPORT_PUBLIC_BASE_URL", "", "Where published public export objects are reachable (the sitemap index links to them); empty means PUBLIC_URL/public."),
    Setting("EXPORT_LANDING_URL", "{handle}", "A raid's landing page in sitemaps and the HTML index; `{handle}` is replaced by the handle (a handle that is a URL is used as it is)."),
    Setting("EXPORT_NIGHTLY_HOUR", "2", "UTC hour (0-23) at which celery beat starts the public export of every registration agency.", as_hour),
    Setting("EXPORT_NIGHTLY_MODE", "full", "Mode of the nightly public exports: full or incremental."),
    Setting("ZENODO_URL", "", "Base URL of the Zenodo API publications go to: `https://zenodo.org/api`, or `https://sandbox.zenodo.org/api` to try it out; empty means publishing to Zenodo is off.", as_optional_http_url),
    Setting("ZENODO_TOKEN", "", "Zenodo personal access token (scopes `deposit:write` and `deposit:actions`), sent as `Authorization: Bearer`."),
    Setting("ZENODO_ALLOW_NETWORKS", "", "Networks ZENODO_URL may reach although loopback/private/link-local (CIDR, comma-separated, e.g. `127.0.0.1/32` for a local test server); everything internal is refused otherwise.", as_networks),
    Setting("ZENODO_TIMEOUT", "120", "Seconds to wait for Zenodo's answer to one request (connecting: at most 10 s).", as_seconds),
    Setting("ZENODO_MAX_ATTEMPTS", "5", "Attempts per Zenodo request on 429, 5xx, timeouts and connection errors, before the job goes back to the queue to resume later.", as_positive_int),
    Setting("ZENODO_RETRY_BACKOFF_MS", "1000", "Base wait before retrying a Zenodo request after a 5xx, timeout or connection error (doubles per attempt, with jitter).", as_int),
    Setting("ZENODO_RETRY_AFTER_MAX", "300", "Longest wait (seconds) for Zenodo's Retry-After or X-RateLimit-Reset inside a worker; a longer one gives the job back to the queue.", as_seconds),
    Setting("DUMP_AFTER_EXPORT", "true", "Submit a dump publication (`publish_dump`) for the agency after each succeeded public export.", as_bool),
    Setting("DUMP_PART_RECORDS", "10000", "Records per gzip JSON Lines part of a dump (change sets and snapshots).", as_positive_int),
    Setting("DUMP_SNAPSHOT_EVERY", "50", "A dump writes a full snapshot every this many change sets (or every DUMP_SNAPSHOT_DAYS, whichever comes first).", as_positive_int),
    Setting("DUMP_SNAPSHOT_DAYS", "7", "Days after which a dump's next change set also writes a full snapshot.", as_seconds),
    Setting("DUMP_KEEP_SNAPSHOTS", "2", "Full snapshots a dump keeps; change sets older than the oldest kept snapshot are pruned (a client further behind reloads from the latest snapshot).", as_positive_int),
    Setting("API_RATE_LIMIT", "30/60", "Job creations allowed per API token: `N/SECONDS` (bursts of up to N, refilled over SECONDS); `0/1` turns the limit off. Over it the API answers 429 with Retry-After.", as_rate),
    Setting("API_MAX_BODY_BYTES", "65536", "Largest request body the JSON API accepts; a bigger one gets 413.", as_positive_int),
    Setting("STORAGE_QUOTA_BYTES", "0", "Bytes the storage may hold; 0 means no quota. S3 reports no free space, so set this for `/api/v1/storage` and export admission (507) to work there.", as_int),
    Setting("TILES_WORK_DIR", "{VAR_DIR}/tiles-work", "Local folder where a tiles export builds its GeoPackage (one subfolder per job, kept until the job ends so a re-run resumes it); needs room for the largest export.", as_path),
    Setting("TILES_MAX_TILES", "2000000", "Most tiles one tiles export may cover; a larger region is refused (400).", as_positive_int),
    Setting("TILES_FETCH_THREADS", "4", "Threads fetching the tiles of one export (for an HTTP layer at most ARCHIVER_HOST_CONCURRENCY, whose politeness rules apply).", as_positive_int),
    Setting("TILES_MAX_TILE_BYTES", "2097152", "Largest tile accepted; a bigger one is recorded as missing.", as_positive_int),
    Setting("TILES_MAX_MISSING_PERCENT", "10", "A tiles export fails when more than this percent of its tiles are missing at the source (fewer are recorded in its metadata).", as_percent),
    Setting("TILES_COMMIT_EVERY", "500", "Tiles written between two commits of the work GeoPackage (at most a second apart); what a killed worker loses at most.", as_positive_int),
    Setting("TILES_CACHE_BUFFER_METERS", "5", "A finished tiles export answers a new request of the same layer and resolutions when its region, grown by this many metres, covers the new one (and TILES_CACHE_MIN_AREA_RATIO holds).", as_nonnegative_float),
    Setting("TILES_CACHE_MIN_AREA_RATIO", "0.8", "A covering tiles export answers a new request only if the new region's area is at least this share of its own (0 to 1), so a small request does not get a huge file.", as_ratio),
    Setting("SEARCH_REFRESH_INTERVAL", "60", "Seconds between incremental refreshes of the public search index (celery beat); each reads the raids changed since the last one.", as_seconds),
    Setting("SEARCH_SETTLE_SECONDS", "30", "Each search index refresh reads again the raids changed this many seconds before the last one began, for transactions that were still committing.", as_int),
    Setting("SEARCH_RECONCILE_INTERVAL", "86400", "Seconds between reconciles of the search index: every raid's change time is compared with the index and what differs is indexed again (celery beat, within a refresh).", as_seconds),
    Setting("SEARCH_BATCH_SIZE", "1000", "Raids the search index reads and writes per batch.", as_positive_int),
    Setting("SEARCH_COUNT_LIMIT", "1000", "Matches a search counts (and ranks, and counts facets over) at most; beyond it the total reads `more than N`.", as_positive_int),
    Setting("OAI_REPOSITORY_NAME", "Exporter RAiD registry", "repositoryName of the OAI-PMH Identify response at /oai."),
    Setting("OAI_ADMIN_EMAIL", "oai-admin@example.org", "adminEmail of the OAI-PMH Identify response (set it to a real address before harvesters come)."),
    Setting("OAI_PAGE_SIZE", "100", "Records (or identifiers) per OAI-PMH ListRecords/ListIdentifiers response; the rest follows through a resumption token.", as_positive_int),
    Setting("OAI_TOKEN_TTL", "86400", "Seconds an OAI-PMH resumption token stays valid (its expirationDate).", as_positive_int),
    Setting("COLLECTIONS_SOURCE_ROOTS", "{VAR_DIR}/collections", "Folders under which a collection's local source may be (comma-separated); a source elsewhere on the server is refused. S3 sources (`s3://bucket/prefix`) use the S3_* settings.", as_str),
    Setting("COLLECTIONS_POLL_INTERVAL", "300", "Seconds between polls of every active collection's source for new files (celery beat).", as_seconds),
    Setting("COLLECTIONS_SETTLE_SECONDS", "30", "A file in a collection folder modified less than this many seconds ago waits for the next poll (it may still be being written); S3 objects appear whole.", as_seconds),
    Setting("COLLECTIONS_CAP_UNAPPROVED", "100", "Most objects in one batch of a project whose data rights are not approved yet; the rest wait for later batches.", as_positive_int),
    Setting("COLLECTIONS_CAP", "10000", "Most objects in one batch once a project's data rights are approved; at most 10000 (Zooniverse's limit of rows in one manifest).", as_positive_int),
    Setting("COLLECTIONS_APPROVAL_SECONDS", "604800", "Seconds a batch waits for an approver's decision before its request expires.", as_seconds),
    Setting("COLLECTIONS_QUARANTINE_DAYS", "7", "Days cleanup keeps a declined or expired batch's quarantined files and converted images, and a published batch's converted images (its public copies stay), after the batch last changed.", as_nonnegative_float),
    Setting("COLLECTIONS_MAX_IMAGE_BYTES", "1000000", "Largest converted image sent to Zooniverse, in bytes (Zooniverse's limit for subject images is 1,000 KB).", as_positive_int),
    Setting("COLLECTIONS_PUBLIC_URL", "", "Base URL of published collection files (`<base>/collections/<project>/<batch>/...`), e.g. a public S3 bucket's website; empty means `<PUBLIC_URL>/public`, served by the web app.", as_str),
    Setting("ZOONIVERSE_URL", "", "Base URL of the Panoptes API subject-set imports go to (`https://www.zooniverse.org/api`); empty means published batches are not imported.", as_optional_http_url),
    Setting("ZOONIVERSE_TOKEN", "", "Panoptes bearer token (scope `project`) of the account that imports subjects."),
    Setting("ZOONIVERSE_ALLOW_NETWORKS", "", "Networks ZOONIVERSE_URL may reach although loopback/private (CIDR, comma-separated, e.g. `127.0.0.1/32` for a local test server).", as_networks),
    Setting("ZOONIVERSE_TIMEOUT", "60", "Seconds to wait for one Panoptes answer.", as_seconds),
    Setting("ZOONIVERSE_FOLLOW_SECONDS", "600", "Seconds one import job follows a running subject-set import before it goes back to the queue to look again later.", as_seconds),
    Setting("ZOONIVERSE_POLL_SECONDS", "5", "Seconds between two looks at a running subject-set import.", as_seconds),
    Setting("SMTP_HOST", "", "SMTP server collection owners' e-mails go through; empty means no e-mail (webhooks only).", as_str),
    Setting("SMTP_PORT", "25", "Port of SMTP_HOST.", as_positive_int),
    Setting("SMTP_FROM", "exporter@localhost", "Sender address of the e-mails.", as_str),
    Setting("SMTP_USER", "", "SMTP login (with SMTP_PASSWORD); empty means no login.", as_str),
    Setting("SMTP_PASSWORD", "", "SMTP password.", as_str),
    Setting("SMTP_STARTTLS", "false", "Upgrade the SMTP connection with STARTTLS before logging in and sending.", as_bool),
    Setting("SMTP_TIMEOUT", "30", "Seconds one SMTP conversation may take.", as_seconds),
    Setting("EMAIL_MAX_ATTEMPTS", "12", "Attempts per e-mail before giving up (waits double from WEBHOOK_RETRY_BASE up to WEBHOOK_RETRY_CAP).", as_positive_int),
]
BY_NAME = {s.name: s for s in SETTINGS}


class Settings:
    """Parsed settings; read them as attributes in lower case (`settings.database_url`)."""

    def __init__(self, values: dict[str, Any]):
        self._values = values

    def __getattr__(self, attr: str) -> Any:
        try:
            return self._values[attr.upper()]
        except KeyError:
            raise AttributeError(f"no setting {PREFIX}{attr.upper()}") from None

    def replace(self, **changes: Any) -> Settings:
        values = dict(self._values)
        values.update({k.upper(): v for k, v in changes.items()})
        return Settings(values)

    @property
    def broker_folder(self) -> Path:
        return self.var_dir / "broker"

    @property
    def is_embedded_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")


def kept_secret(var_dir: Path, name: str, nbytes: int = 32) -> str:
    """A random secret generated once and kept in VAR_DIR/<name> (mode 0600), for the embedded mode."""
    path = var_dir / name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    try:
        var_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{PREFIX}{name.upper()} is empty and {path} cannot be created: {exc}") from None
    secret = secrets.token_urlsafe(nbytes)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    return secret


def _secret_key(raw: str, var_dir: Path) -> str:
    if raw:
        if len(raw) < 16:
            raise ConfigError(f"{PREFIX}SECRET_KEY must be at least 16 characters")
        return raw
    return kept_secret(var_dir, "secret_key")


def is_production(env: Mapping[str, str] | None = None) -> bool:
    """Production: EXPORTER_ENV=production, or any database other than SQLite, or any broker other than the filesystem one."""
    env = os.environ if env is None else env
    if env.get(PREFIX + "ENV", "").strip().lower() == "production":
        return True
    database = env.get(PREFIX + "DATABASE_URL") or "sqlite:"
    broker = env.get(PREFIX + "BROKER_URL") or "filesystem://"
    return not database.startswith("sqlite:") or not broker.startswith("filesystem:")


def production_secret_problem(env: Mapping[str, str] | None = None) -> str | None:
    """One line saying why production settings may not start (no SECRET_KEY given), or None."""
    env = os.environ if env is None else env
    if is_production(env) and not env.get(PREFIX + "SECRET_KEY"):
        return f"{PREFIX}SECRET_KEY is not set: production settings (a server database or broker, or {PREFIX}ENV=production) need a secret of at least 16 characters"
    return None


def require_production_secret(env: Mapping[str, str] | None = None) -> None:
    """Raise ConfigError when production settings come without a SECRET_KEY: every service's
    entry point calls it (the CLI's services, the web app built from the environment, the
    Celery app), so `gunicorn web:create_app()` or `celery -A workers.app` refuse to start too."""
    problem = production_secret_problem(env)
    if problem:
        raise ConfigError(problem)


def flower_credentials(settings: Settings) -> tuple[str, str]:
    """Flower's basic-auth user and password: FLOWER_BASIC_AUTH, or `operator` and a generated password."""
    if settings.flower_basic_auth:
        user, _, password = settings.flower_basic_auth.partition(":")
        return user, password
    return "operator", kept_secret(settings.var_dir, "flower_password", 18)


def _read_settings(env: Mapping[str, str]) -> tuple[dict[str, Any], list[ConfigError]]:
    """Every setting parsed, and a ConfigError for each one that cannot be used."""
    var_dir = as_path("VAR_DIR", env.get(PREFIX + "VAR_DIR") or "./var")
    values: dict[str, Any] = {}
    problems: list[ConfigError] = []
    for setting in SETTINGS:
        raw = env.get(PREFIX + setting.name)
        if raw is None or (raw == "" and setting.default):
            raw = setting.default
        raw = raw.replace("{VAR_DIR}", str(var_dir))
        for other in ("WEB_HOST", "WEB_PORT"):  # PUBLIC_URL's default: where `exporter up` serves
            value = env.get(PREFIX + other) or BY_NAME[other].default
            raw = raw.replace("{" + other + "}", "127.0.0.1" if value in ("0.0.0.0", "::") else value)  # every address: this machine's
        try:
            values[setting.name] = setting.parse(setting.name, raw)
        except ConfigError as exc:
            problems.append(exc)
    if "SECRET_KEY" in values:
        try:
            values["SECRET_KEY"] = _secret_key(values["SECRET_KEY"], var_dir)
        except ConfigError as exc:
            problems.append(exc)
    limits = values.get("TASK_TIME_LIMIT"), values.get("TASK_SOFT_TIME_LIMIT")
    if None not in limits and limits[0] <= limits[1]:
        problems.append(ConfigError(f"{PREFIX}TASK_TIME_LIMIT ({limits[0]}) must be greater than {PREFIX}TASK_SOFT_TIME_LIMIT ({limits[1]})"))
    return values, problems


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the first bad one."""
    values, problems = _read_settings(os.environ if env is None else env)
    if problems:
        raise problems[0]
    return Settings(values)


def setting_problems(env: Mapping[str, str] | None = None) -> list[str]:
    """What is wrong with each setting that cannot be used (load_settings stops at the first)."""
    return [str(exc) for exc in _read_settings(os.environ if env is None else env)[1]]


def settings_markdown() -> str:
    """The README's settings table."""
    rows = ["| setting | default | meaning |", "| --- | --- | --- |"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(empty)"
        rows.append(f"| `{PREFIX}{s.name}` | {default} | {s.help} |")
    return "\n".join(rows)
