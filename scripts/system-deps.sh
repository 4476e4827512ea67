#!/usr/bin/env bash
# Install the system binaries the tests drive, from Debian, when missing.
# Without root (a developer's laptop) it only reports: the tests that need a
# missing binary skip with a reason, except under CI=true, where they fail.
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "system-deps: missing ${need[*]}; install them to run every test" >&2
    exit 0
fi
echo "system-deps: installing ${need[*]}"
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" fonts-dejavu-core >/dev/null
