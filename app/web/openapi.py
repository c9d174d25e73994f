"""OpenAPI 3.0 description of the service, hand-written: the contract for the
frontend and the schema the property-based API test (schemathesis) fuzzes."""
from __future__ import annotations

from typing import Any

from app.experiments.metrics import METRICS
from app.experiments.model import ID_PATTERN, State
from app.experiments.operations import MAX_DAYS, MAX_MIN_USERS, MAX_PLAN_DAYS

# Input bounds, enforced by app/web/handlers.py (and experiments_api.py) and published here.
MAX_ID = 2**63 - 1
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MAX_VERSION_LEN = 200
MAX_REASON_LEN = 500


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _json(_ref("Error"), "error with a reason")
_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "description": f"how many films (default {DEFAULT_LIMIT})",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
}


_USER_ARM = {
    "name": "user_id",
    "in": "query",
    "required": False,
    "description": "the user asking: during an experiment, the list comes from that user's arm's version",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
}


_EXPLAIN = {
    "name": "explain",
    "in": "query",
    "required": False,
    "description": "1 or true: each film carries `reasons`, what put it in the list (default 0)",
    "schema": {"type": "string", "enum": ["0", "1", "false", "true"], "default": "0"},
}


def _id_param(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    }


def _list_op(summary: str, params: list[dict[str, Any]], schema: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": [*params, _LIMIT],
            "responses": {"200": _json(_ref(schema), summary), "400": _ERROR, **extra},
        }
    }


_FILM = {
    "type": "object",
    "required": ["film_id", "score", "title"],
    "properties": {
        "film_id": {"type": "integer"},
        "score": {"type": "number"},
        "title": {"type": "string", "nullable": True},
        "reasons": {
            "type": "array",
            "description": "with explain=1: for a film ranked at request time, the features or first-level "
                           "sources (`source:<name>`) that raised its score most, with their SHAP value; "
                           "for any other film, the list it came from (`list:<stage>`, value null)",
            "items": {
                "type": "object",
                "required": ["name", "value"],
                "properties": {"name": {"type": "string"}, "value": {"type": "number", "nullable": True}},
            },
        },
    },
}
_LIST_PROPS = {
    "items": {"type": "array", "items": _ref("Film")},
    "source": {"type": "string", "enum": ["als", "ranked", "foldin", "trending", "popular", "similar"]},
    "model_version": {"type": "string", "nullable": True, "description": "the version that ranked this list"},
    "experiment": {
        "type": "string",
        "description": "the running experiment that chose model_version for this user (absent when none runs)",
    },
    "arm": {
        "type": "string",
        "enum": ["control", "challenger"],
        "description": "the user's arm in `experiment` (a stable hash of experiment and user ids); with `experiment`",
    },
    "degraded": {"type": "boolean", "description": "true when Redis is down and an in-process copy answered"},
}
_DATE = {"type": "string", "format": "date", "example": "2026-11-01"}
_RANGE = [
    {"name": "from", "in": "query", "required": True, "description": "first UTC day, YYYY-MM-DD", "schema": _DATE},
    {"name": "to", "in": "query", "required": True, "description": "last UTC day (inclusive)", "schema": _DATE},
]


_AUTH_ERRORS = {
    "401": _json(_ref("AuthError"), "no bearer token sent"),
    "403": _json(_ref("AuthError"), "wrong token, or no token configured (the body says how to configure one)"),
}


def _analytics_op(summary: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "description": "Needs ANALYTICS_TOKEN or ADMIN_TOKEN as a bearer token, unless ANALYTICS_OPEN is set.",
            "security": [{"bearer": []}],
            "parameters": _RANGE,
            "responses": {
                "200": _json({"type": "object", "required": ["from", "to"]}, summary),
                "400": _json(_ref("Error"), "missing, malformed or reversed date range"),
                **_AUTH_ERRORS,
                "429": {
                    "description": "every analytics worker stayed busy; retry after `Retry-After` seconds",
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": _ref("Error")}},
                },
                "503": _json(_ref("Error"), "ClickHouse unreachable"),
                "504": _json(_ref("Error"), "ClickHouse did not answer in time"),
            },
        }
    }


