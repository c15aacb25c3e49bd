"""`xproc bridge out` and `xproc bridge in` between local named queues and real nats-server
processes: a round trip through a replicated stream, the bridges and the servers killed
mid-stream, a schema mismatch, a full destination queue, signals, refused credentials and
unreachable servers. Messages are numbered so that every check is a sequence check.

What the bridges guarantee, and so what is asserted:
- out: every message is stored once, in queue order, through server kills, cluster restarts
  and its own SIGKILL (a republish after a kill between the store and the removal carries
  the same Nats-Msg-Id, and the stream drops it);
- in: every message reaches the local queue at least once and in stream order; within one
  run of the bridge none twice; a bridge SIGKILLed between a put and its acknowledgement
  leaves that one message to be put again, right behind its first copy (at most one
  duplicate per kill); the messages it had fetched and not put come again after --ack-wait,
  and its successor waits for them.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from queue import Empty
from typing import List, Optional

import pytest

import xproc
from xproc import _xproc
import capnp  # noqa: E402  (after xproc: see tests/python/conftest.py)
import nats as nats_py

from nats_cluster import NatsCluster, free_port

SOURCE_DIR = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("XPROC_BUILD_DIR", SOURCE_DIR / "build" / "default"))
XPROC = os.environ.get("XPROC_CLI") or str(BUILD_DIR / "src" / "cli" / "xproc")
point_capnp = capnp.load(str(SOURCE_DIR / "examples" / "cpp" / "point.capnp"))

POINT_SCHEMA_ID = f"{point_capnp.Point.schema.node.id:#018x}"
# Short, so that what a killed inbound bridge held comes back within the test.
ACK_WAIT = "2"
ACK_WAIT_S = 2


class Bridge:
    """One `xproc bridge ...` process; its stdout and stderr are collected as they come."""

    def __init__(self, *args: str, env: Optional[dict] = None) -> None:
        self.args = [XPROC, "bridge", *args]
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=env)
        self.out: List[str] = []
        self.err: List[str] = []
        self.running = threading.Event()
        self._readers = [threading.Thread(target=self._read, args=(self.process.stdout, self.out), daemon=True),
                         threading.Thread(target=self._read, args=(self.process.stderr, self.err), daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, lines: List[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))
            if line.rstrip().endswith(" running"):
                self.running.set()

    def wait_running(self, timeout: float = 30) -> "Bridge":
        deadline = time.monotonic() + timeout
        while not self.running.wait(0.1):
            assert self.process.poll() is None, f"bridge exited {self.process.returncode}: {self.output()}"
            assert time.monotonic() < deadline, f"bridge not running after {timeout} s: {self.output()}"
        return self

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.wait(10)

    def terminate(self, timeout: float = 10) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def totals(self) -> dict:
        """The numbers of the line printed when it stopped."""
        line = next(line for line in reversed(self.out) if "stopped;" in line or "failed;" in line)
        numbers = re.search(r"forwarded (\d+) messages? \((\d+) bytes?\), (\d+) duplicates?, (\d+) retr", line)
        assert numbers, line
        messages, size, duplicates, retries = map(int, numbers.groups())
        return {"messages": messages, "bytes": size, "duplicates": duplicates, "retries": retries}

    def output(self) -> str:
        return "\n".join(self.out + self.err)


@pytest.fixture
def bridges():
    """Starts bridges; any still running at the end is killed. What each printed is shown
    with a failed test's output."""
    started: List[Bridge] = []

    def start(*args: str, env: Optional[dict] = None) -> Bridge:
        bridge = Bridge(*args, env=env)
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        if bridge.process.poll() is None:
            bridge.kill()
        print(f"--- {' '.join(bridge.args[2:4])} (exit status {bridge.process.returncode})\n{bridge.output()}")


@pytest.fixture
def receivers():
    """Starts receivers; each is stopped at the end, so that no thread is left in a get."""
    started: List["Receiver"] = []

    def start(queue: xproc.Queue) -> "Receiver":
        receiver = Receiver(queue)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def names():
    """Fresh queue names, removed afterwards."""
    made: List[str] = []

    def make(what: str) -> str:
        name = f"nats-{os.getpid()}-{uuid.uuid4().hex[:8]}-{what}"
        made.append(name)
        return name

    yield make
    for name in made:
        xproc.Queue.remove(name)


