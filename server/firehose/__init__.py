"""The firehose: live tails of this host's and the agents' log files, for the pages.

sources.py (the log_sources setting, a file/glob/journald source), containers.py
(a container's or a Compose project's output, from the engine), follow.py
(tail -F, line shaping, redaction, the rate cap), feed.py (a host's sources,
followed while watched), relay.py (the hub: subscriptions, rooms, agents).
"""
