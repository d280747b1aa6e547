"""Faust's aiokafka transport with a configurable fetch wait (``loopwise://`` URLs).

faust-streaming hard-codes ``fetch_max_wait_ms=1500`` for worker consumers.
On a real cluster the broker answers a waiting fetch as soon as data arrives,
so that is harmless; the embedded broker does not wake a waiting fetch, so
every hop would cost up to 1.5 s. This transport lets the setting
``Settings.effective_fetch_max_wait_ms`` decide (10 ms on the embedded broker,
Kafka's behaviour elsewhere). Registered under the ``faust.transports`` entry
point group as ``loopwise``.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Creates the worker consumer, then applies loopwise's fetch wait before it starts."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
            consumer._fetch_max_wait_ms = int(wait_ms)
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
