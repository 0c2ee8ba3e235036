"""Flask front end: app factory, health, downloads, operator pages and the JSON API."""

from __future__ import annotations

import importlib

from flask import Flask

from exporter.config import require_production_secret
from exporter.context import Context, get_context

# Blueprints that join the app, as (module, attribute) pairs.
BLUEPRINTS: list[tuple[str, str]] = [
    ("web.core", "bp"),
    ("web.pages", "bp"),
    ("web.collections_pages", "bp"),
    ("web.api", "bp"),
    ("web.api", "root_bp"),
    ("web.search", "bp"),
    ("web.oai", "bp"),
]


def create_app(ctx: Context | None = None) -> Flask:
    """Build the web app around a context (default: the process context from EXPORTER_*)."""
    if ctx is None:
        require_production_secret()
        ctx = get_context()
    if ctx.enqueue.__name__ == "_no_dispatcher":
        from workers.app import send

        ctx.enqueue = send
    app = Flask(__name__)
    app.config["EXPORTER"] = ctx
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.json.sort_keys = False
    for module, attr in BLUEPRINTS:
        app.register_blueprint(getattr(importlib.import_module(module), attr))
    return app
