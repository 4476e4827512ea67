"""What the agent and the hub agree on, in a module that imports nothing heavy."""

NAMESPACE = "/agent"
MAX_BATCH = 60  # samples in one `samples` message (a replay comes in batches)
