"""Loaded by a test worker's interpreter (PYTHONPATH): cuts the stats agents' changelog producer off
the broker. Its batches never leave the process and their acks never come, so every changelog
write stays in flight (tests/integration/test_stats_exactly_once.py); every other producer is untouched."""
import asyncio

from aiokafka import AIOKafkaProducer

_send_batch = AIOKafkaProducer.send_batch


async def _held(self, batch, topic, *, partition):
    if not self.client._client_id.endswith("-changelog"):
        return await _send_batch(self, batch, topic, partition=partition)
    return asyncio.get_running_loop().create_future()


AIOKafkaProducer.send_batch = _held
