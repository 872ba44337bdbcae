"""After a run: scores against naive forecasts, generation, the report."""
