"""Benchmarks: `python -m benchmarks.<domain> <name>` from the repository root (see README.md here)."""
