"""aitl: agent-in-the-loop data flywheel."""
