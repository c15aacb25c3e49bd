"""Messages of a user's schema from a C++ producer to a consumer that has never heard of
xproc: `xproc put --schema point.capnp:Point` (C++, Cap'n Proto's JSON codec) fills a local
typed queue, `xproc bridge out` publishes it on a replicated JetStream stream, and
nats_py_consumer.py (nats-py and pycapnp only, run with `python -I` so that nothing of the
build is on its path) checks each message's Xproc-Schema-Id against the schema file and
decodes it. The test compares what came out with what went in."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import xproc
import capnp  # noqa: E402  (after xproc: see tests/python/conftest.py)

HERE = Path(__file__).resolve().parent
SOURCE_DIR = HERE.parents[1]
BUILD_DIR = Path(os.environ.get("XPROC_BUILD_DIR", SOURCE_DIR / "build" / "default"))
XPROC = os.environ.get("XPROC_CLI") or str(BUILD_DIR / "src" / "cli" / "xproc")
POINT_FILE = SOURCE_DIR / "examples" / "cpp" / "point.capnp"
point_capnp = capnp.load(str(POINT_FILE))


@pytest.fixture
def queue_name():
    name = f"nats-{os.getpid()}-{uuid.uuid4().hex[:8]}-points"
    yield name
    xproc.Queue.remove(name)


def test_points_put_from_cpp_are_read_by_a_nats_py_and_pycapnp_consumer(nats_cluster, queue_name):
    sent = [{"x": str(i), "y": str(-3 * i), "name": f"point {i} from C++ \u00e9"} for i in range(25)]
    xproc.Queue(name=queue_name, schema=point_capnp.Point)
    for point in sent:
        # UTF-8 as it is: Cap'n Proto 0.9's JSON codec decodes \u0080-\u00ff escapes wrongly.
        text = json.dumps(point, ensure_ascii=False)
        put = subprocess.run([XPROC, "put", queue_name, text, "--schema", f"{POINT_FILE}:Point"],
                             capture_output=True, text=True, timeout=30)
        assert put.returncode == 0, put.stderr

    servers = ",".join(nats_cluster.urls)
    bridge = subprocess.Popen([XPROC, "bridge", "out", queue_name, "--subject", "shapes.points", "--replicas", "3",
                               "--servers", servers, "--stats-interval", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "running" in bridge.stdout.readline()
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        consumer = subprocess.run(
            [sys.executable, "-I", str(HERE / "nats_py_consumer.py"), "--servers", servers, "--stream",
             "shapes_points", "--subject", "shapes.points", "--schema", f"{POINT_FILE}:Point", "--count",
             str(len(sent))],
            capture_output=True, text=True, timeout=120, env=env)
        assert consumer.returncode == 0, consumer.stderr
        received = [json.loads(line) for line in consumer.stdout.splitlines()]
        # Int64 fields: Cap'n Proto's JSON codec writes them as strings, pycapnp as ints.
        assert [r["fields"] for r in received] == [
            {"x": int(p["x"]), "y": int(p["y"]), "name": p["name"]} for p in sent]
        assert [r["sequence"] for r in received] == list(range(1, len(sent) + 1))
        ids = [r["msg_id"] for r in received]
        assert all(i.startswith(queue_name + ":") for i in ids) and [i.rsplit(":", 1)[1] for i in ids] == [
            str(n) for n in range(len(sent))]
    finally:
        bridge.send_signal(signal.SIGTERM)
        out, err = bridge.communicate(timeout=10)
    assert bridge.returncode == 0, err
    assert f"forwarded {len(sent)} messages" in out
    assert xproc.Queue.open(queue_name, schema=point_capnp.Point).qsize() == 0
