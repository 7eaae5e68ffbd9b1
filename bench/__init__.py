"""Benchmarks: `make bench` runs them, prints tables and writes bench/results/*.json."""
