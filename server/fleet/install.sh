#!/bin/sh
# The host dashboard's agent on this machine: install, repair or upgrade (run it
# again), or remove. Run as root. Served by the hub at $HUB/agent/install.sh with
# the hub's address, its version and its wheel's SHA-256 written in below.
#
#   sh dashboard-agent.sh --token-file FILE   install; the token read from FILE
#                                             ("-": standard input)
#   sh dashboard-agent.sh                     repair or upgrade, keeping the token
#   sh dashboard-agent.sh --uninstall         stop the agent; remove its unit and files
#   --ca-file FILE   the CA that signed the hub's certificate (a private CA)
#   --allow-http     accept a hub served over plain http (the token travels in clear)
#
# What it makes: a virtual environment under /opt/dashboard-agent with the hub's
# own wheel, the token in /etc/dashboard-agent/token (0600), a system user of its
# own, and a hardened unit, dashboard-agent.service, with read-only access to the
# system. Then it waits until the hub has this host's samples, and says so.
set -eu

HUB=@HUB@
LINK=@LINK@
VERSION=@VERSION@
WHEEL=@WHEEL@
WHEEL_SHA256=@WHEEL_SHA256@

NAME=dashboard-agent
PREFIX=/opt/$NAME
CONF=/etc/$NAME
UNIT=/etc/systemd/system/$NAME.service
WAIT_SECONDS=60

say() { printf '%s: %s\n' "$NAME" "$*" >&2; }
die() { say "error: $*"; exit 1; }

# Python does the HTTPS (urllib, verified against the system's CAs or --ca-file) and
# the digest: curl may be missing where the script came as a file.
HELPER='
import hashlib, json, ssl, sys, urllib.error, urllib.request
what, hub, ca = sys.argv[1], sys.argv[2], sys.argv[3]
context = ssl.create_default_context(cafile=ca or None)
def ask(path, body=None):
    request = urllib.request.Request(hub + path, data=body, method="POST" if body else "GET",
                                     headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(request, timeout=20, context=context)
try:
    if what == "wheel":
        data = ask("/agent/" + sys.argv[4]).read()
        if hashlib.sha256(data).hexdigest() != sys.argv[5]:
            sys.exit("dashboard-agent: error: the wheel from the hub does not match the digest in this script")
        open(sys.argv[6], "wb").write(data)
    else:
        token = sys.stdin.read().strip()
        print(json.dumps(json.load(ask("/agent/check", json.dumps({"token": token}).encode()))))
except urllib.error.HTTPError as exc:
    try:
        why = json.load(exc).get("error")
    except ValueError:
        why = None
    if what == "wheel":
        sys.exit(f"dashboard-agent: error: the hub did not give its wheel: {why or exc}")
    print(json.dumps({"status": exc.code, "error": why or str(exc)}))
    sys.exit(3)
except (OSError, ValueError) as exc:
    reason = getattr(exc, "reason", None) or exc
    sys.exit(f"dashboard-agent: error: the hub at {hub} does not answer: {reason}")
'

hub_says() {  # hub_says check|wheel ARGS...; the token (for check) on stdin
    what=$1
    shift
    python3 -c "$HELPER" "$what" "$HUB" "$CA_FILE" "$@"
}

field() {  # field NAME: from the JSON on stdin
    python3 -c 'import json, sys; v = json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$1"
}

main() {
    TOKEN_FILE= CA_FILE= UNINSTALL= ALLOW_HTTP=
    while [ $# -gt 0 ]; do
        case $1 in
            --token-file) [ $# -ge 2 ] || die "--token-file needs a FILE (or - for standard input)"
                          TOKEN_FILE=$2; shift 2 ;;
            --ca-file) [ $# -ge 2 ] || die "--ca-file needs a FILE"; CA_FILE=$2; shift 2 ;;
            --uninstall) UNINSTALL=1; shift ;;
            --allow-http) ALLOW_HTTP=1; shift ;;
            -h|--help) sed -n '2,16p' "$0" 2>/dev/null | sed 's/^# \{0,1\}//'; exit 0 ;;
            *) die "unknown argument '$1' (see --help)" ;;
        esac
    done
    [ "$(id -u)" = 0 ] || die "run this as root (it installs a system service)"
    if [ -n "$UNINSTALL" ]; then
        uninstall
        return
    fi
    check_machine
    case $HUB in
        https://*) ;;
        *) [ -n "$ALLOW_HTTP" ] || die "the hub is $HUB, not https: the wheel and the token would \
travel unverified; give --allow-http to accept that on a network you trust" ;;
    esac
    if [ -n "$CA_FILE" ]; then
        [ -r "$CA_FILE" ] || die "--ca-file $CA_FILE: no such readable file"
    elif [ -f "$PREFIX/hub-ca.pem" ]; then
        CA_FILE=$PREFIX/hub-ca.pem  # the CA of the first install
    fi
    read_token
    ask_the_hub
    install_agent
    wait_for_the_hub
}

