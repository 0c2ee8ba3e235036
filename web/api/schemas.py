"""Every request and answer of /api/v1, described once as marshmallow schemas.

webargs validates requests by these schemas (`@bp.arguments`), views render answers through
them (`@bp.response`), and flask-smorest writes the OpenAPI document from them, so the three
cannot drift. Error messages here are phrases: the parser (`web/api/spec.py`) puts the field's
name in front of one that does not already name it ("kind must be one of public, private").
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from exporter.submissions import ARCHIVE_KINDS, EXPORT_KINDS, MAX_DESCRIPTION, PRINTABLE
from exporter.visibility import JOB_STATUS

# marshmallow's message for a field a schema does not declare; the parser words it with the declared ones.
UNKNOWN = "unknown field"

MODES = ("full", "incremental")
FORMATS = ("zip", "tar.gz")
MAX_CALLBACKS = 20
MAX_URLS = 1000
# Which scope field each export kind takes (a tiles export takes a layer and a region instead).
SCOPE_FIELD = {"public": "agency", "private": "servicePoint"}
ROI_HELP = "a GeoJSON FeatureCollection whose features carry maxResolutionDeg (and optionally minResolutionDeg)"


# -- fields: a type, its limits and its messages in one place ------------------------------------


class Text(fields.String):
    """A string of at most `max_length` characters (with `printable`, no control characters).
    In a query string an empty value means the parameter was not given (the parser drops it)."""

    empty_is_missing = True
    default_error_messages = {"required": "is required", "null": "must be a string, not null", "invalid": "must be a string", "invalid_utf8": "must be a string"}

    def __init__(self, max_length: int | None = None, *, printable: bool = False, **kwargs):
        checks = [validate.Length(max=max_length, error="must be at most {max} characters")] if max_length else []
        if printable:
            checks.append(validate.Regexp(PRINTABLE, error="must not hold control characters"))
        super().__init__(validate=checks + list(kwargs.pop("validate", [])), **kwargs)


class Choice(fields.String):
    """One of `choices`."""

    def __init__(self, choices, **kwargs):
        listed = ", ".join(choices)
        one_of = validate.OneOf(tuple(choices), error=f"must be one of {listed}, got {{input!r}}")
        required = f"is required: one of {listed}"
        messages = {"required": required, "null": required, "invalid": f"must be one of {listed}"}
        super().__init__(validate=one_of, error_messages=messages, **kwargs)


class Whole(fields.Integer):
    """A whole number from `minimum` to `maximum`."""

    default_error_messages = {"required": "is required", "null": "must be a whole number, not null", "invalid": "must be a whole number", "too_large": "is too large"}

    def __init__(self, minimum: int | None = None, maximum: int | None = None, **kwargs):
        bounds = [validate.Range(minimum, maximum, error="must be between {min} and {max}")] if minimum is not None and maximum is not None else []
        super().__init__(validate=bounds, **kwargs)


class Identifier(fields.Field):
    """An agency, service point or portal: a non-empty string of printable characters (spaces
    around it dropped) or a whole number from 0 to 2^63-1."""

    MAX_LENGTH = 200
    MAXIMUM = 2**63 - 1
    PATTERN = r"^[^\x00-\x1f]*$"
    default_error_messages = {
        "required": "is required",
        "null": "must be a string or a whole number, not null",
        "invalid": "must be a string or a whole number",
        "text": f"must be a non-empty string of at most {MAX_LENGTH} printable characters",
        "range": "must be between 0 and 2^63-1",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.make_error("invalid")
        if isinstance(value, int):
            if not 0 <= value <= self.MAXIMUM:
                raise self.make_error("range")
            return value
        if not value.strip() or len(value) > self.MAX_LENGTH or not re.fullmatch(self.PATTERN, value):
            raise self.make_error("text")
        return value.strip()

    def openapi(self) -> dict:
        """Its JSON schema (spec.py hands it to apispec), from the same limits."""
        string = {"type": "string", "minLength": 1, "maxLength": self.MAX_LENGTH, "pattern": self.PATTERN}
        return {"oneOf": [string, {"type": "integer", "minimum": 0, "maximum": self.MAXIMUM}]}


class HttpUrl(Text):
    """An absolute http(s) URL with a host, without spaces; finer address rules belong to the kind that fetches it."""

    MAX_LENGTH = 2048
    default_error_messages = {
        "bad": "is not a valid URL: {error}",
        "scheme": "must be an absolute http(s) URL, got {value!r}",
        "shape": f"must be at most {MAX_LENGTH} characters without spaces",
    }

    def __init__(self, **kwargs):
        super().__init__(self.MAX_LENGTH, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        raw = super()._deserialize(value, attr, data, **kwargs)
        value = raw.strip()
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018  (raises on a bad port)
        except ValueError as exc:
            raise self.make_error("bad", error=exc) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.make_error("scheme", value=value[:200])
        if len(raw) > self.MAX_LENGTH or any(c.isspace() or ord(c) < 32 for c in value):
            raise self.make_error("shape")
        return value


class Strings(fields.List):
    """A list of strings (each checked by `item`) of `min_items` to `max_items`."""

    default_error_messages = {"required": "is required: a list of strings", "null": "must be a list of strings, not null", "invalid": "must be a list of strings"}

    def __init__(self, item: fields.Field, max_items: int, min_items: int | None = None, **kwargs):
        error = "must hold between {min} and {max} items" if min_items else "may hold at most {max} items"
        super().__init__(item, validate=validate.Length(min=min_items, max=max_items, error=error), **kwargs)


class Timestamp(fields.DateTime):
    """A UTC time, ISO 8601 with a Z."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else value.isoformat().replace("+00:00", "Z")


