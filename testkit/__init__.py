"""What the tests and the bench share: a real server process, a Socket.IO client, Chromium."""
