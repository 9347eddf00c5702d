"""Throughput and latency benchmarks: `python -m benchmarks.throughput` (see benchmarks/README.md)."""
