"""The OpenAPI document describes exactly the routes the server registers."""
from __future__ import annotations

from app.web.openapi import SPEC
from app.settings import Settings
from app.web.server import ROUTES, create_web_app


def test_every_route_is_documented_with_its_method() -> None:
    documented = {(method.upper(), path) for path, ops in SPEC["paths"].items() for method in ops}
    app = create_web_app(Settings.from_env({}))
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and not route.resource.canonical.startswith("/static")
    }
    assert {(method, path) for method, path, _ in ROUTES} <= served
    assert served == documented


def test_every_reference_resolves() -> None:
    schemas = SPEC["components"]["schemas"]

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if "$ref" in node else []
            return own + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    found = refs(SPEC)
    assert found
    for ref in found:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
