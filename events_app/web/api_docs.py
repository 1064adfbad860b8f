"""The API's documentation page (/schema, /schema/swagger): Swagger UI served from this app.

Litestar's Swagger plugin loads Swagger UI, its stylesheet and a favicon from a CDN and starts
it with an inline script holding the whole schema. Here the files come from the
`swagger-ui-bundle-v2` package under /static/swagger-ui/, and the page starts Swagger UI with a
script of our own (/static/api-docs.js) that fetches /schema/openapi.json: nothing is loaded
from another site, and the Content-Security-Policy needs no inline script.
"""

from __future__ import annotations

from html import escape
from typing import Any

from litestar import Request, get
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router

ASSETS = "/static/swagger-ui"

START_SCRIPT = """\
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/schema/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
  });
});
"""


class LocalSwaggerPlugin(SwaggerRenderPlugin):
    """Swagger UI from /static/swagger-ui/ and /static/api-docs.js; no inline script."""

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        title = escape(str(openapi_schema.get("info", {}).get("title", "API")))
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" type="image/png" href="{ASSETS}/favicon-32x32.png">
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script src="{ASSETS}/swagger-ui-standalone-preset.js"></script>
<script src="/static/api-docs.js"></script>
</body>
</html>
""".encode()


def operation_id(route_handler: Any, http_method: Any, path_components: list) -> str:
    """Operation ids a generated client reads well: the handler's name, after the resource it
    acts on unless the name says it already (`events_create`, `issues_release`,
    `list_subscribers`, `health`). They name the generated client's modules and functions."""
    name = route_handler.handler_name
    parts = [p for p in path_components if isinstance(p, str) and p]
    resource = parts[2] if len(parts) > 2 and parts[:2] == ["api", "v1"] else ""
    if not resource or resource.rstrip("s").split(".")[0] in name:
        return name
    return f"{resource}_{name}"


def tighten(openapi: Any) -> None:
    """Say in the document what the handlers do but Litestar (2.25) does not write: the bodies
    that refuse unknown fields (web/schemas.py: events, issues) have `additionalProperties:
    false`, and an optional body is not `required`."""
    from msgspec import Struct

    from . import schemas

    components = getattr(getattr(openapi, "components", None), "schemas", None) or {}
    for name, schema in components.items():
        model = getattr(schemas, name, None)
        if isinstance(model, type) and issubclass(model, Struct) and model.__struct_config__.forbid_unknown_fields:
            schema.additional_properties = False
    # A body that may be left out (`JSONBody[X | None] = None`) is not required.
    for item in (getattr(openapi, "paths", None) or {}).values():
        for method in ("post", "patch", "put"):
            operation = getattr(item, method, None)
            body = getattr(operation, "request_body", None)
            if body is None:
                continue
            for media in (body.content or {}).values():
                variants = getattr(media.schema, "one_of", None) or []
                if any(getattr(v, "type", None) == "null" for v in variants):
                    body.required = False


@get("/static/api-docs.js", media_type="text/javascript", include_in_schema=False)
async def start_script() -> str:
    return START_SCRIPT


def handlers() -> list:
    """The routes serving the page's files (registered by app.py)."""
    from swagger_ui_bundle import swagger_ui_path

    return [
        start_script,
        create_static_files_router(path=ASSETS, directories=[swagger_ui_path], include_in_schema=False),
    ]
