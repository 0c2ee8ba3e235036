"""How the schemas in `schemas.py` become request validation and the OpenAPI document.

`ApiBlueprint` is flask-smorest's blueprint fitted to this API's contract:
- requests are read by `Parser` (webargs): the body as a JSON object whatever its content type,
  every query string by the view's query schema (none declared: no parameter accepted), and any
  problem is an `InvalidRequest` naming the field (400, rendered by errors.py);
- path ids use the `id` converter (1-64 letters, digits, '-', '_'; anything else is a 404);
- every operation documents its 400, is tagged by its module and named after its view;
- `fails(...)` documents error answers ({"error", "field"}), `require` in auth.py adds 401/403;
- registering it on an app builds the document from every route of the blueprint
  (`document(app)`), with paths relative to the `/api/v1` server.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from flask import Flask
from flask_smorest import Api, Blueprint
from flask_smorest.spec.plugins import FlaskPlugin
from marshmallow import Schema, fields
from marshmallow.exceptions import SCHEMA
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import MultiDict
from werkzeug.routing import BaseConverter

from exporter import __version__
from exporter.errors import InvalidRequest

from .schemas import UNKNOWN, Error, Query

MAX_QUERY_VALUE = 4096
ERRORS: dict[int, str] = {
    400: "Malformed JSON, an unknown or missing field or query parameter, or a bad value; `field` names it.",
    401: "No API token, or one that is unknown or revoked.",
    403: "The token's role may not do this.",
    404: "No such job, or one the caller may not see.",
    413: "The body is larger than API_MAX_BODY_BYTES.",
    429: "Too many jobs requested with this token; retry after Retry-After seconds.",
}
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}}},
    429: {"Retry-After": {"schema": {"type": "integer", "minimum": 1}, "required": True}},
}
BEARER = {"bearerAuth": []}
GRANT = {"grantToken": []}
INFO = {
    "description": "Exports of registries and archives of open-data resources as jobs: request, watch, download. "
    "Errors are JSON `{error, field}`. Send `Authorization: Bearer <token>` (`exporter tokens create`)."
}


class IdConverter(BaseConverter):
    """A job or resource id in a path; anything else matches no route (a JSON 404)."""

    regex = "[A-Za-z0-9_-]{1,64}"
    part_isolating = True

    @classmethod
    def openapi(cls, converter=None) -> dict:
        return {"type": "string", "pattern": f"^{cls.regex}$"}


class Parser(FlaskParser):
    """webargs reading requests the API's way; every problem is an InvalidRequest naming the field."""

    def __init__(self):
        super().__init__(unknown=None)  # each schema's own `unknown` (RAISE), query strings included

    def load_json(self, req, schema):
        raw = req.get_data(cache=True)  # 413 comes from Werkzeug here, before anything is parsed
        if not raw.strip():
            raise InvalidRequest("the request body must be a JSON object", field="body")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"the request body is not valid JSON: {exc}", field="body") from None
        except RecursionError:  # json gives up on deep nesting this way, not with a ValueError
            raise InvalidRequest("the request body is nested too deeply to be read", field="body") from None
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object", field="body")
        return body

    def load_querystring(self, req, schema):
        by_name = {field.data_key or name: field for name, field in schema.fields.items()}
        args = MultiDict()
        for name, value in req.args.items(multi=True):
            if "\x00" in value or len(value) > MAX_QUERY_VALUE:
                raise InvalidRequest(f"query parameter {name[:50]!r} holds a NUL character or is too long", field=name[:50])
            if not (value == "" and getattr(by_name.get(name), "empty_is_missing", False)):
                args.add(name, value)
        return self._makeproxy(args, schema)

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        [(location, messages)] = error.messages.items()
        problems = sorted(_flatten(messages), key=lambda problem: problem[1] != UNKNOWN)  # unknown names first
        path, message = problems[0]
        raise InvalidRequest(_sentence(location, schema, path, message), field=path[:50] or None)


