"""Count-and-forward on Quix Streams, as its docs write it; runs inside ``.venv-quix`` (imports no loopwise code).

``python bench/throughput/quix_pipeline.py BOOTSTRAP IN OUT GROUP STATE_DIR`` runs until SIGTERM.
Defaults of Quix Streams 3.28.1, except the consumer group, ``earliest`` (the
input is produced before the app starts), the embedded broker's session and
fetch settings, and WARNING logs; the count per key
lives in Quix's state store (RocksDB, changelog topic), as its docs show.
"""

from __future__ import annotations

import sys
from typing import Any

from quixstreams import Application, State


def count(value: dict[str, Any], state: State) -> dict[str, Any]:
    """The running count of the event's key."""
    total = state.get("count", 0) + 1
    state.set("count", total)
    return {"key": value["key"], "count": total}


def main(bootstrap: str, in_topic: str, out_topic: str, group: str, state_dir: str) -> None:
    """Build the app and run it until SIGTERM."""
    app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                      state_dir=state_dir, loglevel="WARNING",
                      # The embedded broker holds a join for half the session timeout (45 s by
                      # default) and never wakes a waiting fetch (see MEASUREMENTS.md).
                      consumer_extra_config={"session.timeout.ms": 6000, "fetch.wait.max.ms": 10,
                                             "fetch.queue.backoff.ms": 0})
    source = app.topic(in_topic, key_deserializer="str", value_deserializer="json")
    sink = app.topic(out_topic, key_serializer="str", value_serializer="json")
    sdf = app.dataframe(source)
    sdf = sdf.apply(count, stateful=True)
    sdf.to_topic(sink)
    app.run()


if __name__ == "__main__":
    main(*sys.argv[1:6])
