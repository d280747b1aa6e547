"""Capacity: load forecasts, predictive scaling, cost-aware job release, local capacity cost."""