# -- requests -------------------------------------------------------------------------------


class Strict(Schema):
    """A request body: a field it does not declare is refused (and named)."""

    class Meta:
        unknown = RAISE

    error_messages = {"unknown": UNKNOWN, "type": "must be a JSON object"}


class Query(Strict):
    """A query string: only the parameters it declares (this base: none, the default of every view)."""


CALLBACKS = Strings(
    Text(HttpUrl.MAX_LENGTH),
    MAX_CALLBACKS,
    allow_none=True,
    metadata={"description": "URLs told (POST, signed with HMAC-SHA256) when the job ends. Loopback and private addresses are refused unless allowed."},
)
DESCRIPTION = Text(MAX_DESCRIPTION, printable=True, allow_none=True)
SCOPE_HELP = "is required: an object with agency (a public export) or servicePoint (a private one)"


class Scope(Strict):
    error_messages = {"type": SCOPE_HELP}
    agency = Identifier(metadata={"description": "The registration agency (its ROR) of a public export."})
    servicePoint = Identifier(metadata={"description": "The service point of a private export."})


class ExportRequest(Strict):
    kind = Choice(tuple(EXPORT_KINDS), required=True)
    scope = fields.Nested(
        Scope,
        error_messages={"null": SCOPE_HELP},
        metadata={"description": "{agency: ROR} for a public export; {servicePoint: id} for a private one."},
    )
    layer = Text(200, printable=True, metadata={"description": "A tiles export's registered tile layer."})
    roi = fields.Dict(metadata={"description": f"A tiles export's region of interest: {ROI_HELP}."})
    mode = Choice(MODES, load_default="full")
    format = Choice(FORMATS, load_default="zip")
    description = DESCRIPTION
    callbackURLs = CALLBACKS

    @validates_schema
    def _scope_fits_kind(self, data, **kwargs):
        kind = data["kind"]
        if kind == "tiles":
            for name in ("scope",):
                if name in data:
                    raise ValidationError(f"a tiles export takes layer and roi, not {name}", field_name=name)
            for name, help_ in (("layer", "a registered tile layer's name"), ("roi", ROI_HELP)):
                if name not in data:
                    raise ValidationError(f"a tiles export needs {name}: {help_}", field_name=name)
            return
        for name in ("layer", "roi"):
            if name in data:
                raise ValidationError(f"{name} belongs to a tiles export, not a {kind} one", field_name=name)
        if "scope" not in data:
            raise ValidationError(SCOPE_HELP, field_name="scope")
        scope, need = data["scope"], SCOPE_FIELD[kind]
        extra = sorted(set(scope) - {need})
        if extra:
            raise ValidationError(f"scope.{extra[0]} is not part of a {kind} export's scope, which takes only {need}", field_name=f"scope.{extra[0]}")
        if need not in scope:
            raise ValidationError(f"a {kind} export needs scope.{need}", field_name=f"scope.{need}")


class RoiRequest(Strict):
    """MapColonies' `POST /create/roi` body."""

    dbId = Text(200, printable=True, required=True, metadata={"description": "The layer (MapColonies' catalog record id; here a registered tile layer's name)."})
    roi = fields.Dict(required=True, metadata={"description": ROI_HELP})
    crs = Text(20, metadata={"description": "EPSG:4326, the only one exported."})
    priority = Whole(0, 1000)
    description = DESCRIPTION
    callbackURLs = CALLBACKS


