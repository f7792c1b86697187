"""Installed, not only checked out (SPEC §4): a wheel built from this tree,
installed with ``pip install`` into a fresh virtualenv, gives a ``gateway``
that works from any directory — migrations, mail templates and the example
config ship inside it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "rules" / "new-request-de.eml"


def run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY") and k != "VIRTUAL_ENV"}
    base.update(env)
    result = subprocess.run(cmd, cwd=cwd, env=base, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{cmd}: {result.stdout}\n{result.stderr}"
    return result


def test_wheel_in_fresh_venv_works_from_any_directory(tmp_path: Path) -> None:
    # Build from a copy: an in-tree build leaves build/ behind, whose stale
    # files a later build of the checkout would ship.
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "var", "build", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(src)], tmp_path)
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)], tmp_path)
    gateway = str(venv / "bin" / "gateway")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # the example config ships in the wheel and is valid
    example = run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.resources as r; print(r.files('gateway._config') / 'gateway.example.toml')",
        ],
        elsewhere,
    ).stdout.strip()
    assert Path(example).is_file() and str(venv) in example
    run([gateway, "--config", example, "check-config"], elsewhere)

    # migrations: the embedded SQLite is created under ./var of this directory
    run([gateway, "ingest", str(FIXTURE)], elsewhere)
    assert (elsewhere / "var" / "gateway.db").is_file()
    tickets = json.loads(run([gateway, "ticket", "list", "--json"], elsewhere).stdout)
    assert [t["key"] for t in tickets] == ["SD-1"]

    # templates: the queued invitation renders and lands in the Maildir
    run([gateway, "outbox", "flush"], elsewhere)
    sent = list((elsewhere / "var" / "sent" / "new").iterdir())
    assert len(sent) == 1
    assert b"SD-1" in sent[0].read_bytes()

    # the portal: its pages and stylesheet ship too, and it answers
    portal = run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "from gateway.outbound.templates import template_dir; d = template_dir('web');"
            " print(d); print((d / 'static' / 'portal.css').is_file(), (d / 'login.html.j2').is_file())",
        ],
        elsewhere,
    ).stdout.split()
    assert str(venv) in portal[0] and portal[1:] == ["True", "True"]
    from netutil import free_port

    port = free_port()
    web_env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY") and k != "VIRTUAL_ENV"}
    web_env["GATEWAY__WEB__LISTEN"] = f"127.0.0.1:{port}"
    web = subprocess.Popen([gateway, "web"], cwd=elsewhere, env=web_env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    try:
        import time
        import urllib.request

        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/portal.css", timeout=5) as reply:
                    assert reply.status == 200 and b"--brand" in reply.read()
                break
            except OSError:
                assert web.poll() is None and time.monotonic() < deadline, "gateway web did not answer"
                time.sleep(0.2)
    finally:
        web.terminate()
        assert web.wait(30) == 0
