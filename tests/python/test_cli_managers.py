"""`xproc ls --managers` and `xproc stat ADDRESS` against Managers started from Python and by
`xproc serve`: listed with address, pid and object counts while they serve, gone when they
stop, stale when killed; their named objects listed with the authkey from a file or the
environment, and refused with one line without it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

import xproc
from conftest import BUILD_DIR

XPROC = str(BUILD_DIR / "src" / "cli" / "xproc")


@pytest.fixture
def runtime_dir(tmp_path, monkeypatch):
    """A private XDG_RUNTIME_DIR for this test and the processes it starts."""
    path = tmp_path / "runtime"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(path))
    return path


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([XPROC, *args], capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, **(env or {})))


def managers() -> list:
    done = cli("ls", "--managers", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_for(predicate, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_a_python_manager_is_listed_with_its_counts_and_gone_when_it_stops(runtime_dir):
    assert cli("ls", "--managers").stdout == "no Manager is running for this user\n"
    with xproc.Manager(authkey=b"listed") as m:
        objects = [m.dict(), m.Queue(name="jobs")]

        def listed():
            found = [e for e in managers() if e["address"] == m.address]
            return found if found and found[0]["objects"] == 2 else None

        entry = wait_for(listed)
        assert entry and entry[0]["live"] and entry[0]["named"] == 1 and entry[0]["pid"] > 0
        table = cli("ls", "--managers").stdout
        assert m.address in table and "live" in table
        del objects
        address = m.address
    assert wait_for(lambda: not [e for e in managers() if e["address"] == address])


def test_a_killed_server_is_listed_as_stale(runtime_dir, tmp_path):
    server = subprocess.Popen([XPROC, "serve", "--address", str(tmp_path / "k.sock")], stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().startswith("serving on ")
    assert wait_for(lambda: [e for e in managers() if e["pid"] == server.pid and e["live"]])
    server.kill()
    server.wait(10)
    assert wait_for(lambda: [e for e in managers() if e["pid"] == server.pid and not e["live"]])
    assert "stale" in cli("ls", "--managers").stdout


def test_stat_lists_named_objects_with_the_key_from_a_file_or_the_environment(runtime_dir, tmp_path):
    key = tmp_path / "key"
    key.write_bytes(b"sekrit\n")
    key.chmod(0o600)
    address = str(tmp_path / "m.sock")
    server = subprocess.Popen([XPROC, "serve", "--address", address, "--authkey-file", str(key)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().startswith("serving on ")
        m = xproc.connect(address, b"sekrit")
        held = [m.dict(name="config"), m.Queue(name="jobs"), m.Lock(name="big-lock"), m.dict(),
                m.JoinableQueue(name="work")]
        done = cli("stat", address, "--authkey-file", str(key), "--json")
        assert done.returncode == 0, done.stderr
        named = {o["name"]: o["kind"] for o in json.loads(done.stdout)["named"]}
        assert named == {"config": "dict", "jobs": "queue", "big-lock": "lock", "work": "joinable_queue"}
        table = cli("stat", address, env={"XPROC_AUTHKEY": "sekrit"})
        assert table.returncode == 0, table.stderr
        assert "named     4" in table.stdout and "big-lock" in table.stdout and "queue" in table.stdout
        # Without the key, or with another one: one line, status 1.
        for env in ({}, {"XPROC_AUTHKEY": "wrong"}):
            refused = cli("stat", address, env=env)
            assert refused.returncode == 1 and refused.stdout == ""
            assert refused.stderr.startswith("xproc: ") and len(refused.stderr.splitlines()) == 1
        open_key = tmp_path / "open-key"
        open_key.write_bytes(b"sekrit")
        open_key.chmod(0o644)
        assert "readable by others" in cli("stat", address, "--authkey-file", str(open_key)).stderr
        del held
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)
    nobody = cli("stat", str(tmp_path / "nobody.sock"), env={"XPROC_AUTHKEY": "x"})
    assert nobody.returncode == 1 and len(nobody.stderr.splitlines()) == 1
