"""The portal as operators run it: ``gateway serve`` starts it in processes
of its own on ``[web] listen`` and supervises them (a worker that dies is
started again, SIGTERM stops them all, none outlives the daemon); a listen
address that cannot be bound does not stop the mail side; ``gateway web``
runs it alone."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from gatewayproc import GatewayProcess, message
from netutil import free_port


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_until_up(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if get(url)[0] == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer"
        time.sleep(0.1)


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def web_workers(pid: int, port: int) -> list[int]:
    """The daemon's children that hold the portal's listening socket."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    holders = {int(p) for p in re.findall(r"pid=(\d+)", out)}
    return sorted(holders & set(children(pid)))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return status != "Z"


def test_serve_runs_and_supervises_the_portal(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    gw = GatewayProcess(tmp_path, web={"listen": f"127.0.0.1:{port}", "processes": 2},
                        desk={"portal_url": url}, workers={"parse_processes": 1})
    gw.start()
    try:
        gw.wait_for_log(f"web listening on 127.0.0.1:{port}")
        wait_until_up(url + "/login")
        status, page = get(url + "/login")
        assert status == 200 and 'name="csrf_token"' in page
        assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o077 == 0  # generated, private
        # Mail keeps flowing next to it.
        with socket.create_connection(("127.0.0.1", gw.port)) as sock:
            import smtplib

            smtp = smtplib.SMTP()
            smtp.sock = sock
            smtp.file = None  # type: ignore[assignment]
            smtp.getreply()
            smtp.sendmail("anna@bauwerk-ag.de", ["servicedesk@xitrust.com"], message(1))
            smtp.quit()
        gw.wait_processed(1)
        # A portal worker that dies is started again.
        assert gw.proc is not None
        before = set(web_workers(gw.proc.pid, port))
        assert before, children(gw.proc.pid)
        victim = sorted(before)[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            now = set(web_workers(gw.proc.pid, port))
            if len(now - before) >= 1 and victim not in now:
                break
            assert time.monotonic() < deadline, f"not restarted: {before} -> {now}\n{gw.log_text()}"
            time.sleep(0.2)
        assert "web worker" in gw.log_text() and "starting it again" in gw.log_text()
        wait_until_up(url + "/")
        workers = web_workers(gw.proc.pid, port)
    finally:
        assert gw.stop() == 0
    # Stopped with the daemon: no worker left, the port is free.
    deadline = time.monotonic() + 10
    while any(alive(w) for w in workers):
        assert time.monotonic() < deadline, "a portal worker outlived the daemon"
        time.sleep(0.1)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_a_busy_portal_address_does_not_stop_the_mail(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        gw = GatewayProcess(tmp_path, web={"listen": f"127.0.0.1:{port}"})
        gw.start()
        try:
            log = gw.wait_for_log(f"web: cannot listen on 127.0.0.1:{port}")
            assert "Address already in use" in log and "Traceback" not in log
            assert gw.proc is not None and gw.proc.poll() is None  # still serving mail
        finally:
            assert gw.stop() == 0


def test_gateway_web_runs_the_portal_alone(tmp_path: Path) -> None:
    port = free_port()
    gw = GatewayProcess(tmp_path, web={"listen": f"127.0.0.1:{port}"})
    log = tmp_path / "web.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "web"], env=gw.env, cwd=gw.state,
                                stdout=err, stderr=err)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/")
        status, page = get(f"http://127.0.0.1:{port}/signup?lang=en")
        assert status == 200 and "Register" in page
        assert get(f"http://127.0.0.1:{port}/no-such-page")[0] == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    assert f"web listening on 127.0.0.1:{port}" in log.read_text()
    # Nothing to serve: a clear one-line error.
    env = {**gw.env, "GATEWAY__WEB__LISTEN": ""}
    done = subprocess.run([sys.executable, "-m", "gateway", "web"], env=env, cwd=gw.state,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "[web] listen is empty" in done.stderr
