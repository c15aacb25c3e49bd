"""`xproc put`, `get`, `peek` and `watch` against live queues of every kind: Values (Python
literals and JSON in, Python notation and JSON out), raw bytes, and a schema's messages
through Cap'n Proto's JSON codec; `watch` under a running stream. Hostile names and values
are refused with one line and exit status 1, and nothing is lost."""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import time

import pytest

import xproc
from xproc import _xproc
from conftest import BUILD_DIR, SOURCE_DIR, point_capnp

XPROC = str(BUILD_DIR / "src" / "cli" / "xproc")
POINT = f"{SOURCE_DIR / 'examples' / 'cpp' / 'point.capnp'}:Point"


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([XPROC, *args], capture_output=True, text=True, timeout=timeout)


def ok(*args: str) -> str:
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def refused(*args: str) -> str:
    """The one line a refused command prints on stderr (exit status 1, nothing on stdout)."""
    done = cli(*args)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xproc: "), done.stderr
    return lines[0]


VALUES = [
    "None", "True", "False", "0", "-17", "9223372036854775807", "2.5", "-1e-05", "'it\\'s'", '"dq"',
    "'\\u00e9\\n\\x00'", "b'\\x00\\xff'", "[]", "()", "(1,)", "{}", "[1, [2, [3, None]]]",
    "{'a': 1, 2: b'x', (1, 2): [3.5]}", "{'nested': {'k': [True, (None,)]}}",
]


@pytest.mark.parametrize("literal", VALUES)
def test_python_literals_round_trip_through_a_value_queue(unique_name, literal):
    import ast

    q = xproc.Queue(name=unique_name)
    ok("put", unique_name, literal)
    assert q.get(timeout=5) == ast.literal_eval(literal)  # what a Python consumer receives
    q.put(ast.literal_eval(literal))
    assert ok("get", unique_name, "--timeout", "5").strip() == repr(ast.literal_eval(literal))


def test_json_in_and_out(unique_name):
    q = xproc.Queue(name=unique_name)
    ok("put", unique_name, '{"a": [1, 2.5, null, true], "u": "\\u00e9\\ud83d\\ude00"}')
    assert q.get(timeout=5) == {"a": [1, 2.5, None, True], "u": "é😀"}
    q.put({"k": [1, (2, 3)], "s": "x"})
    assert json.loads(ok("get", unique_name, "--json")) == {"k": [1, [2, 3]], "s": "x"}
    # What JSON has no form for is printed anyway: nothing taken is lost.
    q.put(b"\x00\x01")
    assert json.loads(ok("get", unique_name, "--json")) == {"$bytes": "AAE="}
    q.put({1: "a"})
    assert json.loads(ok("get", unique_name, "--json")) == {"$repr": "{1: 'a'}"}
    q.put(float("inf"))
    assert json.loads(ok("get", unique_name, "--json")) == {"$repr": "inf"}


def test_get_waits_for_a_message_or_says_the_queue_is_empty(unique_name):
    xproc.Queue(name=unique_name)
    assert refused("get", unique_name, "--timeout", "0") == "xproc: queue is empty"
    assert refused("get", unique_name, "--timeout", "0.2") == "xproc: queue is empty"
    waiting = subprocess.Popen([XPROC, "get", unique_name], stdout=subprocess.PIPE, text=True)
    ok("put", unique_name, "'late'")
    assert waiting.communicate(timeout=10)[0] == "'late'\n"


def test_a_full_queue_refuses_a_put_after_its_timeout(unique_name):
    q = xproc.Queue(1, name=unique_name)
    ok("put", unique_name, "1")
    assert refused("put", unique_name, "2", "--timeout", "0.1") == "xproc: queue is full"
    assert q.get(timeout=5) == 1 and q.empty()


def test_bytes_queue(unique_name):
    q = _xproc.Queue(capacity_bytes=1 << 16, schema_id=0, name=unique_name)  # raw bytes, as C++ ByteQueue makes
    ok("put", unique_name, "b'\\x00\\x01\\xfe'")
    ok("put", unique_name, "plain text")
    assert q.get_bytes() == b"\x00\x01\xfe"
    assert q.get_bytes() == b"plain text"
    q.put_bytes(b"\xff\x00")
    assert ok("get", unique_name).strip() == "b'\\xff\\x00'"
    q.put_bytes(b"\xff\x00")
    assert json.loads(ok("get", unique_name, "--json")) == {"$bytes": "/wA="}


def test_typed_queue_through_the_json_codec(unique_name):
    q = xproc.Queue(name=unique_name, schema=point_capnp.Point)
    ok("put", unique_name, '{"x": "1", "y": "-2", "name": "from the shell"}', "--schema", POINT)
    got = q.get(timeout=5)
    assert (got.x, got.y, got.name) == (1, -2, "from the shell")
    q.put(point_capnp.Point.new_message(x=3, y=4, name="p"))
    assert json.loads(ok("get", unique_name, "--schema", POINT, "--json")) == {"x": "3", "y": "4", "name": "p"}
    q.put(point_capnp.Point.new_message(x=5, name="text"))
    assert ok("get", unique_name, "--schema", POINT).strip() == '(x = 5, y = 0, name = "text")'


