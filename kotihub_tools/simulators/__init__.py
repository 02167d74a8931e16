"""Local simulators that speak the devices' documented protocols, for the demo, tests and benchmarks."""