check_machine() {
    if [ ! -d /run/systemd/system ]; then
        die "this machine does not run systemd, so there is no service to install. Run the
agent under your own supervisor instead, as an unprivileged user:
  python3 -m venv $PREFIX/venv && $PREFIX/venv/bin/pip install $HUB/agent/$WHEEL
  DASHBOARD_HUB_URL=$LINK DASHBOARD_HUB_TOKEN_FILE=/path/to/token $PREFIX/venv/bin/python -m server agent
(the token file readable by that user only: chmod 600)"
    fi
    command -v python3 >/dev/null || die "no python3 here: install Python 3.11 or newer \
(Debian and Ubuntu: apt-get install python3 python3-venv), then run this again"
    found=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "python3 here is $found: the agent needs Python 3.11 or newer"
    python3 -c 'import ensurepip, venv' 2>/dev/null || die "python3 $found cannot make a \
virtual environment: install python3-venv (apt-get install python3-venv), then run this again"
}

read_token() {
    if [ -n "$TOKEN_FILE" ]; then
        if [ "$TOKEN_FILE" = - ]; then
            TOKEN=$(head -c 1024)
        else
            [ -r "$TOKEN_FILE" ] || die "--token-file $TOKEN_FILE: no such readable file"
            TOKEN=$(head -c 1024 "$TOKEN_FILE")
        fi
    elif [ -f "$CONF/token" ]; then
        TOKEN=$(cat "$CONF/token")  # a repair or an upgrade: the token it has
    else
        die "no token: give --token-file (the hub's Add host shows the whole line; or
python -m server add-agent NAME --print-install on the hub)"
    fi
    TOKEN=$(printf %s "$TOKEN" | tr -d ' \t\r\n')
    case $TOKEN in
        *[!A-Za-z0-9_-]*|'') die "that token is not one the hub makes (letters, digits, - and _)" ;;
    esac
}

ask_the_hub() {
    if ! ANSWER=$(printf %s "$TOKEN" | hub_says check); then
        case $ANSWER in
            '') exit 1 ;;  # no answer at all: the helper said why
            *) die "the hub refused: $(printf %s "$ANSWER" | field error). Nothing was installed or changed." ;;
        esac
    fi
    HOST=$(printf %s "$ANSWER" | field host)
    # A token is one machine's: while another machine's agent is connected with it, this
    # one would take its place at the hub. This machine's own agent (a repair, an upgrade)
    # has the same token in its file.
    if [ "$(printf %s "$ANSWER" | field connected)" = True ] &&
        ! { [ -f "$CONF/token" ] && [ "$(cat "$CONF/token")" = "$TOKEN" ]; }; then
        die "this token is in use: host $HOST's agent is connected to the hub now, from another
machine. Make a token for this machine (the hub's Add host, or add-agent NAME), or
remove-agent $HOST on the hub first. Nothing was installed or changed."
    fi
    say "the hub at $HUB knows this token: host $HOST"
}

unit_text() {
    ca_line= groups_line=
    [ -z "$CA_FILE" ] || ca_line="Environment=DASHBOARD_HUB_CA_FILE=$PREFIX/hub-ca.pem"
    # Containers are read through Docker's socket: its group, where there is one.
    ! getent group docker >/dev/null || groups_line="SupplementaryGroups=docker"
    cat <<EOF
# Written by $NAME's install.sh from $HUB: run it again to repair or upgrade.
[Unit]
Description=Host dashboard agent (reports this host to $HUB)
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
ExecStart=$PREFIX/venv/bin/python -m server agent
Environment=DASHBOARD_HUB_URL=$LINK
Environment=DASHBOARD_HUB_TOKEN_FILE=%d/token
$ca_line
Environment=DASHBOARD_DATA_DIR=%S/$NAME
Environment=DASHBOARD_LOG_DIR=%L/$NAME
LoadCredential=token:$CONF/token
WorkingDirectory=%S/$NAME
StateDirectory=$NAME
LogsDirectory=$NAME
Restart=always
RestartSec=2
# Reads the system, writes only its own state and logs. A user of its own, not a
# dynamic one: D-Bus (the services' states, through systemctl) must know its name.
User=$NAME
Group=$NAME
$groups_line
UMask=0077
NoNewPrivileges=yes
CapabilityBoundingSet=
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
RemoveIPC=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
# AF_NETLINK: the interfaces' addresses (getifaddrs); AF_UNIX: D-Bus, Docker.
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
LockPersonality=yes
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
EOF
}

