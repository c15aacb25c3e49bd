"""Python and C++ on the same queues, managers and connections (the C++ side is
examples/cross/peer.cpp)."""

from __future__ import annotations

import subprocess
import threading

import xproc
from conftest import point_capnp
from xproc.connection import Listener


def run_peer(peer, *args: str) -> str:
    result = subprocess.run([str(peer), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_cpp_producer_python_consumer(peer, unique_name):
    run_peer(peer, "produce", unique_name, "3")
    q = xproc.Queue.open(unique_name, schema=point_capnp.Point)
    points = [q.get(timeout=10) for _ in range(3)]
    assert [(p.x, p.y, p.name) for p in points] == [(i, i * i, f"C++ point {i}") for i in range(3)]


def test_python_producer_cpp_consumer(peer, unique_name):
    q = xproc.Queue(name=unique_name, schema=point_capnp.Point)
    for i in range(3):
        q.put(point_capnp.Point.new_message(x=i, y=-i, name=f"Python point {i}"))
    out = run_peer(peer, "consume", unique_name, "3").splitlines()
    assert out == [f"C++ got x={i} y={-i} name=Python point {i}" for i in range(3)]


def test_cpp_proxies_against_a_python_manager(peer):
    with xproc.Manager(authkey=b"cross-language key") as manager:
        counts = manager.dict(name="counts")
        log = manager.list(name="log")
        counts["Python"] = 1
        out = run_peer(peer, "manager", manager.address, "cross-language key")
        assert counts.copy() == {"Python": 1, "C++": 1}
        assert log.copy() == ["hello from C++"]
        assert "C++ sees counts={'Python': 1, 'C++': 1}" in out


def test_python_proxies_against_a_cpp_manager(peer, tmp_path):
    address = str(tmp_path / "manager.sock")
    server = subprocess.Popen([str(peer), "serve-manager", address, "cpp key"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().startswith("ready")
        manager = xproc.connect(address, b"cpp key")
        manager.dict(name="counts").increment("Python", 2)
        manager.list(name="log").append("hello from Python")
        assert manager.list(name="log")[0] == "hello from Python"
        out, _ = server.communicate("", timeout=30)  # closing stdin ends the server
        assert "C++ server ends with counts={'Python': 2}" in out
    finally:
        server.kill()


def test_cpp_client_to_a_python_listener(peer, tmp_path):
    address = str(tmp_path / "listener.sock")
    with Listener(address, authkey=b"listener key") as listener:
        client = subprocess.Popen([str(peer), "client", address, "listener key"], stdout=subprocess.PIPE, text=True)
        with listener.accept() as conn:
            conn.send({"n": [1, 2], "text": "from Python"})
            reply = conn.recv()
        out, _ = client.communicate(timeout=30)
    assert reply == {"echo": {"n": [1, 2], "text": "from Python"}, "from": "C++"}
    assert "C++ client got {'n': [1, 2], 'text': 'from Python'}" in out


def test_cpp_client_with_a_wrong_key_is_refused_and_the_listener_goes_on(peer, tmp_path):
    address = str(tmp_path / "listener.sock")
    with Listener(address, authkey=b"right key") as listener:
        outcome = {}

        def bad_client():
            outcome["bad"] = subprocess.run([str(peer), "client", address, "wrong key"], capture_output=True,
                                            text=True, timeout=30)

        thread = threading.Thread(target=bad_client)
        thread.start()
        try:
            listener.accept()
        except xproc.AuthenticationError:
            pass
        thread.join()
        assert outcome["bad"].returncode == 1
        assert "digest" in outcome["bad"].stderr.lower() or "auth" in outcome["bad"].stderr.lower()
