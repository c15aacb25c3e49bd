"""xproc Pipe/Connection/Listener/Client, and their compatibility with CPython's own."""

from __future__ import annotations

import array
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import socket
import threading
import time

import pytest

import xproc
import xproc._handles
from xproc.connection import Client, Listener, wait
from conftest import interrupt_python, point_capnp


def echo_twice(conn):
    conn.send(conn.recv() * 2)
    conn.close()


def send_three(conn):
    for message in (b"one", b"x" * 100_000, b"three"):
        conn.send_bytes(message)


def echo_until_none(conn):
    while (message := conn.recv_bytes()) != b"none":
        conn.send_bytes(message)


def test_duplex_pipe_both_ways():
    a, b = xproc.Pipe()
    a.send({"to": "b"})
    b.send(["to", "a"])
    assert b.recv() == {"to": "b"}
    assert a.recv() == ["to", "a"]


def test_one_way_pipe_refuses_the_wrong_direction():
    reader, writer = xproc.Pipe(duplex=False)
    writer.send(1)
    assert reader.recv() == 1
    with pytest.raises(OSError):
        reader.send(1)
    with pytest.raises(OSError):
        writer.recv()


def test_eof_after_the_peer_closes():
    a, b = xproc.Pipe()
    a.send("last")
    a.close()
    assert b.recv() == "last"
    with pytest.raises(EOFError):
        b.recv()


def test_send_after_the_peer_is_gone_is_broken_pipe():
    a, b = xproc.Pipe()
    b.close()
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        for _ in range(100):
            a.send_bytes(b"x" * 65536)


def test_bytes_offset_size_and_recv_into():
    a, b = xproc.Pipe()
    a.send_bytes(b"0123456789", 2, 5)
    assert b.recv_bytes() == b"23456"
    a.send_bytes(memoryview(b"abc"))
    buffer = bytearray(10)
    assert b.recv_bytes_into(buffer, 4) == 3
    assert bytes(buffer[4:7]) == b"abc"
    a.send_bytes(b"x" * 16)
    with pytest.raises(mp.BufferTooShort) as error:
        b.recv_bytes_into(bytearray(4))
    assert error.value.args[0] == b"x" * 16  # the whole message, nothing lost
    a.send_bytes(array.array("i", [1, 2]))
    assert len(b.recv_bytes()) == 8
    with pytest.raises(ValueError):
        a.send_bytes(b"abc", 4)
    with pytest.raises(ValueError):
        a.send_bytes(b"abc", 1, 5)
    a.send_bytes(b"still usable")
    assert b.recv_bytes() == b"still usable"


def test_messages_over_the_small_frame_size_go_out_whole():
    a, b = xproc.Pipe()
    big = {"blob": b"b" * 20000, "n": 1}
    a.send(big)
    a.send_bytes(b"y" * 20000, 10, 15000)
    a.send("small after big")
    assert b.recv() == big
    assert b.recv_bytes() == b"y" * 15000
    assert b.recv() == "small after big"


def test_poll_with_timeout():
    a, b = xproc.Pipe()
    assert not b.poll()
    started = time.monotonic()
    assert not b.poll(0.1)
    assert time.monotonic() - started >= 0.09
    a.send(1)
    assert b.poll(None)


def test_malformed_frame_is_decode_error_and_the_connection_goes_on():
    a, b = xproc.Pipe()
    a.send_bytes(b"\xff" * 16)
    a.send("good")
    with pytest.raises(xproc.DecodeError):
        b.recv()
    assert b.recv() == "good"


def test_typed_pipe_carries_structs():
    a, b = xproc.Pipe(schema=point_capnp.Point)
    a.send(point_capnp.Point.new_message(x=9, name="typed"))
    point = b.recv()
    assert (point.x, point.name) == (9, "typed")
    with pytest.raises(TypeError):
        a.send({"x": 9})


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_connection_passed_to_a_child(method):
    a, b = xproc.Pipe()
    child = mp.get_context(method).Process(target=echo_twice, args=(b,))
    child.start()
    a.send(21)
    assert a.recv() == 42
    child.join()
    assert child.exitcode == 0


def test_duplex_pipe_is_shared_memory_and_its_fileno_selects():
    import select

    a, b = xproc.Pipe()
    assert "shared memory" in repr(a)
    assert select.select([b], [], [], 0)[0] == []
    a.send(1)
    a.send(2)
    assert select.select([b], [], [], 0)[0] == [b]
    assert b.recv() == 1
    assert select.select([b], [], [], 0)[0] == [b]  # 2 still waits
    assert b.recv() == 2
    assert select.select([b], [], [], 0)[0] == []
    a.close()
    assert select.select([b], [], [], 0)[0] == [b]  # the hang-up
    with pytest.raises(EOFError):
        b.recv()


def test_a_pipe_holds_three_descriptors_as_it_was_made():
    def open_descriptors():
        return len(os.listdir("/proc/self/fd"))

    before = open_descriptors()
    a, b = xproc.Pipe()
    assert a._engine.shared_memory
    assert open_descriptors() - before == 3  # its two sockets and its memory
    a.send("x")
    assert b.recv() == "x"


