"""Command line: `python -m server [flags]` serves the dashboard."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import warnings
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from server.config import Config, ConfigError, load

log = logging.getLogger("dashboard")

# eventlet's wsgi server refuses connections past max_size (1,024 by default):
# a wall of dashboards must not be capped there.
EVENTLET_MAX_CONNECTIONS = 10_000
# A request line must come within this long of connecting (or of the last
# request): a slowloris that sends nothing, or a byte now and then, is cut.
REQUEST_LINE_TIMEOUT = 10.0
# Any one read or write on a client socket. Engine.IO pings every 25 s, so a
# live WebSocket always reads well within it; a client that stops reading its
# answer is dropped after it.
SOCKET_TIMEOUT = 60.0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["hash-password"]:
        from server.access.passwords import hash_password_command

        return hash_password_command(args[1:])
    command = args[0] if args and args[0] in COMMANDS else None
    named = command in NAMED and len(args) > 1 and not args[1].startswith("-")
    names = args[1:2] if named else []
    shown = _install_options(args) if command in NAMED else {}
    try:
        config = load(args[(1 if command else 0) + len(names) :])
        if command == "agent":
            return _agent(config)
    except ConfigError as exc:
        print(f"python -m server: error: {exc}", file=sys.stderr)
        return 2
    if command is not None:
        from server.fleet.tokens import agents_command

        return agents_command(command, names, config, **shown)
    if config.private_files:
        _make_private(config)
    if config.async_mode == "eventlet":
        _patch_eventlet()

    from server.app import create_app
    from server.logs import setup_logging

    try:
        setup_logging(config)
        listener = _listen(config)
        # Read here, not in load(): a setting Apprise must read (a [notify.NAME] url)
        # is read once eventlet has patched the sockets.
        app, socketio = create_app(config)
    except ConfigError as exc:
        print(f"python -m server: error: {exc}", file=sys.stderr)
        return 2

    state = app.extensions["dashboard"]
    announced: list[bool] = []

    def announce() -> None:
        # Tell the pages: they show "restarting" and reconnect with backoff.
        if not announced:
            announced.append(True)
            socketio.emit("shutdown", {"reason": "the server is stopping"})

    signal.signal(signal.SIGTERM, _exit_handler(config, announce))
    try:
        state.start()
    except Exception as exc:  # LeaseTaken, or a message queue that can't be reached
        from server.web.queue import LeaseTaken

        if not isinstance(exc, LeaseTaken) and config.role != "core":
            raise
        print(f"python -m server: error: setting 'role' core: {exc}", file=sys.stderr)
        return 2
    log.info(
        "serving http://%s:%d/ (async mode %s)", *listener.getsockname()[:2], config.async_mode
    )
    try:
        _serve(app, listener, config)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        log.info("shutting down")
        announce()
        state.stop()
        logging.shutdown()
    return 0


COMMANDS = ("agent", "add-agent", "list-agents", "remove-agent")
NAMED = ("add-agent", "remove-agent")


def _install_options(args: list[str]) -> dict[str, Any]:
    """add-agent's --print-install and the CA path the new machine knows the hub by
    (--ca-file PATH): taken out of `args`, which go on to the settings."""
    options: dict[str, Any] = {"print_install": "--print-install" in args}
    while "--print-install" in args:
        args.remove("--print-install")
    if "--ca-file" in args:
        at = args.index("--ca-file")
        options["ca_file"] = args[at + 1] if at + 1 < len(args) else ""
        del args[at : at + 2]
    return options


def _agent(config: Config) -> int:
    """Only the sampler and the link to the hub: no Flask, no eventlet, no port."""
    # The link is WebSocket only: python-engineio's polling transport would
    # import requests, 6 MiB of an agent that should stay under 40. And it needs no
    # message queue: python-socketio imports redis where it is installed (the web
    # tier's), 7 MiB more; both take their absence as "not installed".
    sys.modules.setdefault("requests", None)  # type: ignore[arg-type]
    sys.modules.setdefault("redis", None)  # type: ignore[arg-type]
    from server.fleet.agent import run
    from server.logs import setup_logging

    if config.private_files:
        _make_private(config)
    setup_logging(config)
    return run(config)


def _make_private(config: Config) -> None:
    """Files only for the service's user: new ones by the umask, old ones by chmod.

    Host metrics, process names, the session key and the logs are not for
    every local account to read.
    """
    os.umask(0o077)
    for directory in (config.log_dir, config.data_dir):
        if not os.path.isdir(directory):
            continue
        os.chmod(directory, 0o700)
        for entry in os.scandir(directory):
            if entry.is_file(follow_symlinks=False):
                os.chmod(entry.path, 0o600)


def _patch_eventlet() -> None:
    # eventlet warns on import that it is in bugfix-only mode; the choice is
    # deliberate (docs/settings.md, "Async mode"), so say it once in the log instead of the console.
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import eventlet

    eventlet.monkey_patch()
    from server.web import websocket_mask

    websocket_mask.install()  # frames unmasked in one XOR, not a bytes per byte


def _exit_handler(
    config: Config, announce: Callable[[], None]
) -> Callable[[int, FrameType | None], None]:
    """SIGTERM ends the serving loop, whatever runs when it arrives.

    A signal handler runs in the main thread, but under eventlet that may be
    any green thread (the sampler, a socket's): raising there would end only
    that one. So a green thread tells the clients while the server still
    runs, then the exit is thrown into the main greenlet, via the hub.
    """
    if config.async_mode != "eventlet":

        def raise_exit(signum: int, frame: FrameType | None) -> None:
            raise SystemExit(0)

        return raise_exit

    import eventlet
    import greenlet
    from eventlet import hubs

    main_greenlet = greenlet.getcurrent()

    def announce_then_exit() -> None:
        announce()
        eventlet.sleep(0.2)  # the sockets' writers send it
        hubs.get_hub().schedule_call_global(0, main_greenlet.throw, SystemExit(0))

    def throw_exit(signum: int, frame: FrameType | None) -> None:
        eventlet.spawn_n(announce_then_exit)

    return throw_exit


def _listen(config: Config) -> socket.socket:
    """Bind before serving, so a taken port is one clear line, not a traceback."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            config.host, config.port, type=socket.SOCK_STREAM
        )[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # No Nagle: a page's greeting is three writes in a row (static, history,
        # alerts), and Nagle held the second until the client's delayed ACK, 40 ms
        # later. Linux passes the option on to every accepted socket.
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.bind(address)
        listener.listen(1024)
    except OSError as exc:
        raise ConfigError(
            f"setting 'host'/'port': cannot listen on {config.host}:{config.port}: "
            f"{exc.strerror or exc}"
        ) from None
    return listener


class _LogStream:
    """A file-like wsgi.errors that writes to a (rate-limited) logger, not stderr."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def write(self, text: str) -> None:
        if text.strip():
            self._logger.warning("%s", text.strip())

    def writelines(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass


def _errors_to_log(app: Any) -> Any:
    # eventlet's wsgi and websocket code write client trouble ("socket
    # shutdown error") to environ["wsgi.errors"], which it sets to stderr.
    stream = _LogStream(logging.getLogger("eventlet.wsgi.server"))

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
        environ["wsgi.errors"] = stream
        return app(environ, start_response)

    return wsgi_app


def _serve(app: Any, listener: socket.socket, config: Config) -> None:
    if config.async_mode == "eventlet":
        import eventlet.wsgi

        eventlet.wsgi.server(
            listener,
            _errors_to_log(app),
            log=logging.getLogger("dashboard.access"),
            max_size=EVENTLET_MAX_CONNECTIONS,
            keepalive=REQUEST_LINE_TIMEOUT,
            socket_timeout=SOCKET_TIMEOUT,
        )
    else:
        from werkzeug.serving import make_server

        server = make_server(
            config.host,
            config.port,
            app,
            threaded=True,
            fd=listener.fileno(),
        )
        server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
