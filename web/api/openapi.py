"""The OpenAPI 3 document of /api/v1, written by hand next to the views.

tests/test_api_openapi.py checks that every route of the blueprint is here and every path
here is a route; tests/test_openapi_schemathesis.py checks the answers against it.
"""

from __future__ import annotations

import copy
from typing import Any

from exporter import __version__

JOB_ID = {"name": "jobId", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}, "description": "The job id returned when the job was requested."}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _err(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return _json(_ref("Error"), description, headers)


UNAUTHORIZED = _err("No API token, or one that is unknown or revoked.", {"WWW-Authenticate": {"schema": {"type": "string"}}})
FORBIDDEN = _err("The token's role may not do this.")
BAD = _err("Malformed JSON, an unknown or missing field, or a bad value; `field` names it.")
TOO_LARGE = _err("The body is larger than API_MAX_BODY_BYTES.")
RATE_LIMITED = _err("Too many jobs requested with this token; retry after Retry-After seconds.", {"Retry-After": {"schema": {"type": "integer", "minimum": 1}, "required": True}})
NOT_FOUND = _err("No such job, or one the caller may not see.")

NULLABLE_STRING = {"type": "string", "nullable": True}
IDENTIFIER = {"oneOf": [{"type": "string", "minLength": 1, "maxLength": 200}, {"type": "integer", "minimum": 0}]}
CALLBACKS = {
    "type": "array",
    "maxItems": 20,
    "items": {"type": "string", "maxLength": 2048},
    "description": "URLs told (POST, signed with HMAC-SHA256) when the job ends. Loopback and private addresses are refused unless allowed.",
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "field"],
        "properties": {"error": {"type": "string"}, "field": {**NULLABLE_STRING, "description": "The offending field, when there is one."}},
    },
    "Links": {
        "type": "object",
        "nullable": True,
        "description": "Expiring download links (to the audited download endpoint) while the job's files exist.",
        "required": ["dataURI", "manifestURI"],
        "properties": {"dataURI": NULLABLE_STRING, "manifestURI": NULLABLE_STRING},
    },
    "Job": {
        "type": "object",
        "required": ["jobId", "kind", "status", "percentage", "description", "links", "fileSize", "expirationTime", "errorReason", "createdAt", "finishedAt"],
        "properties": {
            "jobId": {"type": "string"},
            "kind": {"type": "string", "description": "public or private for exports; urls or portal for archives."},
            "status": {"type": "string", "enum": ["pending", "running", "completed", "failed", "cancelled", "expired"]},
            "percentage": {"type": "integer", "minimum": 0, "maximum": 100},
            "description": NULLABLE_STRING,
            "mode": {"type": "string", "nullable": True, "enum": ["full", "incremental", None]},
            "format": {"type": "string", "nullable": True, "enum": ["zip", "tar.gz", None]},
            "links": _ref("Links"),
            "fileSize": {"type": "integer", "nullable": True, "minimum": 0},
            "expirationTime": {"type": "string", "format": "date-time", "nullable": True},
            "errorReason": NULLABLE_STRING,
            "createdAt": {"type": "string", "format": "date-time"},
            "finishedAt": {"type": "string", "format": "date-time", "nullable": True},
            "result": {"type": "object", "nullable": True, "additionalProperties": True},
        },
    },
    "CreatedJob": {
        "allOf": [
            _ref("Job"),
            {
                "type": "object",
                "required": ["isDuplicated"],
                "properties": {"isDuplicated": {"type": "boolean", "description": "True when an equal request's job (running, or finished and unexpired) answers this one."}},
            },
        ]
    },
    "JobList": {
        "type": "object",
        "required": ["items", "total", "limit", "offset"],
        "properties": {
            "items": {"type": "array", "items": _ref("Job")},
            "total": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
        },
    },
    "ExportRequest": {
        "type": "object",
        "example": {"kind": "public", "scope": {"agency": "https://ror.org/038sjwq14"}, "mode": "full", "format": "zip", "description": "nightly"},
        "required": ["kind", "scope"],
        "additionalProperties": False,
        "properties": {
            "kind": {"type": "string", "enum": ["public", "private"]},
            "scope": {
                "type": "object",
                "description": "{agency: ROR} for a public export; {servicePoint: id} for a private one.",
                "minProperties": 1,
                "maxProperties": 1,
                "additionalProperties": False,
                "properties": {"agency": IDENTIFIER, "servicePoint": IDENTIFIER},
            },
            "mode": {"type": "string", "enum": ["full", "incremental"], "default": "full"},
            "format": {"type": "string", "enum": ["zip", "tar.gz"], "default": "zip"},
            "description": {"type": "string", "maxLength": 1000},
            "callbackURLs": CALLBACKS,
        },
    },
    "ArchiveRequest": {
        "type": "object",
        "example": {"urls": ["https://data.example.org/files/table.csv"], "description": "one table"},
        "description": "Either urls (archive each) or portal (sweep a registered CKAN portal).",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "urls": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {"type": "string", "maxLength": 2048}},
            "portal": IDENTIFIER,
            "description": {"type": "string", "maxLength": 1000},
            "callbackURLs": CALLBACKS,
        },
    },
    "Storage": {
        "type": "object",
        "required": ["free", "total", "used", "reserved"],
        "properties": {
            "free": {"type": "integer", "nullable": True, "description": "Free bytes (the quota applied); null when the backend cannot say."},
            "total": {"type": "integer", "nullable": True},
            "used": {"type": "integer", "description": "Bytes of the files this service keeps."},
            "reserved": {"type": "integer", "description": "Bytes running jobs are still expected to write."},
        },
    },
    "AuditEntry": {
        "type": "object",
        "required": ["id", "at", "actor", "action"],
        "properties": {
            "id": {"type": "integer"},
            "at": {"type": "string", "format": "date-time"},
            "actor": {"type": "string"},
            "tokenId": {"type": "integer", "nullable": True},
            "role": NULLABLE_STRING,
            "action": {"type": "string"},
            "jobId": NULLABLE_STRING,
            "target": NULLABLE_STRING,
            "ip": NULLABLE_STRING,
            "detail": {"type": "object", "nullable": True, "additionalProperties": True},
        },
    },
    "AuditList": {
        "type": "object",
        "required": ["items", "limit", "offset"],
        "properties": {"items": {"type": "array", "items": _ref("AuditEntry")}, "limit": {"type": "integer"}, "offset": {"type": "integer"}},
    },
    "ResourceRecord": {
        "type": "object",
        "description": "A resource, its archival record (CKAN archiver's fields) and its stored versions.",
        "required": ["resource", "archival"],
        "additionalProperties": True,
        "properties": {
            "resource": {"type": "object", "additionalProperties": True},
            "archival": {"type": "object", "nullable": True, "additionalProperties": True},
            "versions": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
        },
    },
    "BrokenLinks": {"type": "object", "additionalProperties": True, "description": "The broken-links report (per organization and dataset)."},
}

