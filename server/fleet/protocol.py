"""What the agent and the hub agree on, in a module that imports nothing heavy."""

NAMESPACE = "/agent"
# The link's version: what an agent sends (its connect's auth, its messages) and how
# the hub answers. It goes up only when a hub could misread what an agent of the
# version before sends, or the other way round; a hub speaks OLDEST_PROTOCOL to
# PROTOCOL, and refuses the rest at connect, saying what to upgrade. An agent that
# sends none (0.2.0 and before) speaks 1.
PROTOCOL = 1
OLDEST_PROTOCOL = 1
MAX_BATCH = 60  # samples in one `samples` message (a replay comes in batches)
MAX_MESSAGE = 96 * 1024  # bytes of one message (Engine.IO closes a link past it)
# The newest sample's container table is trimmed (least busy rows first) to this.
MAX_CONTAINER_BYTES = 64 * 1024
# Tables of the moment an agent sends with its newest sample only (the hub keeps none
# in history, and a page shows the latest): a replay's batch stays small.
NEWEST_ONLY = ("containers", "services", "sensors", "gpus", "disk_health")
# What one batch's samples may take: the rest of MAX_MESSAGE is the frame's. A replay
# of samples with sensors (or the newest's container table) comes in fewer a batch.
BATCH_BYTES = MAX_MESSAGE - 4 * 1024
