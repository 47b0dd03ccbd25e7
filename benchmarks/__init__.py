"""Benchmarks and the bounded load test (``python -m benchmarks.loadtest``)."""