def test_a_handle_reaches_recv_handle_past_wake_up_tokens():
    from xproc import reduction

    a, b = xproc.Pipe()
    for _ in range(3):
        # A receiver that looked and found nothing asks the next send for a token; the message
        # it then takes without sleeping leaves the token on the socket recv_handle reads.
        assert not b.poll(0)
        a.send("wake")
        assert b.recv() == "wake"
    r, w = os.pipe()
    try:
        reduction.send_handle(a, w, os.getpid())
        received = reduction.recv_handle(b)
        os.write(received, b"through")
        os.close(received)
        assert os.read(r, 16) == b"through"
    finally:
        os.close(r)
        os.close(w)
    a.send("after")
    assert b.recv() == "after"


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_small_and_large_messages_cross_a_shared_memory_pipe_to_a_child(method):
    a, b = xproc.Pipe()
    child = mp.get_context(method).Process(target=echo_until_none, args=(b,))
    child.start()
    b.close()
    for size in (0, 10, 70_000, 5, 1 << 20, 64 * 1024):
        payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        a.send_bytes(payload)
        assert a.recv_bytes() == payload
    a.send_bytes(b"none")
    child.join()
    assert child.exitcode == 0
    with pytest.raises(EOFError):
        a.recv_bytes()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_one_way_shared_memory_pipe_from_a_child(method):
    reader, writer = xproc.Pipe(duplex=False)
    assert "shared memory" in repr(writer)
    child = mp.get_context(method).Process(target=send_three, args=(writer,))
    child.start()
    writer.close()
    assert [reader.recv_bytes() for _ in range(3)] == [b"one", b"x" * 100_000, b"three"]
    child.join()
    with pytest.raises(EOFError):
        reader.recv_bytes()


def test_listener_and_client_with_authkey():
    with Listener(authkey=b"secret") as listener:
        result = {}

        def client():
            with Client(listener.address, authkey=b"secret") as conn:
                result["got"] = conn.recv()

        thread = threading.Thread(target=client)
        thread.start()
        with listener.accept() as conn:
            conn.send({"hello": "client"})
        thread.join()
    assert result["got"] == {"hello": "client"}


def test_tcp_address_is_a_tuple_as_in_multiprocessing():
    with Listener(("127.0.0.1", 0), authkey=b"k") as listener:
        host, port = listener.address
        assert host == "127.0.0.1" and port > 0


def test_wrong_authkey_is_authentication_error_and_the_listener_serves_the_next():
    with Listener(authkey=b"right") as listener:
        outcome = {}

        def bad_client():
            try:
                Client(listener.address, authkey=b"wrong")
            except mp.AuthenticationError:
                outcome["bad"] = "refused"

        thread = threading.Thread(target=bad_client)
        thread.start()
        with pytest.raises(mp.AuthenticationError):
            listener.accept()
        thread.join()
        assert outcome["bad"] == "refused"

        thread = threading.Thread(target=lambda: Client(listener.address, authkey=b"right").send("ok"))
        thread.start()
        assert listener.accept().recv() == "ok"
        thread.join()


def test_cpython_client_talks_to_an_xproc_listener():
    with Listener(("127.0.0.1", 0), authkey=b"k") as listener:
        def cpython_client():
            with mpc.Client(listener.address, authkey=b"k") as conn:
                conn.send_bytes(conn.recv_bytes() + b" back")

        thread = threading.Thread(target=cpython_client)
        thread.start()
        conn = listener.accept()
        conn.send_bytes(b"there and")
        assert conn.recv_bytes() == b"there and back"
        thread.join()


def test_xproc_client_talks_to_a_cpython_listener():
    with mpc.Listener(("127.0.0.1", 0), authkey=b"k") as listener:
        def xproc_client():
            with Client(listener.address, authkey=b"k") as conn:
                conn.send_bytes(xproc.encode({"from": "xproc"}))

        thread = threading.Thread(target=xproc_client)
        thread.start()
        with listener.accept() as conn:
            assert xproc.decode(conn.recv_bytes()) == {"from": "xproc"}
        thread.join()


def test_wait_returns_the_ready_connections():
    a, b = xproc.Pipe()
    c, d = xproc.Pipe()
    assert wait([b, d], timeout=0.05) == []
    c.send(1)
    assert wait([b, d], timeout=5) == [d]


def test_wait_is_woken_by_a_send_and_mixes_with_other_descriptors():
    import socket

    a, b = xproc.Pipe()
    c, d = xproc.Pipe(duplex=False)
    s1, s2 = socket.socketpair()
    threading.Timer(0.05, lambda: a.send("late")).start()
    started = time.monotonic()
    assert wait([b, c, s1], timeout=5) == [b]
    assert time.monotonic() - started < 4
    assert b.recv() == "late"
    s2.send(b"x")
    assert wait([b, c, s1], timeout=5) == [s1]
    d.send(1)
    assert wait([b, c, s1], timeout=5) == [c, s1]
    s1.close()
    s2.close()


