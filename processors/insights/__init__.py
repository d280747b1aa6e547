"""Insights for people: error patterns, satisfaction KPIs and their root causes, cache opportunities."""
