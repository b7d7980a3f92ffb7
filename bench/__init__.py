"""Benchmarks (not imported by library code)."""
