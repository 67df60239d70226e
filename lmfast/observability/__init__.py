"""Observability: plots of runs (loss curves), and later tracing and metrics."""
