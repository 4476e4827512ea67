"""Deploy files: Nginx site, Puppet module, systemd unit and Vagrantfile are valid."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from server.web.pages import CSP
from testkit.deploytools import (
    DEFAULT_SITE_VALUES,
    MODULE,
    SITE_TEMPLATE,
    checkout_site,
    nginx_test,
    render_epp,
)
from testkit.serverproc import ROOT
from testkit.system import require_binary

PUPPET = ROOT / "deploy" / "puppet"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )


SITES = {"dashboard.conf": 0, "dashboard-scaled.conf": 2}  # file -> web_workers


@pytest.mark.parametrize(("name", "workers"), SITES.items())
def test_committed_site_is_the_rendered_template(name: str, workers: int) -> None:
    puppet = require_binary("puppet")
    values = {**DEFAULT_SITE_VALUES, **({"web_workers": workers} if workers else {})}
    rendered = render_epp(puppet, SITE_TEMPLATE, values)
    committed = (ROOT / "deploy" / "nginx" / name).read_text()
    assert rendered == committed, "run scripts/render-nginx.sh after changing the template"


@pytest.mark.parametrize("name", SITES)
def test_nginx_accepts_the_committed_site(tmp_path: Path, name: str) -> None:
    nginx = require_binary("nginx")
    site = (ROOT / "deploy" / "nginx" / name).read_text()
    result = nginx_test(nginx, tmp_path, site)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_the_module_with_web_workers() -> None:
    """A core, two web processes and a Redis of their own, in one catalog."""
    result = apply_noop(
        "-e",
        f"class {{ 'dashboard': source_dir => '{ROOT}', allow_anonymous => true, "
        "web_workers => 2, queue_password => 'a-queue-password-1' }",
    )
    assert result.returncode in (0, 2), result.stdout + result.stderr
    for resource in (
        "Service[dashboard-web@5001]",
        "Service[dashboard-web@5002]",
        "Service[dashboard-redis]",
        "File[/etc/systemd/system/dashboard-web@.service]",
    ):
        assert resource in result.stdout, resource
    refused = apply_noop(
        "-e",
        f"class {{ 'dashboard': source_dir => '{ROOT}', allow_anonymous => true, "
        "web_workers => 2 }",
    )
    assert refused.returncode not in (0, 2)
    assert "needs queue_password" in refused.stdout + refused.stderr


def test_nginx_accepts_the_site_as_puppet_renders_it(tmp_path: Path) -> None:
    nginx = require_binary("nginx")
    puppet = require_binary("puppet")
    site = render_epp(
        puppet,
        SITE_TEMPLATE,
        checkout_site("127.0.0.1:8088", 5123, "dashboard.example.net"),
    )
    assert "server 127.0.0.1:5123;" in site
    assert "server_name dashboard.example.net;" in site
    assert f"alias {ROOT}/server/static/;" in site
    result = nginx_test(nginx, tmp_path, site)
    assert result.returncode == 0, result.stderr


def test_site_has_the_required_hardening() -> None:
    site = (ROOT / "deploy" / "nginx" / "dashboard.conf").read_text()
    for directive in (
        "server_tokens off;",
        "client_header_timeout",
        "client_body_timeout",
        "limit_conn dashboard_per_ip",
        "gzip on;",
        "default_server",
        "proxy_http_version 1.1;",
        "proxy_buffering off;",
        "proxy_set_header Host $http_host;",
        "X-Forwarded-Proto",
        "Content-Security-Policy",
        "error_page 502",
    ):
        assert directive in site, directive


def test_puppet_parser_validate_and_lint() -> None:
    puppet = require_binary("puppet")
    lint = require_binary("puppet-lint")
    manifests = [str(PUPPET / "manifests" / "site.pp"), str(MODULE / "manifests" / "init.pp")]
    validated = run(puppet, "parser", "validate", *manifests)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    linted = run(lint, "--fail-on-warnings", str(PUPPET))
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert linted.stdout.strip() == ""


def apply_noop(*what: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`puppet apply --noop` with the project's modules; exit 2 means changes, not failure."""
    puppet = require_binary("puppet")
    modules = str(PUPPET / "modules")
    noop = ("apply", "--noop", "--detailed-exitcodes", "--color=false", "--modulepath", modules)
    return run(puppet, *noop, *what, env=env)


