"""Metrics, tracing and logs shared by every process."""
