"""Wire contracts: Avro schemas, typed records, serde, validation."""
