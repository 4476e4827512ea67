"""Rendering the Puppet templates and running a real Nginx, for the deploy tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from testkit.serverproc import ROOT
from testkit.system import require_binary
from testkit.wait import wait_until

MODULE = ROOT / "deploy" / "puppet" / "modules" / "dashboard"
SITE_TEMPLATE = MODULE / "templates" / "nginx-site.conf.epp"
# The module's defaults, as scripts/render-nginx.sh renders deploy/nginx/dashboard.conf.
DEFAULT_SITE_VALUES: dict[str, str | int | bool] = {
    "server_name": "localhost",
    "listen": "80",
    "app_port": 5000,
    "static_dir": "/opt/dashboard/server/static",
    "errors_dir": "/opt/dashboard/deploy/nginx/errors",
}


def checkout_site(
    listen: str, app_port: int, server_name: str = "localhost", **extra: str | int | bool
) -> dict[str, str | int | bool]:
    """The site's values for an app run from this checkout (static files and 502 page here)."""
    return {
        **DEFAULT_SITE_VALUES,
        "server_name": server_name,
        "listen": listen,
        "app_port": app_port,
        "static_dir": str(ROOT / "server" / "static"),
        "errors_dir": str(ROOT / "deploy" / "nginx" / "errors"),
        **extra,
    }


def puppet_hash(values: dict[str, str | int | bool]) -> str:
    def literal(value: str | int | bool) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return "{" + ", ".join(f"{k} => {literal(v)}" for k, v in values.items()) + "}"


def render_epp(puppet: str, template: Path, values: dict[str, str | int | bool]) -> str:
    result = subprocess.run(
        [puppet, "epp", "render", str(template), "--values", puppet_hash(values)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Facter may complain on stderr inside a container; only the exit code counts.
    assert result.returncode == 0, result.stderr
    return result.stdout


def main_config(workdir: Path, site: Path, worker_connections: int = 1024) -> str:
    """An nginx.conf of our own: every path in `workdir`, the site included in http {}."""
    # As root, Nginx's workers would switch to `nobody`, who cannot use our
    # temp folders; this is a test harness, not the deployed config.
    user = "user root root;" if os.geteuid() == 0 else ""
    return f"""
{user}
daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
worker_rlimit_nofile {2 * worker_connections + 100};
events {{ worker_connections {worker_connections}; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {workdir}/access.log;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    include {site};
}}
"""


def nginx_test(
    nginx: str, workdir: Path, site_text: str, worker_connections: int = 1024
) -> subprocess.CompletedProcess[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    site = workdir / "site.conf"
    site.write_text(site_text)
    conf = workdir / "nginx.conf"
    conf.write_text(main_config(workdir, site, worker_connections))
    return subprocess.run(
        [nginx, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=60, check=False
    )


class NginxProcess:
    """A real Nginx in the foreground on a loopback port; stopped by its own PID."""

    def __init__(
        self, nginx: str, workdir: Path, site_text: str, port: int, worker_connections: int = 1024
    ) -> None:
        self.port = port
        checked = nginx_test(nginx, workdir, site_text, worker_connections)
        assert checked.returncode == 0, checked.stderr
        self.workdir = workdir
        self.proc = subprocess.Popen(
            [nginx, "-c", str(workdir / "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

        def listening() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"nginx exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                return False

        wait_until(listening, timeout=15, interval=0.1, what="nginx listening")

    def stop(self, graceful: bool = True) -> None:
        if self.proc.poll() is None:
            # SIGQUIT: finish requests, then exit; SIGTERM: close every connection now.
            self.proc.send_signal(signal.SIGQUIT if graceful else signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def make_ca_and_cert(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA, and a certificate it signed for localhost and 127.0.0.1."""
    openssl = require_binary("openssl")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=folder)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "site.key", "-out", "site.csr")  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "site.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "site.crt")  # fmt: skip
    return folder / "ca.crt", folder / "site.crt", folder / "site.key"


def build_agent_wheel(folder: Path, source: Path = ROOT) -> Path:
    """The wheel of `source` (this checkout) in `folder`, as `make agent-wheel` builds it
    for the hub: from a copy, as setuptools leaves its build/ beside what it builds."""
    with tempfile.TemporaryDirectory(prefix="wheel-") as work:
        copy = Path(work) / "src"
        copy.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (source / name).exists():
                shutil.copy(source / name, copy / name)
        shutil.copytree(source / "server", copy / "server",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
                        str(folder), str(copy)], check=True, timeout=600)  # fmt: skip
    return next(folder.glob("host_dashboard-*.whl"))