def _flatten(messages: Any, path: str = ""):
    """marshmallow's nested messages as (path, message): `scope.agency`, `urls[3]`."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key == SCHEMA:
                yield from _flatten(value, path)
            elif isinstance(key, int):
                yield from _flatten(value, f"{path}[{key}]")
            else:
                yield from _flatten(value, f"{path}.{key}" if path else str(key))
    elif isinstance(messages, list):
        for value in messages:
            yield from _flatten(value, path)
    else:
        yield path, str(messages)


def _sentence(location: str, schema: Schema, path: str, message: str) -> str:
    if message == UNKNOWN:
        parent, _, name = path.rpartition(".")
        known = ", ".join(_names(schema, parent)) or "none"
        if location == "query":
            return f"unknown query parameter {name[:50]!r}; this endpoint takes: {known}"
        return f"unknown field {path[:50]!r}; allowed: {known}"
    return message if not path or path in message else f"{path} {message}"


def _names(schema: Schema, path: str) -> list[str]:
    """The field names a (nested) schema accepts at `path`."""
    for part in filter(None, path.split(".")):
        field = next((f for n, f in schema.fields.items() if (f.data_key or n) == part), None)
        if not isinstance(field, fields.Nested):
            return []
        schema = field.schema
    return sorted(f.data_key or n for n, f in schema.fields.items() if not f.dump_only)


def _declares(view, location: str) -> bool:
    parameters = getattr(view, "_apidoc", {}).get("arguments", {}).get("parameters", [])
    return any(p.get("in") == location for p in parameters)


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.capitalize() for word in rest)


class ApiBlueprint(Blueprint):
    ARGUMENTS_PARSER = Parser()

    def arguments(self, schema, *, location: str = "json", **kwargs):
        """Validate `location` by `schema` (400 naming the field); a JSON body may also be a 413."""
        decorate = super().arguments(schema, location=location, error_status_code=400, **kwargs)
        if location != "json":
            return decorate
        return lambda view: self.fails(413)(decorate(view))

    def fails(self, *answers: int | tuple[int, str]):
        """Document error answers: a status (its usual description) or (status, description)."""

        def decorate(view):
            for answer in answers:
                status, description = answer if isinstance(answer, tuple) else (answer, ERRORS[answer])
                view = self.alt_response(status, schema=Error, description=description, headers=ERROR_HEADERS.get(status))(view)
            return view

        return decorate

    def add_url_rule(self, rule, endpoint=None, view_func=None, provide_automatic_options=None, **options):
        view = view_func
        if not _declares(view, "query"):
            view = self._no_query(view)
        view = self.doc(operationId=_camel(view.__name__))(self.fails(400)(view))
        options["tags"] = options.get("tags") or [view.__module__.rsplit(".", 1)[-1]]
        return super().add_url_rule(rule, endpoint, view, provide_automatic_options, **options)

    def _no_query(self, view):
        """A view that declares no query schema takes no query parameter."""

        @functools.wraps(view)
        def refuse(*args, **kwargs):
            self.ARGUMENTS_PARSER.parse(Query(), location="query")
            return view(*args, **kwargs)

        return refuse

    def register(self, app: Flask, options: dict) -> None:
        first = options.get("name", self.name) not in app.blueprints
        app.url_map.converters.setdefault("id", IdConverter)
        super().register(app, options)
        if first:
            app.extensions["exporter.api"] = _document(app, self)


class _Api(Api):
    """flask-smorest's Api as a document builder only: errors.py renders every error, and the
    blueprint serves the document itself."""

    ERROR_SCHEMA = Error
    DEFAULT_ERROR_RESPONSE_NAME = None  # each operation documents the errors it gives

    def _register_error_handlers(self):
        pass

    def _register_doc_blueprint(self):
        pass

    def _register_pagination_header(self):
        pass  # no pagination headers here (and no unused PaginationMetadata schema)

    def _register_etag_headers(self):
        pass


class _Paths(FlaskPlugin):
    """Paths relative to the blueprint's prefix, which is the document's server."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def path_helper(self, rule, operations, parameters, **kwargs):
        return super().path_helper(rule, operations, parameters, **kwargs).removeprefix(self.prefix)


def _field_schema(converter, field, **kwargs) -> dict:
    """A field that knows its own JSON schema (`openapi()`, e.g. schemas.Identifier) gives it."""
    return field.openapi() if hasattr(field, "openapi") else {}


def _document(app: Flask, blueprint: ApiBlueprint) -> Api:
    spec_kwargs = {"flask_plugin": _Paths(blueprint.url_prefix), "info": INFO, "security": [BEARER]}
    api = _Api(app, spec_kwargs={"title": "Exporter API", "version": __version__, "openapi_version": "3.0.3", **spec_kwargs})
    api.register_converter(IdConverter, IdConverter.openapi)
    api.ma_plugin.converter.add_attribute_function(_field_schema)
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "description": "An API token from `exporter tokens create`."})
    api.spec.components.security_scheme("grantToken", {
        "type": "http", "scheme": "bearer", "bearerFormat": "cg_...",
        "description": "A collection project's grant token (`cg_...`), given once when the project is added and held by its owner: as a bearer token it reads "
        "that project and its batches and revokes itself, nothing else (any other project is a 404, any other operation a 403).",
    })
    blueprint.register_views_in_doc(api, app, api.spec, name=blueprint.name, parameters=None)
    return api


def document(app: Flask, server_url: str = "") -> dict[str, Any]:
    """The OpenAPI document of the app's API, its server at `server_url` + the blueprint's prefix."""
    api = app.extensions["exporter.api"]
    doc = api.spec.to_dict()
    for operations in doc["paths"].values():
        for operation in operations.values():
            if "responses" in operation:
                operation["responses"] = dict(sorted(operation["responses"].items()))
    return {**doc, "servers": [{"url": f"{server_url}{api.flask_plugin.prefix}"}]}