_CHECK = {"type": "object", "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}}}

# Experiments (app/web/experiments_api.py): bounds as enforced there and in app.experiments.
_ADMIN = [{"admin": []}]
_OPEN_UNIT = {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1, "exclusiveMaximum": True}
_METRIC = {"type": "string", "enum": list(METRICS)}
_VERSION = {"type": "string", "minLength": 1, "maxLength": MAX_VERSION_LEN}
_EXPERIMENT_ID = {"type": "string", "pattern": f"^{ID_PATTERN}$"}
_STAMP = {"type": "string", "nullable": True, "description": "UTC, ISO 8601; null when not set"}
_EXPERIMENT = {
    "type": "object",
    "required": ["id", "control", "challenger", "share", "primary", "guardrails", "mde", "min_users_per_arm",
                 "max_duration_s", "created_at", "started_at", "ended_at", "state", "decision", "revision"],
    "properties": {
        "id": {"type": "string"}, "control": {"type": "string"}, "challenger": {"type": "string"},
        "share": {"type": "number"}, "primary": {"type": "string"},
        "guardrails": {"type": "array", "description": "[metric, tolerance] pairs",
                       "items": {"type": "array", "items": {}, "minItems": 2, "maxItems": 2}},
        "mde": {"type": "number"}, "min_users_per_arm": {"type": "integer"}, "max_duration_s": {"type": "integer"},
        "created_at": {"type": "string"}, "started_at": _STAMP, "ended_at": _STAMP,
        "state": {"type": "string", "enum": [s.value for s in State]},
        "decision": {"type": "string", "description": "why it ended, e.g. `promote: challenger wins`"},
        "revision": {"type": "integer"}, "hash_seed": {"type": "integer"}, "threshold": {"type": "integer"},
    },
}
_EXPERIMENT_ERRORS = {
    "400": _json(_ref("Error"), "a definition, field or id we refuse (the message says which)"),
    **_AUTH_ERRORS,
    "503": _json(_ref("Error"), "ClickHouse or Redis unreachable"),
    "504": _json(_ref("Error"), "ClickHouse or Redis did not answer in time"),
}
_START_BODY = {
    "type": "object",
    "required": ["challenger"],
    "additionalProperties": False,
    "properties": {
        "challenger": {**_VERSION, "description": "a published version"},
        "control": {**_VERSION, "description": "a published version (default: the served one)"},
        "id": {**_EXPERIMENT_ID, "description": "default exp-<start time>"},
        "share": {**_OPEN_UNIT, "description": "share of users in the challenger arm (default 0.1)"},
        "primary": {**_METRIC, "description": "primary metric (default watch_time_per_user_day)"},
        "guardrails": {
            "type": "array", "maxItems": len(METRICS), "description": "default d1_retention and ctr at 5 %",
            "items": {"type": "object", "required": ["metric", "tolerance"], "additionalProperties": False,
                      "properties": {"metric": _METRIC, "tolerance": {"type": "number", "minimum": 0, "maximum": 1,
                                                                     "exclusiveMaximum": True}}},
        },
        "mde": {**_OPEN_UNIT, "description": "planned minimum detectable effect, relative (default 0.05)"},
        "min_users_per_arm": {"type": "integer", "minimum": 1, "maximum": MAX_MIN_USERS,
                              "description": "default: planned from the last plan_days of traffic"},
        "plan_days": {"type": "integer", "minimum": 1, "maximum": MAX_PLAN_DAYS},
        "max_days": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": MAX_DAYS},
        "at": {"type": "string", "format": "date-time", "description": "start (default now; not in the future)"},
    },
}
_ID_PATH = {"name": "experiment_id", "in": "path", "required": True, "schema": _EXPERIMENT_ID}

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "cinerec recommendations", "version": "1.0.0"},
    "paths": {
        "/v1/users/{user_id}/recommendations": _list_op(
            "Recommended films for a user", [_id_param("user_id"), _EXPLAIN], "UserRecommendations", {}
        ),
        "/v1/films/{film_id}/similar": _list_op(
            "Films similar to a film",
            [_id_param("film_id"), _USER_ARM],
            "SimilarFilms",
            {"404": _json(_ref("Error"), "film unknown to the served model"), "503": _ERROR},
        ),
        "/v1/films/popular": _list_op("Popular films of the served model", [], "FilmList", {}),
        "/v1/films/trending": _list_op("Trending films right now", [], "FilmList", {}),
        "/v1/models/current": {
            "get": {
                "summary": "The served model version and its offline metrics",
                "responses": {
                    "200": _json(_ref("Model"), "served model"),
                    "503": _json(_ref("Error"), "no model published yet"),
                },
            }
        },
        "/v1/admin/retrain": {
            "post": {
                "summary": "Enqueue a retrain now",
                "security": _ADMIN,
                "responses": {
                    "202": _json(
                        {"type": "object", "properties": {"task_id": {"type": "string"}}}, "retrain enqueued"
                    ),
                    **_AUTH_ERRORS,
                    "503": _json(_ref("Error"), "Celery broker down"),
                },
            }
        },
        "/v1/analytics/summary": _analytics_op(
            "Business metrics of a date range: time on site, retention, rating, completion, funnel"
        ),
        "/v1/analytics/dashboard": _analytics_op("Every per-day series the dashboard draws"),
        "/v1/analytics/experiment": _analytics_op(
            "The running experiment (else the last one started before `to`): per-arm daily figures, the report "
            "with 95 % intervals and the verdict, the decision log; `experiment` is null before any"
        ),
        "/v1/admin/experiments": {
            "get": {
                "summary": "Every experiment (newest first) and the one serving follows",
                "security": _ADMIN,
                "responses": {
                    "200": _json({"type": "object", "required": ["experiments", "active"], "properties": {
                        "experiments": {"type": "array", "items": _ref("Experiment")},
                        "active": {"type": "string", "nullable": True}}}, "experiments"),
                    **_EXPERIMENT_ERRORS,
                },
            },
            "post": {
                "summary": "Plan and start an experiment (idempotent: the same request again answers it)",
                "security": _ADMIN,
                "requestBody": {"required": True, "content": {"application/json": {"schema": _START_BODY}}},
                "responses": {
                    "201": _json({"type": "object", "required": ["experiment", "plan"], "properties": {
                        "experiment": _ref("Experiment"), "plan": {"type": "string"}}}, "running"),
                    **_EXPERIMENT_ERRORS,
                    "409": _json(_ref("Error"), "a version is not published, another experiment runs, or the id "
                                                "exists with another definition"),
                },
            },
        },
        "/v1/admin/experiments/{experiment_id}": {
            "get": {
                "summary": "One experiment, its decision log and its report so far",
                "security": _ADMIN,
                "parameters": [_ID_PATH],
                "responses": {
                    "200": _json({"type": "object", "required": ["experiment", "decisions", "report"], "properties": {
                        "experiment": _ref("Experiment"),
                        "decisions": {"type": "array", "items": {"type": "object", "required": ["at", "action"]}},
                        "report": {"type": "object", "nullable": True}}}, "the experiment"),
                    **_EXPERIMENT_ERRORS,
                    "404": _json(_ref("Error"), "no experiment with that id"),
                },
            },
        },
        "/v1/admin/experiments/{experiment_id}/stop": {
            "post": {
                "summary": "Stop a planned or running experiment by hand: the control stays served",
                "security": _ADMIN,
                "parameters": [_ID_PATH],
                "requestBody": {"required": False, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": MAX_REASON_LEN}}}}}},
                "responses": {
                    "200": _json({"type": "object", "required": ["experiment"],
                                  "properties": {"experiment": _ref("Experiment")}}, "stopped"),
                    **_EXPERIMENT_ERRORS,
                    "404": _json(_ref("Error"), "no experiment with that id"),
                    "409": _json(_ref("Error"), "the experiment has already ended"),
                },
            },
        },
        "/dashboard": {
            "get": {
                "summary": "Business and operations dashboard (HTML, charts served by the app)",
                "description": "The page holds no figures; it asks for the analytics token and fetches them.",
                "responses": {"200": {"description": "HTML page", "content": {"text/html": {}}}},
            }
        },
        "/health": {
            "get": {
                "summary": "Liveness",
                "responses": {"200": _json({"type": "object", "properties": {
                    "status": {"type": "string"},
                    "pid": {"type": "integer", "description": "the serving process that answered"},
                }}, "alive")},
            }
        },
        "/ready": {
            "get": {
                "summary": "Readiness of Kafka, ClickHouse, Redis and a published model",
                "responses": {"200": _json(_ref("Ready"), "ready"), "503": _json(_ref("Ready"), "a check failed")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text exposition", "content": {"text/plain": {}}}},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.0 document")},
            }
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "ANALYTICS_TOKEN (or ADMIN_TOKEN)"},
            "admin": {"type": "http", "scheme": "bearer", "description": "ADMIN_TOKEN"},
        },
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "AuthError": {
                "type": "object",
                "required": ["error", "auth"],
                "properties": {
                    "error": {"type": "string"},
                    "auth": {"type": "string", "enum": ["missing", "rejected", "unconfigured"]},
                },
            },
            "Film": _FILM,
            "Experiment": _EXPERIMENT,
            "FilmList": {"type": "object", "required": ["items", "source"], "properties": _LIST_PROPS},
            "UserRecommendations": {
                "type": "object",
                "required": ["user_id", "items", "source", "model_version", "model", "stage"],
                "properties": {
                    "user_id": {"type": "integer"},
                    **_LIST_PROPS,
                    "model": {
                        "type": "string",
                        "nullable": True,
                        "description": "the model of model_version (two-level, als, ...; null when unknown)",
                    },
                    "stage": {
                        "type": "string",
                        "enum": ["precomputed", "request-time", "fold-in", "trending", "popular"],
                        "description": "which stage answered: the version's precomputed list, two-level ranking "
                                       "at request time (source ranked), ALS fold-in, or a fallback list",
                    },
                },
            },
            "SimilarFilms": {
                "type": "object",
                "required": ["film_id", "items", "source"],
                "properties": {"film_id": {"type": "integer"}, **_LIST_PROPS},
            },
            "Model": {
                "type": "object",
                "required": ["version"],
                "properties": {
                    "version": {"type": "string"},
                    "trained_at": {"type": "string", "nullable": True},
                    "metrics": {"type": "object"},
                    "degraded": {"type": "boolean"},
                },
            },
            "Ready": {
                "type": "object",
                "required": ["ready", "checks"],
                "properties": {
                    "ready": {"type": "boolean"},
                    "checks": {"type": "object", "additionalProperties": _CHECK},
                },
            },
        },
    },
}
