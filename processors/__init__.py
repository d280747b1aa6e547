"""Pure decision logic over typed records: no Kafka, no I/O, no environment."""
