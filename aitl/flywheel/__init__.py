"""The flywheel end to end: simulated agents, the demo and the benchmark."""
