"""The one Faust app: agents (agents/), tables (tables/) and the web views.

`agents` and `tables` are siblings of `app`, so they are listed in
`autodiscover` explicitly (DESIGN.md).
"""
from __future__ import annotations

import faust

from app.settings import get_settings

settings = get_settings()

app = faust.App(
    settings.app_id,
    broker=settings.kafka_broker,
    store=settings.faust_store,
    autodiscover=["agents", "tables", "app.web"],
    origin="app",
    topic_partitions=settings.topic_partitions,
    topic_allow_declare=True,
    datadir=str(settings.local_dir / "faust" / f"{settings.app_id}-{settings.web_port}"),
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_in_thread=False,
    broker_request_timeout=max(settings.network_timeout_s * 6, 30.0),
    producer_request_timeout=max(settings.network_timeout_s * 6, 30.0),
    stream_wait_empty=False,
)


def main() -> None:
    """Entry point of `faust -A app.main` and `cinerec worker`."""
    app.main()


if __name__ == "__main__":
    main()