class PublicationRequest(Strict):
    """Publish an agency's full public export to Zenodo (default: its newest succeeded one)."""

    agency = Identifier(required=True, metadata={"description": "The registration agency (its ROR, or the ROR's short id)."})
    export = Text(64, metadata={"description": "The export job to publish; default the agency's newest succeeded full public export."})
    description = DESCRIPTION
    callbackURLs = CALLBACKS


class ArchiveRequest(Strict):
    """Either urls (archive each) or portal (sweep a registered CKAN portal)."""

    urls = Strings(HttpUrl(), MAX_URLS, min_items=1)
    portal = Identifier(metadata={"description": "A registered portal's name or id."})
    description = DESCRIPTION
    callbackURLs = CALLBACKS

    @validates_schema
    def _urls_or_portal(self, data, **kwargs):
        if ("urls" in data) == ("portal" in data):
            raise ValidationError("give either urls (a list of URLs to archive) or portal (a registered portal to sweep)", field_name="urls")


class ExportQuery(Query):
    status = Choice(tuple(JOB_STATUS))
    kind = Choice(tuple(EXPORT_KINDS))
    limit = Whole(1, 200, load_default=20)
    offset = Whole(0, 10**9, load_default=0)


class DownloadQuery(Query):
    artifact = Text(100, load_default="data", metadata={"description": "data, manifest, or an artifact's name."})
    expires = Whole(metadata={"description": "Part of a signed link: when it expires (Unix time)."})
    by = Whole(metadata={"description": "Part of a signed link: the token it was issued to."})
    signature = Text(128, metadata={"description": "Part of a signed link."})


class SearchQuery(Query):
    q = Text(500, metadata={"description": 'Words (all must match), "a phrase", OR between terms, -word to exclude.'})
    agency = Text(200, metadata={"description": "A registration agency (its ROR or short id)."})
    servicePoint = Whole(1, 2**63 - 1)
    accessType = Choice(("open", "embargoed"))
    from_ = Text(10, data_key="from", metadata={"description": "Start date on or after (YYYY-MM-DD)."})
    until = Text(10, metadata={"description": "Start date on or before (YYYY-MM-DD)."})
    page = Whole(1, 10**9, load_default=1)
    perPage = Whole(1, 100, load_default=20)
    sort = Choice(("relevance", "date"), load_default="relevance")


class BrokenLinksQuery(Query):
    format = Choice(("json", "csv"), load_default="json")
    organization = Text(200)


class AuditQuery(Query):
    jobId = Text(64)
    action = Text(64)
    limit = Whole(1, 1000, load_default=100)
    offset = Whole(0, 10**9, load_default=0)


# -- answers --------------------------------------------------------------------------------

LOCATION = {"Location": {"description": "The job's URL.", "schema": {"type": "string"}}}
REDIRECT = {"Location": {"description": "An expiring download URL.", "schema": {"type": "string"}, "required": True}}


class Error(Schema):
    """Every error under /api/v1."""

    error = fields.String(required=True, metadata={"description": "What is wrong and what to do."})
    field = fields.String(required=True, allow_none=True, metadata={"description": "The offending field, when there is one."})


class Links(Schema):
    dataURI = fields.String(required=True, allow_none=True)
    manifestURI = fields.String(required=True, allow_none=True)


class Job(Schema):
    jobId = fields.String(required=True)
    kind = fields.String(required=True, metadata={"description": f"{' or '.join(EXPORT_KINDS)} for exports; {' or '.join(ARCHIVE_KINDS)} for archives."})
    status = fields.String(required=True, validate=validate.OneOf(tuple(JOB_STATUS)))
    percentage = fields.Integer(required=True, validate=validate.Range(0, 100))
    description = fields.String(required=True, allow_none=True)
    mode = fields.String(required=True, allow_none=True, validate=validate.OneOf(MODES))
    format = fields.String(required=True, allow_none=True, validate=validate.OneOf(FORMATS))
    links = fields.Nested(
        Links,
        required=True,
        allow_none=True,
        metadata={"description": "Expiring download links (to the audited download endpoint) while the job's files exist."},
    )
    fileSize = fields.Integer(required=True, allow_none=True, validate=validate.Range(min=0))
    expirationTime = Timestamp(required=True, allow_none=True)
    errorReason = fields.String(required=True, allow_none=True)
    createdAt = Timestamp(required=True)
    finishedAt = Timestamp(required=True, allow_none=True)


