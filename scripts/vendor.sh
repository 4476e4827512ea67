#!/usr/bin/env bash
# Re-fetch the vendored browser files from the npm registry at pinned versions.
# The dashboard never loads anything from a CDN: these files are committed.
set -euo pipefail
UPLOT=1.6.32
SOCKETIO=4.8.4
root="$(cd "$(dirname "$0")/.." && pwd)"
vendor="$root/server/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "uplot@$UPLOT" "socket.io-client@$SOCKETIO" >/dev/null
mkdir -p uplot sio "$vendor/uplot" "$vendor/socket.io"
tar xzf "uplot-$UPLOT.tgz" -C uplot
tar xzf "socket.io-client-$SOCKETIO.tgz" -C sio
cp uplot/package/dist/uPlot.iife.min.js uplot/package/dist/uPlot.min.css uplot/package/LICENSE "$vendor/uplot/"
cp sio/package/dist/socket.io.min.js sio/package/dist/socket.io.min.js.map sio/package/LICENSE "$vendor/socket.io/"
printf 'uplot %s\nsocket.io-client %s\n' "$UPLOT" "$SOCKETIO" > "$vendor/VERSIONS"
echo "vendored uplot $UPLOT and socket.io-client $SOCKETIO into $vendor"
