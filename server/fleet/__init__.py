"""The fleet: agents that report to a hub, and the hub's per-host state."""
