"""The /docs page: Swagger UI when its scripts can load (they come from a CDN), and always a plain
HTML list of every route and its fields, written from the OpenAPI schema, so the docs work offline.
"""

from __future__ import annotations

import html
import json
from typing import Any

SWAGGER = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"


def docs_page(schema: dict[str, Any], openapi_url: str) -> str:
    sections = []
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            summary = html.escape(op.get("summary") or "")
            description = html.escape((op.get("description") or "").strip()).replace("\n", "<br>")
            fields = _fields(schema, op)
            sections.append(
                f"<section><h3><code>{method.upper()} {html.escape(path)}</code> {summary}</h3>"
                f"<p>{description}</p>{fields}</section>"
            )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Kubin REST API</title>
<link rel="stylesheet" href="{SWAGGER}/swagger-ui.css">
<style>body{{font-family:sans-serif;margin:1em 2em}} td,th{{text-align:left;padding:2px 8px;vertical-align:top}}
section{{border-top:1px solid #ccc}} h3 code{{font-size:1em}}</style></head>
<body><div id="swagger-ui"></div>
<div id="plain"><h1>Kubin REST API</h1>
<p>{html.escape(schema.get("info", {}).get("description", ""))} Schema: <a href="{openapi_url}">{openapi_url}</a>.</p>
{"".join(sections)}</div>
<script src="{SWAGGER}/swagger-ui-bundle.js"></script>
<script>
if (window.SwaggerUIBundle) {{
  document.getElementById("plain").remove();
  SwaggerUIBundle({{url: {json.dumps(openapi_url)}, dom_id: "#swagger-ui"}});
}}
</script></body></html>"""


def _fields(schema: dict[str, Any], op: dict[str, Any]) -> str:
    rows = []
    for param in op.get("parameters", []):
        rows.append((param["name"], f"{param.get('in', '')} parameter", param.get("description", "")))
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    ref = body.get("$ref", "")
    model = schema.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[-1], {}) if ref else {}
    for name, prop in model.get("properties", {}).items():
        rows.append((name, _type(prop), prop.get("description", "")))
    if not rows:
        return ""
    cells = "".join(
        f"<tr><td><code>{html.escape(n)}</code></td><td>{html.escape(t)}</td><td>{html.escape(d)}</td></tr>"
        for n, t, d in rows
    )
    return f"<table><tr><th>field</th><th>type</th><th>about</th></tr>{cells}</table>"


def _type(prop: dict[str, Any]) -> str:
    if "anyOf" in prop:
        return " | ".join(_type(p) for p in prop["anyOf"] if p.get("type") != "null")
    if prop.get("type") == "array":
        return f"list of {_type(prop.get('items', {}))}"
    return str(prop.get("type", "object"))
