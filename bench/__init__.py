"""Benchmarks: each prints its figure beside the machine's raw limit measured in the same run."""
