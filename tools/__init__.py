"""Developer tools outside the serving tree: the local stack runner, a local CPU Triton, the load generator and
benchmarks."""
