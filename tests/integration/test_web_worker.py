"""`cinerec worker` (the Faust app) serves the recommendation API on its own web port."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from app.settings import Settings
from app.worker_process import WorkerProcess
from tests.integration.web_support import publish_version, sync_redis

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(12), pytest.mark.slow]


def test_faust_worker_serves_the_api(kafka_settings: Settings, redis_settings: Settings, tmp_path: Path) -> None:
    published = publish_version(sync_redis(redis_settings), "v1", seed=6)
    settings = kafka_settings.with_overrides(redis_url=redis_settings.redis_url, local_dir=tmp_path)
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        url = worker.settings.web_url
        body = requests.get(f"{url}/v1/users/1/recommendations?limit=5", timeout=10).json()
        assert body["source"] == "als" and body["model_version"] == "v1"
        assert [item["film_id"] for item in body["items"]] == published.user_recs[1][:5]
        bad = requests.get(f"{url}/v1/users/nope/recommendations", timeout=10)
        assert bad.status_code == 400 and "user_id" in bad.json()["error"]
        assert requests.get(f"{url}/health", timeout=10).json()["status"] == "ok"
        metrics = requests.get(f"{url}/metrics", timeout=10).text
        assert 'cinerec_served_model_info{version="v1"} 1.0' in metrics
