#!/usr/bin/env bash
# Install the system binaries the tests drive, from Debian, when missing:
# chromium (browser tests), nginx, puppet, puppet-lint and vagrant (deploy tests),
# redis-server (the web tier on a message queue), prometheus (promtool checks /metrics),
# debootstrap and systemd-container (a booted Debian guest for the Puppet path),
# faketime (agents whose clocks are wrong), docker.io and busybox-static (a dockerd
# of the test's own, and an image made from busybox: no registry is reachable),
# podman (a rootful podman of the test's own: its Docker-compatible API, same image),
# smartmontools (smartctl: disk health, read from this machine's own drives).
# Without root or apt (a developer's laptop) it only reports: the tests that
# need a missing binary skip with a reason, except under CI=true, where they fail.
set -euo pipefail
have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ]; }
need=()
have chromium || need+=(chromium fonts-dejavu-core)
have nginx || need+=(nginx)
have puppet || need+=(puppet)
have puppet-lint || need+=(puppet-lint)
have vagrant || need+=(vagrant)
have systemd-analyze || need+=(systemd)
have redis-server || need+=(redis-server)
have promtool || need+=(prometheus)
have debootstrap || need+=(debootstrap)
have systemd-nspawn || need+=(systemd-container)
have faketime || need+=(faketime)
have dockerd || need+=(docker.io)
have podman || need+=(podman)
have smartctl || need+=(smartmontools)
dpkg -s busybox-static >/dev/null 2>&1 || ! command -v dpkg >/dev/null || need+=(busybox-static)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "system-deps: missing ${need[*]}; tests that need them will skip" >&2
    exit 0
fi
echo "system-deps: installing ${need[*]}"
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