class RoiLinks(Schema):
    dataURI = fields.String(required=True, allow_none=True)
    metadataURI = fields.String(required=True, allow_none=True)


class RoiJob(Schema):
    """MapColonies' shapes: In-Progress (`taskIds`, `isDuplicated`, `percentage` when read back),
    Completed (`links`, `expirationTime`, `fileSize`) and Failed (`errorReason`)."""

    jobId = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(("Pending", "In-Progress", "Completed", "Failed", "Expired", "Aborted")))
    taskIds = fields.List(fields.String())
    isDuplicated = fields.Boolean()
    percentage = fields.Integer(validate=validate.Range(0, 100))
    links = fields.Nested(RoiLinks, allow_none=True)
    expirationTime = fields.String(allow_none=True)
    fileSize = fields.Integer(allow_none=True)
    recordCatalogId = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    roi = fields.Dict(allow_none=True)
    errorReason = fields.String(allow_none=True)


class TaskStatus(Schema):
    percentage = fields.Integer(required=True, validate=validate.Range(0, 100))
    status = fields.String(required=True, validate=validate.OneOf(("Pending", "In-Progress", "Completed", "Failed", "Expired", "Aborted")))


class PublicationFile(Schema):
    key = fields.String(required=True)
    size = fields.Integer(allow_none=True)
    md5 = fields.String(allow_none=True)
    sha256 = fields.String(allow_none=True)


class PublicationLinks(Schema):
    record = fields.String(allow_none=True)
    doi = fields.String(allow_none=True)
    concept_doi = fields.String(allow_none=True)


class Publication(Schema):
    """A Zenodo publication job: its status, and once done the record, its DOIs and files."""

    id = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "pending, running, published, unchanged (nothing new since the last version), failed or cancelled."})
    agency = fields.String(allow_none=True)
    export_job_id = fields.String(allow_none=True)
    record_id = fields.String(allow_none=True)
    doi = fields.String(allow_none=True)
    concept_doi = fields.String(allow_none=True)
    version = fields.String(allow_none=True)
    record_url = fields.String(allow_none=True)
    files = fields.List(fields.Nested(PublicationFile))
    links = fields.Nested(PublicationLinks)
    error = fields.String(allow_none=True, metadata={"description": "Zenodo's own message when it refused."})
    errorReason = fields.String(allow_none=True, metadata={"description": "The same as `error`, under the name the exports API and the webhooks use."})
    created_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    finished_at = fields.String(allow_none=True, metadata={"format": "date-time"})


class SearchHit(Schema):
    handle = fields.String(required=True)
    landingUrl = fields.String(allow_none=True)
    title = fields.String(allow_none=True, metadata={"description": "Only for a raid public in full."})
    summary = fields.String(allow_none=True)
    accessType = fields.String(required=True)
    publicInFull = fields.Boolean(required=True)
    agency = fields.String(allow_none=True)
    servicePoint = fields.Integer(allow_none=True)
    startDate = fields.String(allow_none=True)
    created = fields.String(allow_none=True)
    embargoExpiry = fields.String(allow_none=True)


class FacetCount(Schema):
    value = fields.String(required=True)
    label = fields.String(required=True)
    count = fields.Integer(required=True)


class SearchResults(Schema):
    """A page of public raids; a closed or embargoed raid is found only by its handle and dates."""

    q = fields.String(allow_none=True)
    page = fields.Integer(required=True)
    perPage = fields.Integer(required=True)
    sort = fields.String(required=True)
    total = fields.Integer(required=True)
    totalExact = fields.Boolean(required=True, metadata={"description": "False when there are more matches than `total` (SEARCH_COUNT_LIMIT)."})
    filters = fields.Dict()
    hits = fields.List(fields.Nested(SearchHit), required=True)
    facets = fields.Dict(keys=fields.String(), values=fields.List(fields.Nested(FacetCount)))


class ArchiveJob(Job):
    result = fields.Dict(required=True, allow_none=True, metadata={"description": "What the job archived, once it ends."})


class CreatedJob(Job):
    isDuplicated = fields.Boolean(required=True, metadata={"description": "True when an equal request's job (running, or finished and unexpired) answers this one."})


