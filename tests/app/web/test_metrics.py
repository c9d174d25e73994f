"""The per-route instrumentation: counted under the route template, errors as JSON."""
from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from app.web.metrics import instrumented, set_served_version

ROUTE = "/test/things/{thing_id}"


def count(status: str) -> float:
    value = REGISTRY.get_sample_value(
        "cinerec_http_requests_total", {"route": ROUTE, "method": "GET", "status": status}
    )
    return value or 0.0


async def test_unexpected_error_is_a_counted_json_500_and_bad_path_ids_are_not_labels() -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.match_info["thing_id"] == "boom":
            raise RuntimeError("bug")
        if request.match_info["thing_id"] == "missing":
            raise web.HTTPNotFound()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get(ROUTE, instrumented(ROUTE, handler))
    before = {s: count(s) for s in ("200", "404", "500")}
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/test/things/1")).status == 200
        response = await client.get("/test/things/boom")
        assert response.status == 500 and await response.json() == {"error": "internal error"}
        assert (await client.get("/test/things/missing")).status == 404
    assert {s: count(s) - before[s] for s in before} == {"200": 1, "404": 1, "500": 1}


def test_served_version_gauge_has_one_series() -> None:
    set_served_version("a")
    set_served_version("b")
    assert REGISTRY.get_sample_value("cinerec_served_model_info", {"version": "b"}) == 1
    assert REGISTRY.get_sample_value("cinerec_served_model_info", {"version": "a"}) is None
    set_served_version(None)
    assert REGISTRY.get_sample_value("cinerec_served_model_info", {"version": "b"}) is None


def test_experiment_gauge_has_at_most_one_series() -> None:
    from app.experiments.model import Experiment
    from app.web.metrics import set_experiment

    first, second = Experiment("e1", control="a", challenger="b"), Experiment("e2", control="a", challenger="c", share=0.25)
    set_experiment(first)
    set_experiment(second)
    labels = {"experiment": "e2", "control": "a", "challenger": "c", "share": "0.25"}
    assert REGISTRY.get_sample_value("cinerec_experiment_info", labels) == 1
    assert REGISTRY.get_sample_value("cinerec_experiment_info", {**labels, "experiment": "e1", "challenger": "b",
                                                                  "share": "0.1"}) is None
    set_experiment(None)
    assert REGISTRY.get_sample_value("cinerec_experiment_info", labels) is None
