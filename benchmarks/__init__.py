"""Benchmarks: learning curves and speed, printed with the command that reproduces them."""
