"""OTLP ingestion: GenAI spans mapped per second by the ``otlp`` stage (one worker's stage, in process).

``python -m bench.otlp [--messages N] [--spans-per-message K]``: OTLP exports made by the
OpenTelemetry SDK (each K GenAI spans), in otlp_proto and otlp_json, handed to ``OtlpStage.handle``
in batches as the engine would; printed beside the ceiling of decoding the same bytes only.
"""

from __future__ import annotations

import argparse
import time


def _exports(n_spans: int) -> tuple[bytes, bytes]:
    from tests.unit.test_otlp import json_bytes, proto_bytes, spans

    found = []
    while len(found) < n_spans:
        found += [s for s in spans() if s.attributes and "gen_ai.request.model" in s.attributes]
    found = found[:n_spans]
    return proto_bytes(found), json_bytes(found)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.otlp")
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--spans-per-message", type=int, default=50)
    args = parser.parse_args()
    from streams.edge import RawMessage
    from streams.stages.otlp import OtlpStage, decode_spans
    from tests.unit.test_stages import env

    proto, json_ = _exports(args.spans_per_message)
    for label, raw in (("otlp_proto", proto), ("otlp_json", json_)):
        batch = [RawMessage("otlp_spans", 0, i, None, raw, 1) for i in range(args.messages)]
        n = args.messages * args.spans_per_message
        t = time.perf_counter()
        for message in batch:
            list(decode_spans(message.value or b""))
        decode_s = time.perf_counter() - t
        stage = OtlpStage(env())
        t, cpu = time.perf_counter(), time.process_time()
        out = []
        for i in range(0, len(batch), 20):
            out += stage.handle(batch[i:i + 20])
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        assert len(out) == n, (len(out), n)
        print(f"{label}: {n} spans, {len(raw)} B per export of {args.spans_per_message}: mapped {n / wall:9.0f} spans/s "
              f"({cpu / n * 1e6:.1f} CPU µs/span); decode only {n / decode_s:9.0f} spans/s")


if __name__ == "__main__":
    main()
