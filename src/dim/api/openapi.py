"""The OpenAPI 3.1 document of the REST API, made from :data:`dim.api.routes.ROUTES`."""

from __future__ import annotations

from dim import __version__
from dim.api.routes import PREFIX, ROUTES, Route

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What the CLI would say, on one line."},
        "hint": {"type": "string"},
    },
}
ANSWERS = {
    "400": "Bad input: an unknown node or image, a malformed value.",
    "401": "No token, or not a token of this service.",
    "403": "The token's role may not do this.",
    "409": "Another dim command is changing the same image.",
    "500": "The operation failed.",
    "503": "The state DB cannot be reached.",
}


def document() -> dict:
    paths: dict[str, dict] = {}
    for route in ROUTES:
        paths.setdefault(PREFIX + route.path, {})[route.method.lower()] = _operation(route)
    paths[PREFIX + "/openapi.json"] = {
        "get": {
            "summary": "This document.",
            "operationId": "openapi",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1", "content": _json({})}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dim",
            "version": __version__,
            "description": "Distributed image management for diskless Linux clusters. "
            "Bearer tokens from `dim api token add NAME --role reader|admin`.",
        },
        "servers": [{"url": "/"}],
        "security": [{"token": []}],
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR},
        },
        "paths": paths,
    }


def _operation(route: Route) -> dict:
    operation: dict = {
        "summary": route.summary,
        "operationId": route.handler.__name__,
        "tags": [route.tag],
        "description": f"Role: {route.role}.",
        "parameters": [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required,
                "description": p.description,
                "schema": {"type": p.kind},
            }
            for p in route.parameters
        ],
        "responses": {
            "200": {"description": "Done.", "content": _json({"type": "object"})},
            **{
                code: {
                    "description": text,
                    "content": _json({"$ref": "#/components/schemas/Error"}),
                }
                for code, text in ANSWERS.items()
            },
        },
    }
    if route.body:
        operation["requestBody"] = {
            "required": True,
            "content": _json(
                {
                    "type": "object",
                    "required": [m.name for m in route.body if m.required],
                    "properties": {m.name: {"type": m.kind} for m in route.body},
                }
            ),
        }
    return operation


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}