class JobList(Schema):
    items = fields.List(fields.Nested(Job), required=True)
    total = fields.Integer(required=True, validate=validate.Range(min=0))
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


class Storage(Schema):
    free = fields.Integer(required=True, allow_none=True, metadata={"description": "Free bytes (the quota applied); null when the backend cannot say."})
    total = fields.Integer(required=True, allow_none=True)
    size = fields.Integer(required=True, allow_none=True, metadata={"description": "The same as total, under the name MapColonies' clients read."})
    used = fields.Integer(required=True, metadata={"description": "Bytes of the files this service keeps."})
    reserved = fields.Integer(required=True, metadata={"description": "Bytes running jobs are still expected to write."})


class AuditEntry(Schema):
    id = fields.Integer(required=True)
    at = Timestamp(required=True)
    actor = fields.String(required=True)
    tokenId = fields.Integer(attribute="token_id", allow_none=True)
    role = fields.String(allow_none=True)
    action = fields.String(required=True)
    jobId = fields.String(attribute="job_id", allow_none=True)
    target = fields.String(allow_none=True)
    ip = fields.String(allow_none=True)
    detail = fields.Dict(allow_none=True)


class AuditList(Schema):
    items = fields.List(fields.Nested(AuditEntry), required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


class ResourceRecord(Schema):
    """A resource, its archival record (CKAN archiver's fields) and its stored versions."""

    resource = fields.Dict(required=True)
    archival = fields.Dict(required=True, allow_none=True)
    versions = fields.List(fields.Dict())


class BrokenLinks(Schema):
    """The broken-links report, per organization and dataset."""

    generated_at = fields.String(required=True, metadata={"format": "date-time"})
    totals = fields.Dict(required=True)
    organizations = fields.List(fields.Dict(), required=True)


# -- collections (exporter.collections) ------------------------------------------------------------


class CollectionProjectRequest(Strict):
    """A citizen-science project whose collection Exporter polls, converts and, once approved, publishes for Zooniverse."""

    name = Text(63, required=True, metadata={"description": "Lower-case letters, digits and '-'; it names the project's public folder."})
    source = Text(1024, required=True, printable=True, metadata={"description": "The collection: a folder under EXPORTER_COLLECTIONS_SOURCE_ROOTS or s3://bucket/prefix."})
    ownerEmail = Text(320, required=True, printable=True, metadata={"description": "The owner, told of every step by e-mail."})
    ownerName = Text(200, printable=True)
    zooniverseProject = Text(18, metadata={"description": "The Zooniverse project id batches are imported into."})
    subjectSet = Text(18, metadata={"description": "The subject set id; default: one is made at the first import."})
    callbackURL = HttpUrl(metadata={"description": "A URL told of every step by signed webhook."})


class DecisionRequest(Strict):
    note = Text(4000, printable=True, metadata={"description": "Kept with the decision and sent to the owner."})


class DeclineRequest(Strict):
    reason = Text(4000, required=True, printable=True, metadata={"description": "Why; the owner is told."})


class BatchQuery(Query):
    project = Text(63, metadata={"description": "Only this project's batches."})
    state = Choice(("retrieving", "converting", "awaiting_approval", "approved", "declined", "expired", "publishing", "published", "imported", "failed"))


class CollectionOwner(Schema):
    name = fields.String(allow_none=True)
    email = fields.String(required=True)


class CollectionGrant(Schema):
    prefix = fields.String(allow_none=True, metadata={"description": "The grant token's first characters."})
    valid = fields.Boolean(required=True, metadata={"description": "False once revoked, or when the source changed since the grant."})
    revokedAt = fields.String(allow_none=True, metadata={"format": "date-time"})


class BatchCounts(Schema):
    files = fields.Integer()
    retrieved = fields.Integer()
    converted = fields.Integer()
    refused = fields.Integer()
    waiting = fields.Integer(metadata={"description": "Files left for a later batch by the cap."})
    cap = fields.Integer(metadata={"description": "The most files this batch could hold (100 until data rights are approved)."})


class BatchImport(Schema):
    state = fields.String(allow_none=True)
    id = fields.String(allow_none=True)
    manifestCount = fields.Integer(allow_none=True)
    importedCount = fields.Integer(allow_none=True)
    failedCount = fields.Integer(allow_none=True)


class CollectionFileView(Schema):
    id = fields.Integer(required=True)
    sourceName = fields.String(required=True)
    size = fields.Integer(allow_none=True)
    sha256 = fields.String(allow_none=True)
    externalId = fields.String(allow_none=True)
    objectId = fields.String(allow_none=True)
    converted = fields.Boolean()
    contentType = fields.String(allow_none=True)
    width = fields.Integer(allow_none=True)
    height = fields.Integer(allow_none=True)
    convertedSize = fields.Integer(allow_none=True)
    refusedReason = fields.String(allow_none=True)
    metadata = fields.Dict(keys=fields.String(), values=fields.String())


class RefusedFile(Schema):
    sourceName = fields.String(required=True)
    reason = fields.String(allow_none=True)


class Overlap(Schema):
    file = fields.String(required=True)
    project = fields.String(required=True)
    batch = fields.Integer(required=True)
    matchedBy = fields.String(required=True, metadata={"description": "sha256 or object_id"})
    objectId = fields.String(allow_none=True)


class Decision(Schema):
    action = fields.String(required=True)
    by = fields.String(required=True)
    at = fields.String(allow_none=True, metadata={"format": "date-time"})
    note = fields.String(allow_none=True)


class EmailState(Schema):
    event = fields.String(required=True)
    state = fields.String(required=True)
    attempts = fields.Integer()


class BatchQuarantine(Schema):
    originalsDeletedAt = fields.String(allow_none=True, metadata={"format": "date-time", "description": "When cleanup deleted the quarantined copies (COLLECTIONS_QUARANTINE_DAYS)."})
    convertedDeletedAt = fields.String(allow_none=True, metadata={"format": "date-time", "description": "When cleanup deleted the converted images in quarantine (a published batch keeps its public copies)."})


class CollectionBatch(Schema):
    """A batch: files one poll found, retrieved into quarantine and converted, approved or declined as one."""

    id = fields.Integer(required=True)
    project = fields.String(required=True)
    state = fields.String(required=True, metadata={"description": "retrieving, converting, awaiting_approval, approved, declined, expired, publishing, published, imported or failed."})
    jobId = fields.String(allow_none=True)
    publishJobId = fields.String(allow_none=True)
    importJobId = fields.String(allow_none=True)
    counts = fields.Nested(BatchCounts)
    approvalExpiresAt = fields.String(allow_none=True, metadata={"format": "date-time"})
    manifestURL = fields.String(allow_none=True, metadata={"description": "The public Zooniverse manifest, once published."})
    import_ = fields.Nested(BatchImport, data_key="import", attribute="import")
    error = fields.String(allow_none=True)
    createdAt = fields.String(allow_none=True, metadata={"format": "date-time"})
    quarantine = fields.Nested(BatchQuarantine)
    files = fields.List(fields.Nested(CollectionFileView))
    refusedFiles = fields.List(fields.Nested(RefusedFile))
    overlap = fields.List(fields.Nested(Overlap), metadata={"description": "Objects of this batch that other projects already published (by sha256 or object id); not shown to a grant token."})
    decisions = fields.List(fields.Nested(Decision))
    emails = fields.List(fields.Nested(EmailState))


class CollectionBatchList(Schema):
    batches = fields.List(fields.Nested(CollectionBatch), required=True)


class CollectionProject(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    owner = fields.Nested(CollectionOwner)
    source = fields.String(required=True)
    zooniverseProject = fields.String(allow_none=True)
    subjectSet = fields.String(allow_none=True)
    callbackURL = fields.String(allow_none=True)
    dataRightsApproved = fields.Boolean()
    status = fields.String(required=True)
    grant = fields.Nested(CollectionGrant)
    lastPolledAt = fields.String(allow_none=True, metadata={"format": "date-time"})
    lastPollError = fields.String(allow_none=True)
    createdAt = fields.String(allow_none=True, metadata={"format": "date-time"})
    batches = fields.List(fields.Nested(CollectionBatch))


class CreatedCollectionProject(CollectionProject):
    grantToken = fields.String(required=True, metadata={"description": "The grant to read the source: shown this once, only its hash is kept."})


class CollectionProjectList(Schema):
    projects = fields.List(fields.Nested(CollectionProject), required=True)


class PollAnswer(Schema):
    project = fields.String(required=True)
    found = fields.Integer(metadata={"description": "Files new since the last poll."})
    batch = fields.Integer(allow_none=True)
    job = fields.String(allow_none=True)
    taken = fields.Integer()
    waiting = fields.Integer()
    skipped = fields.String(allow_none=True, metadata={"description": "Why the source was not read (a revoked grant, a poll already running...)."})