def test_typed_queue_needs_its_schema_and_the_right_one(unique_name, tmp_path):
    xproc.Queue(name=unique_name, schema=point_capnp.Point)
    assert "name their type with --schema" in refused("get", unique_name, "--timeout", "0")
    other = tmp_path / "other.capnp"
    other.write_text("@0xc0ffee00c0ffee01;\nstruct Other { a @0 :Int32; }\n")
    assert "carries schema id" in refused("put", unique_name, '{"a": 1}', "--schema", f"{other}:Other")
    assert "has no type 'Nope'" in refused("put", unique_name, "{}", "--schema", f"{other}:Nope")
    assert "cannot read the schema" in refused("put", unique_name, "{}", "--schema", f"{tmp_path}/absent.capnp:X")
    assert "FILE.capnp:Type" in refused("put", unique_name, "{}", "--schema", "no-colon")
    assert "not JSON of" in refused("put", unique_name, '{"x": [1]}', "--schema", POINT)
    assert "not JSON of" in refused("put", unique_name, "{", "--schema", POINT)
    # A Value queue given a schema: the ids differ.
    xproc.Queue(name=unique_name + "-v")
    try:
        assert "carries schema id" in refused("put", unique_name + "-v", "{}", "--schema", POINT)
    finally:
        xproc.Queue.remove(unique_name + "-v")


HOSTILE_VALUES = [
    "", "[1, 2", "{'a' 1}", "'unterminated", "b'\\u00e9'", "b'\u00e9'", "1e", "0x10", "99999999999999999999",
    "'\\ud800'", "'\udcff'", "[" * 100 + "]" * 100, "{[1]: 2}", "nan", "__import__('os')", "1 2", "'\\q'",
]


@pytest.mark.parametrize("literal", HOSTILE_VALUES)
def test_hostile_values_are_refused_with_one_line_and_nothing_is_put(unique_name, literal):
    q = xproc.Queue(name=unique_name)
    line = refused("put", unique_name, literal)
    assert "\x1b" not in line
    assert q.empty()


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "\x1b[31mred", "x" * 300, "", "-", "nosuch-queue-xyz"])
def test_hostile_or_absent_names_are_refused_with_one_printable_line(name):
    done = cli("put", "--", name, "1")
    assert done.returncode != 0
    assert "\x1b" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_peek_leaves_the_message_for_the_next_consumer(unique_name):
    q = xproc.Queue(name=unique_name)
    assert refused("peek", unique_name, "--timeout", "0") == "xproc: queue is empty"
    q.put({"first": 1})
    q.put("second")
    assert ok("peek", unique_name).strip() == "{'first': 1}"
    assert json.loads(ok("peek", unique_name, "--json")) == {"first": 1}
    assert q.qsize() == 2 and q.get(timeout=5) == {"first": 1}
    assert ok("peek", unique_name).strip() == "'second'"
    assert q.get(timeout=5) == "second"
    typed = unique_name + "-t"
    tq = xproc.Queue(name=typed, schema=point_capnp.Point)
    try:
        tq.put(point_capnp.Point.new_message(x=9, name="kept"))
        assert json.loads(ok("peek", typed, "--schema", POINT, "--json"))["name"] == "kept"
        assert tq.get(timeout=5).x == 9
    finally:
        xproc.Queue.remove(typed)


def test_a_message_that_does_not_decode_is_reported_with_its_bytes(unique_name):
    engine = _xproc.Queue(capacity_bytes=1 << 16, name=unique_name)  # carries Values
    engine.put_bytes(b"\x01\x02\x03\x04\x05\x06\x07\x08")  # a frame announcing segments it lacks
    line = refused("get", unique_name)
    assert "is not a Value" in line and "AQIDBAUGBwg=" in line
    xproc.Queue(name=unique_name).put("after")
    assert ok("get", unique_name).strip() == "'after'"


def stream(name: str, seconds: float) -> None:
    q = xproc.Queue(name=name)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        q.put(1)
        q.get()


def test_watch_reports_the_rates_of_a_running_stream_and_then_of_a_quiet_queue(unique_name):
    xproc.Queue(name=unique_name)
    producer = mp.get_context("spawn").Process(target=stream, args=(unique_name, 3.0))
    producer.start()
    try:
        time.sleep(0.5)  # the stream has started
        lines = ok("watch", unique_name, "--interval", "0.2", "--count", "3", "--json").splitlines()
        assert len(lines) == 3
        samples = [json.loads(line) for line in lines]
        assert all(s["name"] == unique_name and s["puts_per_s"] > 1000 and s["gets_per_s"] > 1000 for s in samples)
        assert all(s["holders"] >= 1 for s in samples)
    finally:
        producer.join()
    quiet = json.loads(ok("watch", unique_name, "--interval", "0.1", "--count", "1", "--json"))
    assert quiet["puts_per_s"] == 0 and quiet["gets_per_s"] == 0 and quiet["messages"] == 0
    table = ok("watch", unique_name, "--interval", "0.05", "--count", "2").splitlines()
    assert len(table) == 2 and all(line.startswith(unique_name) and "puts/s" in line for line in table)


def test_watch_refuses_what_it_cannot_watch(unique_name):
    assert refused("watch", "nosuch-queue-xyz", "--count", "1") == "xproc: no queue named 'nosuch-queue-xyz'"
    xproc.Queue(name=unique_name)
    assert "--interval" in refused("watch", unique_name, "--interval", "0", "--count", "1")


def test_every_command_answers_help_with_an_example():
    for command in ("put", "get", "peek", "watch", "ls", "stat", "rm", "cleanup", "serve", "bench"):
        text = ok(command, "--help")
        assert "Examples:" in text and f"xproc {command} " in text
