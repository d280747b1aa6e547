"""Where results leave loopwise: Prometheus metrics, Parquet, reports."""
