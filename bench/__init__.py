"""Benchmarks that print figures (``make bench``); never imported by the workers."""