def servers(cluster: NatsCluster) -> str:
    return ",".join(cluster.urls)


def out_args(queue: str, subject: str, cluster: NatsCluster, *extra: str) -> List[str]:
    return ["out", queue, "--subject", subject, "--servers", servers(cluster), "--stats-interval", "0", *extra]


def in_args(queue: str, stream: str, consumer: str, cluster: NatsCluster, *extra: str) -> List[str]:
    return ["in", queue, "--stream", stream, "--consumer", consumer, "--servers", servers(cluster),
            "--stats-interval", "0", "--ack-wait", ACK_WAIT, *extra]


def js_call(cluster: NatsCluster, call, timeout: float = 30):
    """Runs `call(js)` (a coroutine function) with a nats-py JetStream context, again while
    the cluster does not answer (a leader being elected after a kill)."""

    async def main():
        connection = await nats_py.connect(servers=cluster.urls, connect_timeout=5)
        try:
            return await call(connection.jetstream())
        finally:
            await connection.close()

    deadline = time.monotonic() + timeout
    while True:
        try:
            return asyncio.run(main())
        except (nats_py.errors.TimeoutError, nats_py.errors.NoRespondersError,
                nats_py.js.errors.ServiceUnavailableError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def stream_info(cluster: NatsCluster, stream: str):
    return js_call(cluster, lambda js: js.stream_info(stream))


def consumer_info(cluster: NatsCluster, stream: str, consumer: str):
    return js_call(cluster, lambda js: js.consumer_info(stream, consumer))


def put_numbered(queue: xproc.Queue, first: int, count: int) -> None:
    for seq in range(first, first + count):
        queue.put({"seq": seq, "pad": "x" * 64})


class Receiver:
    """Takes the numbered messages from a local queue in a thread, in arrival order."""

    def __init__(self, queue: xproc.Queue) -> None:
        self.queue = queue
        self.seqs: List[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.seqs.append(self.queue.get(timeout=0.1)["seq"])
            except Empty:
                pass

    def wait_distinct(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(set(self.seqs)) < count:
            assert time.monotonic() < deadline, (
                f"{len(set(self.seqs))} of {count} messages after {timeout} s; missing from "
                f"{min(set(range(count)) - set(self.seqs))}")
            time.sleep(0.05)

    def wait_count(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.seqs) < count:
            assert time.monotonic() < deadline, f"{len(self.seqs)} of {count} messages after {timeout} s"
            time.sleep(0.02)

    def stop(self) -> List[int]:
        self._stop.set()
        self._thread.join(5)
        return self.seqs


def duplicated(seqs: List[int]) -> List[int]:
    seen, twice = set(), []
    for seq in seqs:
        if seq in seen:
            twice.append(seq)
        seen.add(seq)
    return twice


def collapsed(seqs: List[int]) -> List[int]:
    """`seqs` with each run of one number cut to one."""
    return [seq for i, seq in enumerate(seqs) if i == 0 or seqs[i - 1] != seq]


def leader_index(cluster: NatsCluster, stream: str) -> int:
    return int(stream_info(cluster, stream).cluster.leader.lstrip("n"))


# ---------------------------------------------------------------------------------------


def test_round_trip_on_three_replicas_keeps_every_message_once_in_order_through_a_server_kill(
        nats_cluster, bridges, receivers, names):
    count = 2000
    a, b = names("a"), names("b")
    source, destination = xproc.Queue(name=a), xproc.Queue(name=b)
    put_numbered(source, 0, count)
    out = bridges(*out_args(a, "trip.a", nats_cluster, "--replicas", "3")).wait_running()
    inbound = bridges(*in_args(b, "trip_a", "trip", nats_cluster)).wait_running()
    assert stream_info(nats_cluster, "trip_a").config.num_replicas == 3
    receiver = receivers(destination)
    receiver.wait_count(count // 3, 60)
    # The stream's leader, with no goodbye: another is elected while both bridges work.
    nats_cluster.kill(leader_index(nats_cluster, "trip_a"))
    receiver.wait_distinct(count, 120)
    time.sleep(0.5)  # a duplicate would come right behind
    assert receiver.stop() == list(range(count))
    assert out.terminate() == 0 and inbound.terminate() == 0
    assert out.totals()["messages"] == count and inbound.totals()["messages"] == count
    assert source.qsize() == 0 and stream_info(nats_cluster, "trip_a").state.messages == count


def test_outbound_bridge_killed_mid_stream_and_restarted_stores_every_message_once(
        nats_cluster, bridges, receivers, names):
    count = 2000
    a, b = names("a"), names("b")
    source, destination = xproc.Queue(name=a), xproc.Queue(name=b)
    put_numbered(source, 0, count)
    out = bridges(*out_args(a, "kill.out", nats_cluster, "--replicas", "3")).wait_running()
    inbound = bridges(*in_args(b, "kill_out", "reader", nats_cluster)).wait_running()
    receiver = receivers(destination)
    for at in (400, 900, 1400):
        receiver.wait_count(at, 60)
        out.kill()
        out = bridges(*out_args(a, "kill.out", nats_cluster, "--replicas", "3")).wait_running()
    receiver.wait_distinct(count, 120)
    time.sleep(ACK_WAIT_S + 1)  # a duplicate would be in the stream, and so here, by now
    assert receiver.stop() == list(range(count))
    assert stream_info(nats_cluster, "kill_out").state.messages == count
    assert out.terminate() == 0 and inbound.terminate() == 0


def test_a_message_stored_by_a_bridge_killed_before_removing_it_is_not_stored_twice(nats_server, bridges, names):
    # The window between the store and the removal is too short to hit with a kill on
    # purpose, so the killed bridge's publish is made by hand: the next message, with the
    # id the bridge gives it (learnt from the first message's), as the bridge would have.
    a, b = names("a"), names("b")
    source = _xproc.Queue(schema_id=0, name=a)  # raw bytes, so that the test knows them
    source.put_bytes(b"m0")
    first = bridges(*out_args(a, "dedup.x", nats_server)).wait_running()
    deadline = time.monotonic() + 30
    while stream_info(nats_server, "dedup_x").state.messages < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert first.terminate() == 0
    for i in range(1, 10):
        source.put_bytes(b"m%d" % i)

    async def stored_ids(js):
        sub = await js.pull_subscribe("dedup.x", durable="peek", stream="dedup_x")
        messages = await sub.fetch(100, timeout=2)
        return [(m.data, m.headers) for m in messages]

    (data, headers), = js_call(nats_server, stored_ids)
    assert data == b"m0" and headers["Xproc-Schema-Id"] == "0x0000000000000000"
    prefix, got = headers["Nats-Msg-Id"].rsplit(":", 1)
    assert prefix.startswith(a + ":") and got == "0"

    async def publish_as_the_killed_bridge(js):
        await js.publish("dedup.x", b"m1", headers={"Nats-Msg-Id": prefix + ":1",
                                                    "Xproc-Schema-Id": "0x0000000000000000"})

    js_call(nats_server, publish_as_the_killed_bridge)
    second = bridges(*out_args(a, "dedup.x", nats_server)).wait_running()
    destination = _xproc.Queue(schema_id=0, name=b)
    inbound = bridges(*in_args(b, "dedup_x", "reader", nats_server)).wait_running()
    received = [destination.get_bytes(timeout=30) for _ in range(10)]
    assert received == [b"m%d" % i for i in range(10)]
    assert second.terminate() == 0 and inbound.terminate() == 0
    totals = second.totals()
    assert (totals["messages"], totals["bytes"], totals["duplicates"]) == (9, 18, 1)
    assert stream_info(nats_server, "dedup_x").state.messages == 10
    with pytest.raises(Empty):
        destination.get_bytes(timeout=0.5)


def test_ids_another_publisher_puts_on_the_subject_neither_lose_nor_duplicate_a_message(nats_server, bridges, names):
    # The bridge starts its ids where the last one on the subject leaves them, and JetStream
    # drops a message whose id it holds already: a foreign message with this bridge's prefix
    # must neither move its count anywhere strange nor have a message of the queue dropped.
    a = names("a")
    source = _xproc.Queue(schema_id=0, name=a)
    source.put_bytes(b"m0")
    first = bridges(*out_args(a, "ids.x", nats_server)).wait_running()
    deadline = time.monotonic() + 30
    while stream_info(nats_server, "ids_x").state.messages < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert first.terminate() == 0

    def stored():
        async def read(js):  # through a new consumer each time, so from the stream's start
            sub = await js.pull_subscribe("ids.x", durable=f"peek-{uuid.uuid4().hex}", stream="ids_x")
            messages = await sub.fetch(100, timeout=2)
            return [(m.data, m.headers.get("Nats-Msg-Id")) for m in messages]
        return js_call(nats_server, read)

    (_, first_id), = stored()
    prefix = first_id.rsplit(":", 1)[0] + ":"

    def publish_foreign(data: bytes, message_id: str) -> None:
        async def publish(js):
            await js.publish("ids.x", data, headers={"Nats-Msg-Id": message_id,
                                                     "Xproc-Schema-Id": "0x0000000000000000"})
        js_call(nats_server, publish)

    # A count no bridge can have (past 2^64): ignored, the queue's own count stands.
    publish_foreign(b"foreign", prefix + "9" * 40)
    for i in range(1, 4):
        source.put_bytes(b"m%d" % i)
    second = bridges(*out_args(a, "ids.x", nats_server)).wait_running()
    deadline = time.monotonic() + 30
    while source.qsize() > 0:
        assert time.monotonic() < deadline, second.output()
        time.sleep(0.05)
    assert second.terminate() == 0
    assert (second.totals()["messages"], second.totals()["duplicates"]) == (3, 0)

    # The id the next message will get, taken first by another message: the bridge stops
    # with one line saying so, and the message stays in the queue.
    publish_foreign(b"taken", prefix + "4")
    source.put_bytes(b"m4")
    third = bridges(*out_args(a, "ids.x", nats_server))
    assert third.wait(30) == 1
    assert "another publisher on ids.x uses this bridge's ids" in third.output()
    assert source.get_bytes(timeout=0) == b"m4"
    assert [data for data, _ in stored()] == [b"m0", b"foreign", b"m1", b"m2", b"m3", b"taken"]


def test_inbound_bridge_killed_mid_stream_and_restarted_loses_nothing_and_keeps_the_order(
        nats_cluster, bridges, receivers, names):
    count = 2000
    kills = 2
    a, b = names("a"), names("b")
    source, destination = xproc.Queue(name=a), xproc.Queue(name=b)
    put_numbered(source, 0, count)
    out = bridges(*out_args(a, "kill.in", nats_cluster, "--replicas", "3")).wait_running()
    inbound = bridges(*in_args(b, "kill_in", "reader", nats_cluster)).wait_running()
    receiver = receivers(destination)
    for at in (600, 1300)[:kills]:
        receiver.wait_count(at, 60)
        inbound.kill()
        inbound = bridges(*in_args(b, "kill_in", "reader", nats_cluster)).wait_running()
    receiver.wait_distinct(count, 120)
    time.sleep(ACK_WAIT_S + 1)  # what the killed bridges held has come again by now
    seqs = receiver.stop()
    # In order; at most the message each killed bridge had put and not acknowledged comes
    # once more, right behind its first copy.
    assert collapsed(seqs) == list(range(count))
    assert len(seqs) - count == len(duplicated(seqs)) <= kills
    assert inbound.terminate() == 0 and out.terminate() == 0
    assert inbound.totals()["duplicates"] == 0


def test_bridges_carry_on_when_the_whole_cluster_stops_and_starts_again(nats_cluster, bridges, receivers, names):
    count = 2000
    a, b = names("a"), names("b")
    source, destination = xproc.Queue(name=a), xproc.Queue(name=b)
    put_numbered(source, 0, count)
    out = bridges(*out_args(a, "restart.x", nats_cluster, "--replicas", "3")).wait_running()
    inbound = bridges(*in_args(b, "restart_x", "reader", nats_cluster)).wait_running()
    receiver = receivers(destination)
    receiver.wait_count(700, 60)
    nats_cluster.stop()
    time.sleep(1)
    nats_cluster.start()
    receiver.wait_distinct(count, 120)
    time.sleep(ACK_WAIT_S + 1)
    # Outbound stores each message once; the inbound bridge, never killed, puts each once.
    assert receiver.stop() == list(range(count))
    assert stream_info(nats_cluster, "restart_x").state.messages == count
    assert out.terminate() == 0 and inbound.terminate() == 0


def test_schema_mismatch_stops_the_inbound_bridge_and_keeps_the_message(nats_server, bridges, names):
    a, b, c = names("points"), names("values"), names("points2")
    points = xproc.Queue(name=a, schema=point_capnp.Point)
    points.put(point_capnp.Point.new_message(x=1, y=2, name="kept"))
    out = bridges(*out_args(a, "points", nats_server)).wait_running()
    xproc.Queue(name=b)  # Values
    inbound = bridges(*in_args(b, "points", "reader", nats_server))
    started = time.monotonic()
    assert inbound.wait(30) == 1
    assert time.monotonic() - started < 30
    assert inbound.err and inbound.err[-1].startswith("xproc: ")
    assert len(inbound.err) == 1, inbound.err
    message = inbound.err[-1]
    assert "message 1 of stream 'points'" in message
    assert f"schema id {POINT_SCHEMA_ID}" in message and "schema id 0xab3297c91fcbc08c" in message
    assert "not acknowledged" in message
    # Not acknowledged: still in the stream and still the consumer's to deliver.
    assert stream_info(nats_server, "points").state.messages == 1
    assert consumer_info(nats_server, "points", "reader").ack_floor.stream_seq == 0
    # A bridge into a queue of the right schema gets it through the same consumer.
    right = xproc.Queue(name=c, schema=point_capnp.Point)
    bridges(*in_args(c, "points", "reader", nats_server)).wait_running()
    got = right.get(timeout=30)
    assert (got.x, got.y, got.name) == (1, 2, "kept")
    assert out.terminate() == 0


def test_a_malformed_message_with_the_right_schema_id_stops_the_inbound_bridge_and_stays(
        nats_server, bridges, names):
    # Another publisher on the subject claims the queue's schema with bytes no reader can
    # read (a pointer far out of bounds): refused at the bridge, not handed to the readers.
    b = names("points")
    destination = xproc.Queue(name=b, schema=point_capnp.Point)
    bad = (b"\x00\x00\x00\x00\x02\x00\x00\x00"  # one segment of two words
           b"\x00\x10\x00\x00\x01\x00\x01\x00"  # root struct pointer, offset 0x400 words
           b"\x00" * 8)

    async def setup(js):
        await js.add_stream(name="bad", subjects=["bad.x"])
        await js.publish("bad.x", bad, headers={"Xproc-Schema-Id": POINT_SCHEMA_ID})

    js_call(nats_server, setup)
    inbound = bridges(*in_args(b, "bad", "reader", nats_server))
    assert inbound.wait(30) == 1
    assert len(inbound.err) == 1, inbound.err
    message = inbound.err[-1]
    assert "message 1 of stream 'bad' is not a Cap'n Proto message a reader of queue" in message
    assert "stays in the stream" in message
    assert stream_info(nats_server, "bad").state.messages == 1
    assert consumer_info(nats_server, "bad", "reader").ack_floor.stream_seq == 0
    assert destination.qsize() == 0


def test_a_full_destination_queue_holds_the_stream_back_and_loses_nothing(nats_server, bridges, names):
    count = 300
    a, b = names("a"), names("b")
    source, destination = xproc.Queue(name=a), xproc.Queue(10, name=b)
    put_numbered(source, 0, count)
    out = bridges(*out_args(a, "full.x", nats_server)).wait_running()
    inbound = bridges(*in_args(b, "full_x", "reader", nats_server, "--batch", "16")).wait_running()
    deadline = time.monotonic() + 30
    while stream_info(nats_server, "full_x").state.messages < count or destination.qsize() < 10:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # Longer than the ack wait: the bridge, waiting for room, keeps JetStream from
    # delivering the messages in hand again.
    time.sleep(ACK_WAIT_S * 2)
    assert destination.qsize() == 10
    # At most its batch in hand, none delivered again (one more may have come for a fetch
    # just as it gave up: the bridge has not seen that one, nor kept it in progress).
    info = consumer_info(nats_server, "full_x", "reader")
    assert info.num_ack_pending <= 16 + 1 and info.num_redelivered <= 1
    seqs = [destination.get(timeout=30)["seq"] for _ in range(count)]
    assert seqs == list(range(count))
    assert inbound.terminate() == 0 and out.terminate() == 0
    assert inbound.totals()["messages"] == count


def test_sigterm_stops_both_bridges_promptly_with_status_zero(nats_server, bridges, names):
    a, b = names("a"), names("b")
    source, destination = xproc.Queue(name=a), xproc.Queue(1, name=b)
    put_numbered(source, 0, 5)
    out = bridges(*out_args(a, "term.x", nats_server)).wait_running()
    # --ack-wait long: what the stopped bridge hands back must come at once, not after it.
    inbound = bridges("in", b, "--stream", "term_x", "--consumer", "reader", "--servers", servers(nats_server),
                      "--ack-wait", "600").wait_running()
    deadline = time.monotonic() + 30
    while destination.qsize() < 1 or stream_info(nats_server, "term_x").state.messages < 5:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # inbound now waits for room, holding the rest of its batch
    for bridge in (inbound, out):  # idle (out) and blocked on a full queue (in)
        started = time.monotonic()
        assert bridge.terminate(timeout=10) == 0
        assert time.monotonic() - started < 5
        assert any("stopped; forwarded" in line for line in bridge.out), bridge.output()
        assert bridge.err == []
    assert out.totals()["messages"] == 5 and inbound.totals()["messages"] == 1
    # The messages it had fetched and not put were handed back: a new bridge gets them at
    # once, in order.
    again = bridges("in", b, "--stream", "term_x", "--consumer", "reader", "--servers", servers(nats_server),
                    "--ack-wait", "600").wait_running()
    assert [destination.get(timeout=20)["seq"] for _ in range(5)] == list(range(5))
    assert again.terminate() == 0


def refused(bridge: Bridge, within: float) -> str:
    started = time.monotonic()
    assert bridge.wait(within + 30) == 1, bridge.output()
    assert time.monotonic() - started < within, f"took {time.monotonic() - started:.1f} s"
    assert len(bridge.err) == 1 and bridge.err[0].startswith("xproc: "), bridge.err
    return bridge.err[0]


def test_wrong_credentials_are_refused_with_one_line(tmp_path, bridges, names):
    a = names("a")
    xproc.Queue(name=a)
    with NatsCluster(tmp_path / "auth", size=1, users={"bridge": "s3cret"}) as cluster:
        env = dict(os.environ, XPROC_NATS_PASSWORD="wrong")
        wrong = bridges(*out_args(a, "auth.x", cluster, "--user", "bridge", "--connect-timeout", "2"), env=env)
        assert "uthorization" in refused(wrong, 2 + 5)
        anonymous = bridges(*out_args(a, "auth.x", cluster, "--connect-timeout", "2"))
        assert "uthorization" in refused(anonymous, 2 + 5)
        env = dict(os.environ, XPROC_NATS_PASSWORD="s3cret")
        right = bridges(*out_args(a, "auth.x", cluster, "--user", "bridge"), env=env).wait_running()
        assert right.terminate() == 0


def test_unreachable_servers_are_refused_within_the_connect_timeout(bridges, names):
    a = names("a")
    xproc.Queue(name=a)
    urls = f"nats://127.0.0.1:{free_port()},nats://127.0.0.1:{free_port()}"
    bridge = bridges("out", a, "--subject", "x", "--servers", urls, "--connect-timeout", "3")
    message = refused(bridge, 3 + 5)
    assert "connecting to" in message and urls.split(",")[0] in message
    inbound = bridges("in", a, "--stream", "s", "--consumer", "c", "--servers", urls, "--connect-timeout", "1")
    assert "connecting to" in refused(inbound, 1 + 5)


def test_an_absent_queue_or_stream_is_refused_with_one_line(nats_server, bridges, names):
    assert "no segment named" in refused(bridges(*out_args(names("absent"), "x.y", nats_server)), 10)
    b = names("b")
    xproc.Queue(name=b)
    assert "no stream 'nope'" in refused(bridges(*in_args(b, "nope", "c", nats_server)), 10)