def test_ctrl_c_interrupts_recv():
    code = (
        "import xproc\n"
        "a, b = xproc.Pipe()\n"
        "print('blocking', flush=True)\n"
        "try:\n"
        "    b.recv()\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    assert interrupt_python(code).stdout == "interrupted"


@pytest.mark.parametrize("address, family", [("\\\\.\\pipe\\x", None), ("/tmp/any", "AF_PIPE"), (None, "AF_OTHER")])
def test_a_family_this_platform_lacks_is_refused_as_multiprocessing_does(address, family):
    with pytest.raises(ValueError, match="is not recognized"):
        xproc.connection.Listener(address, family)
    with pytest.raises(ValueError, match="is not recognized"):
        xproc.connection.Client(address or "/tmp/any", family)


def test_send_bytes_takes_offsets_and_sizes_as_multiprocessing_s():
    a, b = xproc.Pipe()
    msg = b"abcdefghijklmnopqrstuvwxyz"
    for args, sent in [((5,), msg[5:]), ((7, 8), msg[7:15]), ((26,), b""), ((26, 0), b"")]:
        a.send_bytes(msg, *args)
        assert b.recv_bytes() == sent
    for args in [(27,), (22, 5), (26, 1), (-1,), (4, -1)]:
        with pytest.raises(ValueError):
            a.send_bytes(msg, *args)
    a.send_bytes(array.array("i", [1, 2, 3]), 4, 4)  # bytes, not items
    assert b.recv_bytes() == array.array("i", [2]).tobytes()


def answer_through_what_arrives(conn):
    reply_end = conn.recv()  # a shared-memory Pipe end
    reply_end.send("through a pipe end")
    sock = conn.recv()  # a socket
    sock.sendall(b"through a socket")
    queue_end = conn.recv()  # a Listener's connection, sent inside a tuple
    queue_end[0].send(queue_end[1])
    conn.close()


def test_connections_and_sockets_travel_in_messages_as_multiprocessing_s():
    conn, child_conn = xproc.Pipe()
    child = mp.get_context("fork").Process(target=answer_through_what_arrives, args=(child_conn,))
    child.start()
    child_conn.close()
    r, w = xproc.Pipe(duplex=False)
    conn.send(w)
    w.close()
    assert r.recv() == "through a pipe end"
    a, b = socket.socketpair()
    conn.send(a)
    a.close()
    assert b.recv(100) == b"through a socket"
    with Listener() as listener:
        client = Client(listener.address)
        conn.send((listener.accept(), "through a listener's connection"))
        assert client.recv() == "through a listener's connection"
    child.join(30)
    assert child.exitcode == 0
    q = xproc.Queue()  # and through a queue, within one process too
    r, w = xproc.Pipe()
    q.put({"end": w})
    q.get(timeout=10)["end"].send("queued")
    assert r.recv() == "queued"


def serve_as_nobody(path, ready):
    os.setgid(65534)
    os.setuid(65534)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()
    ready.send(True)
    server.accept()
    time.sleep(60)


@pytest.mark.skipif(os.geteuid() != 0, reason="serving as another user takes root")
def test_descriptors_are_fetched_only_from_a_process_of_this_user(monkeypatch):
    path = f"\0xproc-test-sharer-{os.getpid()}"  # abstract: no directory to be allowed into
    ready_r, ready_w = mp.Pipe(duplex=False)
    server = mp.get_context("fork").Process(target=serve_as_nobody, args=(path, ready_w), daemon=True)
    server.start()
    assert ready_r.poll(30) and ready_r.recv()

    class Marker:
        pass

    def share_as_that_user(obj):
        return (path, [1], "socket", (int(socket.AF_UNIX), int(socket.SOCK_STREAM), 0)) if isinstance(obj, Marker) else None

    monkeypatch.setattr(xproc._handles, "share", share_as_that_user)
    message = xproc.encode(Marker())
    with pytest.raises(PermissionError, match="uid 65534"):
        xproc.decode(message)
    server.kill()
    server.join()


@pytest.mark.parametrize(
    "handle, error",
    [
        (("\0xproc-test-nobody-listens", [1], "socket", (1, 1, 0)), ConnectionRefusedError),
        (("/nonexistent/sharer", [1], "connection", (True, True, "0x0")), FileNotFoundError),
        (("\0xproc-test-nobody-listens", list(range(7)), "pipe_end", (0, True, True, "0x0")), ValueError),
        (("\0xproc-test-nobody-listens", [], "socket", (1, 1, 0)), ValueError),
    ],
)
def test_a_handle_that_cannot_be_fetched_is_a_clear_error(monkeypatch, handle, error):
    class Marker:
        pass

    monkeypatch.setattr(xproc._handles, "share", lambda obj: handle if isinstance(obj, Marker) else None)
    message = xproc.encode(Marker())
    with pytest.raises(error):
        xproc.decode(message)
