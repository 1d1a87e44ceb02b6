"""Benchmarks of rerank-plugins against what a user would otherwise run (see ``docs/performance.md``)."""
