"""The one Faust app: agents (agents/), tables (tables/) and the web views.

`agents` and `tables` are siblings of `app`, so they are listed in
`autodiscover` explicitly (docs/design.md, "Layout").
"""
from __future__ import annotations

import gc
from typing import Any

import faust
from mode.utils.objects import cached_property

from app.commits import changelog_stored, gated
from app.flow_control import KeepingFlowControl
from app.settings import get_settings

settings = get_settings()


class CinerecApp(faust.App):
    """The Faust app, plus creating the source topics before anything subscribes, a flow
    control that does not drop the agents' buffered messages when the flow resumes, and offset
    commits that wait for the stats agents' changelog writes in flight (app/commits.py)."""

    def _new_consumer(self) -> Any:
        """Faust's consumer, its offset commits gated on the changelog acks in flight."""
        self.transport.Consumer = gated(self.transport.Consumer)
        return super()._new_consumer()

    @cached_property
    def flow_control(self) -> KeepingFlowControl:
        """Faust's, except that resuming empties only the recovery's changelog buffer (app/flow_control.py)."""
        return KeepingFlowControl(lambda: {id(self.tables.changelog_queue)}, loop=self.loop)

    async def on_first_start(self) -> None:
        """Create `interactions`, the DLQ and the stats batch topics with TOPIC_PARTITIONS partitions.

        Faust declares only its internal topics, and a broker auto-creating the
        source topic would pick its own partition count. This hook runs before
        the app's producer, consumer and agents start (mode starts children
        after it), so the consumer subscribes to topics that exist.

        The tables' changelog topics are declared here too (Faust's own
        declaration, same config), not just before the consumer subscribes:
        on a first start the consumer's metadata could catch a changelog topic
        created a moment earlier with 0 partitions and keep that until its
        next refresh (5 min), and every table write then failed with
        PartitionsMismatch (the stats agents crashed and restarted in a loop).
        """
        self.conf.datadir.parent.mkdir(parents=True, exist_ok=True)  # faust makes only the leaf
        # Table changelog writes queue in this buffer; at more than `max_messages`
        # (100 by default) every stream pauses and logs "producer buffer full".
        self.producer.buffer.max_messages = 2000
        await super().on_first_start()
        if self.in_worker:
            tune_gc()
            from app.storage.kafka_admin import ensure_topics

            await ensure_topics(settings, extra=[settings.user_batches_topic, settings.film_batches_topic])
            for table in self.tables.values():
                await table.changelog_topic.maybe_declare()


def tune_gc() -> None:
    """Fewer cyclic garbage collections in the worker (docs/ingestion.md, "Where the time goes").

    A native profile of the stats path found 28% of the worker's main thread in
    the collector: every batch allocates tens of thousands of short-lived
    objects (Kafka records, columns, table values), and with the default
    thresholds (700 allocations) each young collection, and every tenth an
    older one, re-scanned the long-lived table values. The start-up objects
    (modules, the app) are frozen out of every collection; young collections
    run every 50,000 allocations. Reference counting still frees everything
    that is not a cycle at once, so memory only waits longer for cycles.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


app = CinerecApp(
    settings.app_id,
    broker=settings.kafka_broker,
    store=settings.faust_store,
    autodiscover=["agents", "tables", "app.web"],
    origin="app",
    topic_partitions=settings.topic_partitions,
    table_standby_replicas=settings.table_standby_replicas,
    # memory:// tables remember how far of each changelog partition they hold: a rebalance
    # re-reads only what a worker lacks, not its own partitions (app/table_store.py).
    Table="app.table_store:Table",
    topic_allow_declare=True,
    datadir=str(settings.local_dir / "faust" / f"{settings.app_id}-{settings.web_port}"),
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_in_thread=False,
    # Faust's own /table/... and /router/... views would serve table contents
    # (who watched what) on the public port: off (README "Security").
    web_tables_enabled=False,
    web_router_enabled=False,
    # must exceed broker_session_timeout (60 s) or the consumer refuses to start
    broker_request_timeout=max(settings.network_timeout_s * 6, 90.0),
    producer_request_timeout=max(settings.network_timeout_s * 6, 30.0),
    # On a revocation, wait until the agents finished (changelog sent, message acked) the batch they
    # are folding before the rebalance goes on (Faust's default; docs/ingestion.md "Rebalances");
    # the revocation then waits for the changelog's acks too (app/commits.py).
    # Without it the table recovery that follows read the changelog's end before that flush
    # landed and replaced the batch's records with older ones, and the batch was committed.
    stream_wait_empty=True,
    # Tables write a changelog message per update: without linger every one
    # becomes its own produce request (profiled: half the worker time in send()).
    producer_linger=0.01,
    # aiokafka makes a send wait while its partition's batch is full; changelog
    # values are ~0.4 kB, so the default 16 kB batch throttled the stats agents.
    producer_max_batch_size=512 * 1024,
)


app.on_partitions_revoked.connect(changelog_stored)


def main() -> None:
    """Entry point of `faust -A app.main` and `cinerec worker`."""
    app.main()


if __name__ == "__main__":
    main()
