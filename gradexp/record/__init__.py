"""The record of a run: device rows → checks, aggregation → event file, metrics.jsonl, summary."""