SECURED = [{"bearerAuth": []}]
JOB_RESPONSE = _json(_ref("Job"), "The job.")


def _paths() -> dict[str, Any]:
    limit = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20}}
    offset = {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 1000000000, "default": 0}}
    return {
        "/exports": {
            "post": {
                "operationId": "createExport",
                "summary": "Request an export (operator; a service point only its own private one).",
                "description": "An equal request (same kind and canonical parameters, whatever the order or defaults) "
                "joins a pending/running job, or gets a finished unexpired one at once with its expiry pushed forward; "
                "then `isDuplicated` is true and the answer is 200.",
                "security": SECURED,
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ExportRequest")}}},
                "responses": {
                    "201": _json(_ref("CreatedJob"), "A new job.", {"Location": {"schema": {"type": "string"}}}),
                    "200": _json(_ref("CreatedJob"), "An equal job answers this request (isDuplicated).", {"Location": {"schema": {"type": "string"}}}),
                    "400": BAD,
                    "401": UNAUTHORIZED,
                    "403": FORBIDDEN,
                    "404": _err("No such registration agency or service point."),
                    "413": TOO_LARGE,
                    "429": RATE_LIMITED,
                    "507": _err("The export's estimated size exceeds the free storage minus what running jobs still write."),
                },
            },
            "get": {
                "operationId": "listExports",
                "summary": "Exports the caller may see, newest first.",
                "security": SECURED,
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["pending", "running", "completed", "failed", "cancelled", "expired"]}},
                    {"name": "kind", "in": "query", "schema": {"type": "string", "enum": ["public", "private"]}},
                    limit,
                    offset,
                ],
                "responses": {"200": _json(_ref("JobList"), "A page of exports."), "400": BAD, "401": UNAUTHORIZED},
            },
        },
        "/exports/{jobId}": {
            "get": {
                "operationId": "getExport",
                "summary": "An export's status, progress, links, size, expiry and error.",
                "security": SECURED,
                "parameters": [JOB_ID],
                "responses": {"200": JOB_RESPONSE, "400": BAD, "401": UNAUTHORIZED, "404": NOT_FOUND},
            }
        },
        "/exports/{jobId}/cancel": {
            "post": {
                "operationId": "cancelExport",
                "summary": "Cancel a pending or running export.",
                "security": SECURED,
                "parameters": [JOB_ID],
                "responses": {"200": JOB_RESPONSE, "400": BAD, "401": UNAUTHORIZED, "403": FORBIDDEN, "404": NOT_FOUND, "409": _err("The export has already ended.")},
            }
        },
        "/exports/{jobId}/download": {
            "get": {
                "operationId": "downloadExport",
                "summary": "Redirect to an expiring URL of the export's data (or manifest).",
                "description": "Public exports need no token; a private one needs the operator or the owning service point's "
                "token, or a signed link from the export's `links`. Every download is written to the audit log.",
                "security": [{}, {"bearerAuth": []}],
                "parameters": [
                    JOB_ID,
                    {"name": "artifact", "in": "query", "schema": {"type": "string", "maxLength": 100, "default": "data"}, "description": "data, manifest, or an artifact's name."},
                    {"name": "expires", "in": "query", "schema": {"type": "integer"}},
                    {"name": "by", "in": "query", "schema": {"type": "integer"}},
                    {"name": "signature", "in": "query", "schema": {"type": "string", "maxLength": 128}},
                ],
                "responses": {
                    "302": {"description": "To an expiring download URL.", "headers": {"Location": {"schema": {"type": "string"}, "required": True}}},
                    "400": BAD,
                    "401": UNAUTHORIZED,
                    "403": _err("The signed link is not valid."),
                    "404": NOT_FOUND,
                    "409": _err("The export is not finished."),
                    "410": _err("The export (or the link) has expired."),
                },
            }
        },
        "/archives": {
            "post": {
                "operationId": "createArchive",
                "summary": "Archive a list of URLs, or sweep a registered portal (operator).",
                "security": SECURED,
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ArchiveRequest")}}},
                "responses": {
                    "201": _json(_ref("CreatedJob"), "A new job.", {"Location": {"schema": {"type": "string"}}}),
                    "200": _json(_ref("CreatedJob"), "An equal job answers this request (isDuplicated).", {"Location": {"schema": {"type": "string"}}}),
                    "400": BAD,
                    "401": UNAUTHORIZED,
                    "403": FORBIDDEN,
                    "404": _err("No such portal."),
                    "413": TOO_LARGE,
                    "429": RATE_LIMITED,
                },
            }
        },
        "/archives/{jobId}": {
            "get": {
                "operationId": "getArchive",
                "summary": "An archive or sweep job's status, progress and result.",
                "security": SECURED,
                "parameters": [JOB_ID],
                "responses": {"200": JOB_RESPONSE, "400": BAD, "401": UNAUTHORIZED, "404": NOT_FOUND},
            }
        },
        "/resources/{resourceId}": {
            "get": {
                "operationId": "getResource",
                "summary": "A resource's archival record and stored versions.",
                "security": SECURED,
                "parameters": [{"name": "resourceId", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}],
                "responses": {"200": _json(_ref("ResourceRecord"), "The record."), "400": BAD, "401": UNAUTHORIZED, "403": FORBIDDEN, "404": _err("No such resource.")},
            }
        },
        "/resources/{resourceId}/download": {
            "get": {
                "operationId": "downloadResource",
                "summary": "Redirect to an expiring URL of the resource's latest stored copy (its cache URL; no token needed).",
                "security": [{}, {"bearerAuth": []}],
                "parameters": [{"name": "resourceId", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}],
                "responses": {
                    "302": {"description": "To an expiring download URL.", "headers": {"Location": {"schema": {"type": "string"}, "required": True}}},
                    "400": BAD,
                    "401": UNAUTHORIZED,
                    "404": _err("No such resource, or no stored copy."),
                },
            }
        },
        "/reports/broken-links": {
            "get": {
                "operationId": "brokenLinks",
                "summary": "Broken links by organization and dataset, as JSON or CSV.",
                "security": SECURED,
                "parameters": [
                    {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"}},
                    {"name": "organization", "in": "query", "schema": {"type": "string", "maxLength": 200}},
                ],
                "responses": {
                    "200": {"description": "The report.", "content": {"application/json": {"schema": _ref("BrokenLinks")}, "text/csv": {"schema": {"type": "string"}}}},
                    "400": BAD,
                    "401": UNAUTHORIZED,
                    "403": FORBIDDEN,
                    "404": _err("No such organization, or no archiver in this installation."),
                },
            }
        },
        "/storage": {
            "get": {
                "operationId": "getStorage",
                "summary": "Free and total bytes of the storage in use.",
                "security": SECURED,
                "responses": {"200": _json(_ref("Storage"), "Storage use."), "401": UNAUTHORIZED},
            }
        },
        "/audit": {
            "get": {
                "operationId": "listAudit",
                "summary": "The audit log: job creations, downloads, cancels (operator).",
                "security": SECURED,
                "parameters": [
                    {"name": "jobId", "in": "query", "schema": {"type": "string", "maxLength": 64}},
                    {"name": "action", "in": "query", "schema": {"type": "string", "maxLength": 64}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                    offset,
                ],
                "responses": {"200": _json(_ref("AuditList"), "Newest first."), "400": BAD, "401": UNAUTHORIZED, "403": FORBIDDEN},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics: jobs by kind and status, durations, queue depths, storage (also at /metrics).",
                "security": [],
                "responses": {"200": {"description": "Prometheus text format.", "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
            }
        },
    }


def document(server_url: str = "") -> dict[str, Any]:
    """The OpenAPI document, its server pointing at PUBLIC_URL."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Exporter API",
            "version": __version__,
            "description": "Exports of registries and archives of open-data resources as jobs: request, watch, download. "
            "Errors are JSON `{error, field}`. Send `Authorization: Bearer <token>` (`exporter tokens create`).",
        },
        "servers": [{"url": f"{server_url}/api/v1"}],
        "security": SECURED,
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API token from `exporter tokens create`."}},
            "schemas": copy.deepcopy(SCHEMAS),
        },
    }