put() {  # put FILE MODE: standard input into FILE if it differs; CHANGED=1 if it did
    tmp=$(mktemp "$1.XXXXXX")
    cat >"$tmp"
    chmod "$2" "$tmp"
    if [ -f "$1" ] && cmp -s "$tmp" "$1"; then
        rm -f "$tmp"
    else
        mv -f "$tmp" "$1"
        CHANGED=1
    fi
}

installed_version() {
    "$PREFIX/venv/bin/python" -c 'import importlib.metadata as m, server.fleet.agent
print(m.version("host-dashboard"))' 2>/dev/null || true
}

install_agent() {
    CHANGED= FRESH=
    [ -f "$UNIT" ] || FRESH=1
    umask 077
    mkdir -p "$CONF"
    chmod 700 "$CONF"
    printf '%s\n' "$TOKEN" | put "$CONF/token" 600
    umask 022  # the venv and the CA: read by the service's user
    getent passwd "$NAME" >/dev/null || useradd --system --user-group --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin "$NAME"
    mkdir -p "$PREFIX"
    [ -z "$CA_FILE" ] || [ "$CA_FILE" = "$PREFIX/hub-ca.pem" ] ||
        put "$PREFIX/hub-ca.pem" 644 <"$CA_FILE"
    if [ ! -x "$PREFIX/venv/bin/python" ]; then
        say "making a virtual environment in $PREFIX/venv"
        python3 -m venv "$PREFIX/venv"
    fi
    if [ "$(installed_version)" != "$VERSION" ] ||
        [ "$(cat "$PREFIX/wheel.sha256" 2>/dev/null)" != "$WHEEL_SHA256" ]; then
        work=$(mktemp -d)
        trap 'rm -rf "$work"' EXIT
        say "installing the agent $VERSION from the hub (its dependencies from the package index)"
        hub_says wheel "$WHEEL" "$WHEEL_SHA256" "$work/$WHEEL"
        "$PREFIX/venv/bin/pip" install --quiet --disable-pip-version-check "$work/$WHEEL"
        # The same version rebuilt: pip would keep what it has.
        "$PREFIX/venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
            --force-reinstall "$work/$WHEEL"
        printf '%s\n' "$WHEEL_SHA256" >"$PREFIX/wheel.sha256"
        [ "$(installed_version)" = "$VERSION" ] || die "the agent did not install in $PREFIX/venv"
        CHANGED=1
    fi
    unit_text | put "$UNIT" 644
    systemctl daemon-reload
    systemctl enable --quiet "$NAME"
    if [ -n "$CHANGED" ] || ! systemctl is-active --quiet "$NAME"; then
        # A restart stops the old agent with SIGTERM: it keeps what the hub has not
        # acknowledged in its state folder, and the new one sends it first.
        systemctl restart "$NAME"
        say "started $NAME.service (agent $VERSION)"
    else
        say "agent $VERSION already installed and running: nothing changed"
    fi
}

wait_for_the_hub() {
    waited=0
    while [ $waited -lt $WAIT_SECONDS ]; do
        if ANSWER=$(printf %s "$TOKEN" | hub_says check 2>/dev/null) &&
            [ "$(printf %s "$ANSWER" | field connected)" = True ] &&
            [ "$(printf %s "$ANSWER" | field agent_version)" = "$VERSION" ]; then
            age=$(printf %s "$ANSWER" | field last_sample_age)
            case $age in
                [0-4]|[0-4].*) say "the hub reports this host, $HOST: live (last sample ${age} s ago)"
                               return ;;
            esac
        fi
        sleep 1
        waited=$((waited + 1))
    done
    journalctl -u "$NAME" -n 15 --no-pager -o cat >&2 2>/dev/null || true
    if [ -n "$FRESH" ]; then
        systemctl disable --now --quiet "$NAME" || true
        die "the hub has no samples from this host after $WAIT_SECONDS s (the agent's log is above);
the agent is stopped: run this again once the cause is fixed"
    fi
    die "the hub has no samples from this host after $WAIT_SECONDS s: the agent's log is above"
}

uninstall() {
    if systemctl cat "$NAME" >/dev/null 2>&1; then
        systemctl disable --now --quiet "$NAME" || true
    fi
    rm -f "$UNIT"
    systemctl daemon-reload
    systemctl reset-failed "$NAME" 2>/dev/null || true
    ! getent passwd "$NAME" >/dev/null || userdel "$NAME"
    ! getent group "$NAME" >/dev/null || groupdel "$NAME"
    rm -rf "$PREFIX" "$CONF" "/var/lib/$NAME" "/var/log/$NAME"
    say "removed: the agent, its unit, token and files. On the hub, remove-agent revokes its token."
}

main "$@"
