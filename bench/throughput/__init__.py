"""Throughput and latency bench of issue 7: ``python -m bench.throughput`` (see ``__main__``)."""
