"""The web tier: pages, REST, Socket.IO events, /metrics, and the message
queue between a core and its web processes."""
