"""Live host dashboard. The app factory is server.app.create_app.

Nothing is imported here: `python -m server` imports this package before it
has read its settings, and under eventlet the monkey-patching must come
before Flask and Socket.IO are imported.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("host-dashboard")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
