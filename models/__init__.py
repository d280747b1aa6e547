"""River model wrappers: learn/predict, drift, signed snapshots."""
