"""Developer tools: local services, the demo, benchmarks."""