def test_puppet_apply_noop_of_site_pp() -> None:
    result = apply_noop(
        str(PUPPET / "manifests" / "site.pp"), env={"FACTER_dashboard_source": str(ROOT)}
    )
    # --detailed-exitcodes: 0 nothing to do, 2 changes; 1, 4 and 6 are failures.
    assert result.returncode in (0, 2), result.stdout + result.stderr
    assert "Compiled catalog" in result.stdout
    for resource in (
        "Service[dashboard]",
        "Service[nginx]",
        "File[/etc/systemd/system/dashboard.service]",
        "File[/etc/nginx/sites-available/dashboard]",
        "User[dashboard]",
    ):
        assert resource in result.stdout, resource
    assert "Error:" not in result.stdout


def test_rendered_unit_is_hardened_and_verifies(tmp_path: Path) -> None:
    puppet = require_binary("puppet")
    unit = render_epp(
        puppet,
        MODULE / "templates" / "dashboard.service.epp",
        {
            "install_dir": str(ROOT),
            "user": "daemon",
            "config_file": "/etc/dashboard/d.toml",
            "log_dir": "/var/log/dashboard",
            "data_dir": "/var/lib/dashboard",
        },
    )
    for line in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/log/dashboard /var/lib/dashboard",
        "Restart=on-failure",
        "--host 127.0.0.1",
    ):
        assert line in unit, line
    analyze = require_binary("systemd-analyze")
    path = tmp_path / "dashboard.service"
    path.write_text(unit)
    result = run(analyze, "verify", str(path))
    assert result.returncode == 0, result.stderr


def test_vagrantfile_validates() -> None:
    vagrant = require_binary("vagrant")
    result = run(vagrant, "validate", "--ignore-provider")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout
    text = (ROOT / "Vagrantfile").read_text()
    assert "guest: 80, host: 8080" in text
    assert 'manifests_path = "deploy/puppet/manifests"' in text
    assert 'module_path = "deploy/puppet/modules"' in text


def test_module_requires_a_password_unless_anonymous_on_purpose() -> None:
    bare = apply_noop("-e", f"class {{ 'dashboard': source_dir => '{ROOT}' }}")
    assert bare.returncode not in (0, 2)
    assert "set password_hash" in bare.stdout + bare.stderr
    secured = apply_noop(
        "-e",
        f"class {{ 'dashboard': source_dir => '{ROOT}', "
        "password_hash => 'scrypt:32768:8:1$abc$def' }",
    )
    assert secured.returncode in (0, 2), secured.stdout + secured.stderr


def test_rendered_settings_file() -> None:
    puppet = require_binary("puppet")
    toml = render_epp(
        puppet,
        MODULE / "templates" / "dashboard.toml.epp",
        {
            "app_port": 5000,
            "log_dir": "/var/log/dashboard",
            "log_config": "/opt/d/logging.conf",
            "data_dir": "/var/lib/dashboard",
            "server_name": "dash.example.net",
            "password_hash": "scrypt:32768:8:1$abc$def",
            "allow_anonymous": False,
        },
    )
    import tomllib

    settings = tomllib.loads(toml)
    assert settings["proxy_hops"] == 1
    assert "dash.example.net" in settings["allowed_hosts"]
    assert settings["password_hash"].startswith("scrypt:")
    assert settings["allow_anonymous"] is False


@pytest.mark.parametrize("path", [SITE_TEMPLATE, *(ROOT / "deploy" / "nginx" / n for n in SITES)])
def test_site_sends_the_app_s_security_policy(path: Path) -> None:
    """Nginx sends its own policy (on static files too): the app's, word for word
    (the inline script's hash included), with the socket's ws:// and wss://."""
    found = re.search(r'add_header Content-Security-Policy "([^"]*)" always;', path.read_text())
    assert found, path
    sockets = "connect-src 'self' ws://$http_host wss://$http_host"
    assert found.group(1) == CSP.replace("connect-src 'self'", sockets)
