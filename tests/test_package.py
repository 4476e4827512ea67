"""The package installs as Python users install it: a wheel, a fresh venv, any directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
import requests

from testkit.serverproc import ROOT, free_port, run_server_command
from testkit.wait import wait_until

pytestmark = pytest.mark.e2e


def test_the_console_script_is_python_m_server() -> None:
    """`host-dashboard` is declared, installed beside this Python, and does what
    `python -m server` does (here: --help, and the exit status of a bad flag)."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"host-dashboard": "server.__main__:main"}
    script = Path(sysconfig.get_path("scripts")) / "host-dashboard"
    assert script.exists(), f"{script}: reinstall the package (make, or pip install -e .)"
    for args in (["--help"], ["--port", "web"]):
        ran = subprocess.run([script, *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
        same = run_server_command(*args)
        assert ran.returncode == same.returncode, args
        assert (ran.stdout, ran.stderr) == (same.stdout, same.stderr), args
    assert ran.returncode == 2 and "setting 'port'" in ran.stderr


def test_wheel_in_a_fresh_venv_serves_from_any_directory(tmp_path: Path) -> None:
    # Built from a copy: setuptools writes build/ into the tree it builds.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "data", "logs", "*.egg-info")
    )
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("host_dashboard-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # The dependencies come from this venv (no second download); the package
    # itself only from the wheel.
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [python, "-c", "import server; print(server.__file__, server.__version__)"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where[0].startswith(site), where
    helped = subprocess.run(
        [venv / "bin" / "host-dashboard", "--help"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert helped.returncode == 0 and "--config" in helped.stdout, helped.stderr
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert where[1] == version

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_")}
    proc = subprocess.Popen(
        [python, "-m", "server", "--port", str(port), "--async-mode", "eventlet"],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                return requests.get(url + "/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, timeout=30, interval=0.2, what="the installed server healthy")
        page = requests.get(url + "/", timeout=5)
        assert page.status_code == 200 and 'id="chart-cpu"' in page.text
        assert requests.get(url + "/static/app.js", timeout=5).status_code == 200
        log = elsewhere / "logs" / "dashboard.log"
        assert "serving http://127.0.0.1" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(10)
