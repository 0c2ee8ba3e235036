"""Interactive API docs at /api/v1/docs: Swagger UI from the swagger-ui-bundle package, no CDN."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, render_template_string, send_from_directory, url_for
from swagger_ui_bundle import swagger_ui_path

docs_bp = Blueprint("docs", __name__, url_prefix="/docs")

# The files the page below loads; nothing else in the package is served.
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png", "favicon-16x16.png"})

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Exporter API</title>
  <link rel="stylesheet" href="{{ asset('swagger-ui.css') }}">
  <link rel="icon" type="image/png" href="{{ asset('favicon-32x32.png') }}" sizes="32x32">
  <link rel="icon" type="image/png" href="{{ asset('favicon-16x16.png') }}" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{{ asset('swagger-ui-bundle.js') }}"></script>
  <script src="{{ asset('swagger-ui-standalone-preset.js') }}"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: {{ spec_url | tojson }},
      dom_id: "#swagger-ui",
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout",
      validatorUrl: null
    });
  </script>
</body>
</html>
"""


@docs_bp.get("")
def page() -> str:
    return render_template_string(PAGE, spec_url=url_for("api.openapi"), asset=lambda name: url_for("api.docs.asset", name=name))


@docs_bp.get("/assets/<name>")
def asset(name: str) -> Response:
    if name not in ASSETS:
        abort(404)
    return send_from_directory(Path(swagger_ui_path), name, max_age=86400)
