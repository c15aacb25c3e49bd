"""Arrays and buffers: numpy arrays, bytearray, memoryview and array.array travel as
Value.array (no pickle) through queues, pipes and the Manager, come back as numpy arrays
(memoryviews without numpy), and Queue.get_view reads them where they lie in the queue."""

from __future__ import annotations

import array
import gc
import multiprocessing as mp
import os
import queue
import subprocess
import sys
import threading

import pytest

import xproc
from conftest import interrupt_python, point_capnp, run_python, value_capnp

np = pytest.importorskip("numpy")

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
          "float64", "complex64", "complex128"]
# 0-d, empty, empty among others, 1-d, 3-d, and large: over 64 KiB (referred to rather
# than copied when its bytes are whole words) and with an odd byte count for 1-byte dtypes.
SHAPES = [(), (0,), (2, 0, 3), (7,), (2, 3, 4), (301, 257)]


def sample(dtype, shape, seed=0):
    """Elements of every bit pattern (NaNs with payloads, infinities, -0.0, subnormals),
    with -0.0 and a NaN at the front of float arrays."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    count = int(np.prod(shape, dtype=np.int64))
    if dtype == np.bool_:
        return rng.integers(0, 2, count).astype(bool).reshape(shape)
    flat = np.frombuffer(rng.bytes(count * dtype.itemsize), dtype).copy()
    if dtype.kind in "fc" and count >= 2:
        flat[0], flat[1] = -0.0, np.nan
    return flat.reshape(shape)


def assert_same(got, sent):
    """Same dtype (as a native array), shape and bytes: NaN payloads and -0.0 included."""
    sent = np.asarray(sent)
    expected = sent.astype(sent.dtype.newbyteorder("="), order="C")
    assert isinstance(got, np.ndarray)
    assert got.dtype == expected.dtype and got.dtype.isnative
    assert got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()


@pytest.fixture(scope="module")
def manager():
    with xproc.Manager() as m:
        yield m


# --- Every dtype and shape through every transport ---------------------------------------

def via_queue(obj):
    q = xproc.Queue()
    q.put(obj)
    return q.get(timeout=10)


def via_pipe(obj):
    a, b = xproc.Pipe()
    # A large message waits for the receiver to take it: sent from another thread.
    sender = threading.Thread(target=a.send, args=(obj,))
    sender.start()
    got = b.recv()
    sender.join()
    return got


@pytest.mark.parametrize("transport", [via_queue, via_pipe], ids=["queue", "pipe"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_keeps_dtype_shape_and_bits(transport, dtype, shape):
    sent = sample(dtype, shape)
    assert_same(transport(sent), sent)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_manager_dict_value_and_list_item_keep_dtype_shape_and_bits(manager, dtype, shape):
    sent = sample(dtype, shape)
    d = manager.dict()
    d["a"] = sent
    assert_same(d["a"], sent)
    shared = manager.list([1, sent])
    assert_same(shared[1], sent)
    assert shared[0] == 1


def test_manager_dict_holds_arrays_nested_in_values(manager):
    frame = sample("uint16", (480, 640))
    d = manager.dict({"frame": {"pixels": frame, "id": 7}})
    back = d["frame"]
    assert back["id"] == 7
    assert_same(back["pixels"], frame)


def produce(q, arrays):
    for a in arrays:
        q.put(a)


def test_arrays_cross_processes_through_a_queue():
    arrays = [sample(dtype, (3, 5), seed=i) for i, dtype in enumerate(DTYPES)]
    q = xproc.Queue()
    child = mp.get_context("fork").Process(target=produce, args=(q, arrays))
    child.start()
    for sent in arrays:
        assert_same(q.get(timeout=30), sent)
    child.join()
    assert child.exitcode == 0


def test_arrays_cross_to_cpp_and_back(peer, unique_name):
    # The C++ peer reads each array as a typed span and puts a new xproc::Array of it.
    sent = [sample(dtype, shape, seed=i) for i, dtype in enumerate(DTYPES) for shape in SHAPES]
    sent += [sample(">f8", (3, 4)), sample("int16", (6, 8))[::2, 1::3]]
    to_cpp, from_cpp = xproc.Queue(name=unique_name + "-in"), xproc.Queue(name=unique_name + "-out")
    try:
        for a in sent:
            to_cpp.put(a)
        result = subprocess.run([str(peer), "relay-arrays", unique_name + "-in", unique_name + "-out", str(len(sent))],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        for a in sent:
            assert_same(from_cpp.get(timeout=10), a)
    finally:
        xproc.Queue.remove(unique_name + "-in")
        xproc.Queue.remove(unique_name + "-out")


# --- What the sender's buffer may be -------------------------------------------------------

@pytest.mark.parametrize("dtype", [">i2", ">u2", ">i4", ">u4", ">i8", ">u8", ">f2", ">f4", ">f8", ">c8", ">c16",
                                   "<f8", "=i4", ">?", ">i1"])
def test_big_and_explicit_endian_inputs_arrive_native_with_their_values(dtype):
    sent = sample(dtype, (4, 33))
    got = via_queue(sent)
    assert_same(got, sent)
    assert np.array_equal(got, sent, equal_nan=True) if sent.dtype.kind in "fc" else np.array_equal(got, sent)


def big(shape, dtype="float64"):
    return sample(dtype, shape, seed=3)


@pytest.mark.parametrize("make", [
    lambda: big((40, 30))[::2, ::3],
    lambda: big((40, 30)).T,
    lambda: np.asfortranarray(big((40, 30))),
    lambda: big((100,))[::-1],
    lambda: big((300, 200, 3))[:, ::2, 1],  # large and strided
    lambda: big((300, 200), ">f8").T,  # large, strided and big-endian
    lambda: big((5, 6, 7), "complex64").transpose(2, 0, 1),
    lambda: np.broadcast_to(np.arange(3.0), (4, 3)),  # zero strides
], ids=["sliced", "transposed", "fortran", "reversed", "large-strided", "large-strided-big-endian", "complex-3d",
        "broadcast"])
def test_non_contiguous_inputs_arrive_in_c_order(make):
    sent = make()
    assert not sent.flags.c_contiguous
    for transport in (via_queue, via_pipe):
        assert_same(transport(sent), sent)


def test_misaligned_large_input_arrives_whole():
    raw = np.arange(200_001, dtype=np.uint8)
    sent = raw[3:]  # contiguous, but not at a word boundary: copied rather than referred to
    assert_same(via_queue(sent), sent)
    wide = np.frombuffer(raw.tobytes()[:160_000], dtype=np.float64)
    assert_same(via_queue(wide), wide)


def test_bytearray_memoryview_and_array_array_travel_as_arrays():
    q = xproc.Queue()
    q.put(bytearray(b"\x00\x01\xff"))
    assert_same(q.get(), np.array([0, 1, 255], np.uint8))
    q.put(array.array("d", [1.5, -0.0]))
    assert_same(q.get(), np.array([1.5, -0.0]))
    for code, dtype in [("b", "int8"), ("B", "uint8"), ("h", "int16"), ("H", "uint16"), ("i", "int32"),
                        ("I", "uint32"), ("l", "int64"), ("L", "uint64"), ("q", "int64"), ("Q", "uint64"),
                        ("f", "float32")]:
        q.put(array.array(code, [1, 2, 3]))
        assert_same(q.get(), np.array([1, 2, 3], dtype))
    q.put(memoryview(bytearray(range(24))).cast("i", (2, 3)))
    assert_same(q.get(), np.arange(24, dtype=np.uint8).view(np.int32).reshape(2, 3))
    q.put(memoryview(b"abc").cast("c"))
    assert_same(q.get(), np.frombuffer(b"abc", np.uint8))
    q.put(memoryview(b"xyz"))  # a read-only buffer
    assert_same(q.get(), np.frombuffer(b"xyz", np.uint8))


def test_bytes_still_travel_as_bytes():
    for sent in (b"", b"abc", b"x" * 100_000):
        got = via_queue(sent)
        assert type(got) is bytes and got == sent


def test_arrays_nest_in_dicts_lists_and_tuples():
    frame = sample("float32", (48, 64))
    sent = {"frame": frame, "id": 7, "parts": [frame[:2], (frame[0, 0], np.zeros(0))]}
    got = via_queue(sent)
    assert got["id"] == 7
    assert_same(got["frame"], frame)
    assert_same(got["parts"][0], frame[:2])
    assert type(got["parts"][1]) is tuple
    assert_same(got["parts"][1][1], np.zeros(0))
    # A numpy scalar is no buffer the mapping knows: as multiprocessing would need pickle.
    assert got["parts"][1][0] == frame[0, 0]


def structured():
    return np.zeros(3, dtype=[("a", "i4"), ("b", "f8")])


@pytest.mark.parametrize("make, format", [
    (lambda: np.array([object(), 1]), "O"),
    (structured, "T{"),
    (lambda: np.zeros(2, np.longdouble), "g"),
    (lambda: np.zeros(2, np.clongdouble), "Zg"),
    (lambda: np.array([b"ab", b"cd"]), "2s"),
    (lambda: np.zeros(2, "V8"), "8x"),
], ids=["object", "structured", "longdouble", "clongdouble", "bytes-strings", "void"])
def test_unsupported_element_types_are_type_error_naming_the_format_and_the_queue_goes_on(make, format):
    q = xproc.Queue()
    with pytest.raises(TypeError, match=r"format '[<>=@!]?" + format.replace("{", r"\{")):
        q.put(make())
    with pytest.raises(TypeError):
        q.put({"nested": make()})
    q.put(np.arange(3))
    assert_same(q.get(timeout=10), np.arange(3))
    assert q.empty()


def test_dtypes_numpy_will_not_export_are_type_error():
    q = xproc.Queue()
    for sent in (np.zeros(2, "datetime64[ns]"), np.zeros(2, "timedelta64[s]")):
        with pytest.raises(TypeError, match="cannot send an object of type 'numpy.ndarray'"):
            q.put(sent)
    q.put("still works")
    assert q.get(timeout=10) == "still works"


def test_the_senders_buffer_is_released_after_a_put():
    q = xproc.Queue()
    small, large = bytearray(100), bytearray(1 << 20)
    ndarray = np.zeros(1 << 20)
    counts = [sys.getrefcount(x) for x in (small, large, ndarray)]
    for sent in (small, large, ndarray, {"a": large}, [ndarray]):
        q.put(sent)
    del sent
    assert [sys.getrefcount(x) for x in (small, large, ndarray)] == counts
    large.extend(b"more")  # a bytearray with an export still held cannot be resized
    ndarray.resize(10, refcheck=False)  # nor can a numpy array
    assert q.qsize() == 5


def test_a_refused_buffer_is_released_too():
    q = xproc.Queue()
    records = structured()
    count = sys.getrefcount(records)
    with pytest.raises(TypeError):
        q.put([records])
    assert sys.getrefcount(records) == count


# --- What comes back -----------------------------------------------------------------------

def test_result_is_writable_and_owns_its_memory():
    sent = sample("float64", (64, 64))
    for got in (via_queue(sent), via_pipe(sent), xproc.decode(xproc.encode(sent))):
        assert got.flags.writeable and got.flags.owndata and got.base is None
        assert got.flags.c_contiguous
        got[0, 0] = 42.0
        assert got[0, 0] == 42.0


def test_without_numpy_results_are_memoryviews_of_the_right_format_shape_and_content():
    # Arrays encoded here, decoded (and sent through a queue) where numpy cannot be imported.
    messages = {dtype: xproc.encode(sample(dtype, (2, 3), seed=5)).hex() for dtype in DTYPES}
    expected = {dtype: sample(dtype, (2, 3), seed=5).tobytes().hex() for dtype in DTYPES}
    formats = {"bool": "?", "int8": "b", "int16": "h", "int32": "i", "int64": "q", "uint8": "B", "uint16": "H",
               "uint32": "I", "uint64": "Q", "float16": "e", "float32": "f", "float64": "d", "complex64": "Zf",
               "complex128": "Zd"}
    code = f"""
import sys
sys.modules["numpy"] = None
import array, xproc
messages, expected, formats = {messages!r}, {expected!r}, {formats!r}
for dtype, message in messages.items():
    view = xproc.decode(bytes.fromhex(message))
    assert type(view) is memoryview, type(view)
    assert view.format == formats[dtype] and view.shape == (2, 3), (dtype, view.format, view.shape)
    assert bytes(view) == bytes.fromhex(expected[dtype]), dtype
    assert not view.readonly and view.c_contiguous
q = xproc.Queue()
q.put({{"a": array.array("d", [1.5, 2.5]), "b": bytearray(b"xy")}})
got = q.get()
assert got["a"].format == "d" and got["a"].tolist() == [1.5, 2.5]
assert got["b"].format == "B" and got["b"].tolist() == [120, 121]
got["a"][0] = 7.0
assert got["a"].tolist() == [7.0, 2.5]
scalar = xproc.decode(xproc.encode(memoryview(array.array("h", [5])).cast("B").cast("h", ())))
assert scalar.shape == () and scalar.format == "h" and scalar[()] == 5
empty = xproc.decode(xproc.encode(array.array("f")))
assert empty.shape == (0,) and empty.format == "f" and bytes(empty) == b""
print("ok")
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def array_key_message(inside_tuple):
    # Other languages may key a map with an array; no Python dict can hold one.
    message = value_capnp.Value.new_message()
    entry = message.init("map", 1)[0]
    key = entry.key.init("tuple", 1)[0] if inside_tuple else entry.key
    a = key.init("array")
    a.dtype, a.shape, a.data = "float64", [1], b"\x00" * 8
    entry.value.int64 = 1
    return message.to_bytes()


@pytest.mark.parametrize("inside_tuple", [False, True], ids=["key", "in a tuple key"])
def test_an_array_as_a_dict_key_is_decode_error_with_numpy_and_without(inside_tuple):
    message = array_key_message(inside_tuple)
    with pytest.raises(xproc.DecodeError, match="dict key"):
        xproc.decode(message)
    code = f"""
import sys
sys.modules["numpy"] = None
import xproc
try:
    xproc.decode(bytes.fromhex({message.hex()!r}))
except xproc.DecodeError as e:
    print("DecodeError", e)
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("DecodeError") and "dict key" in result.stdout


# --- Arrays of 512 MiB and more travel in pieces --------------------------------------------

def test_a_one_gib_array_through_a_queue():
    q = xproc.Queue(capacity_bytes=3 << 30)
    sent = np.arange(1 << 27, dtype=np.float64)  # 1 GiB
    sent[5] = np.nan
    q.put(sent)
    got = q.get(timeout=120)
    try:
        assert got.dtype == np.float64 and got.shape == sent.shape
        step = 1 << 23
        for at in range(0, sent.size, step):  # without a second 1 GiB temporary
            assert got[at:at + step].tobytes() == sent[at:at + step].tobytes()
    finally:
        del sent, got, q
        gc.collect()


def test_a_strided_odd_sized_array_over_512_mib_through_a_queue():
    q = xproc.Queue(capacity_bytes=3 << 30)
    base = np.empty((520 << 20) + 3, dtype=np.uint8)
    base[:] = 7
    base[-1], base[0] = 1, 2
    sent = base[::-1]  # not contiguous: gathered, then in pieces (one of a few bytes)
    q.put(sent)
    got = q.get(timeout=120)
    try:
        assert got.shape == sent.shape and got[0] == 1 and got[-1] == 2
        assert int(np.count_nonzero(got == 7)) == got.size - 2
    finally:
        del base, sent, got, q
        gc.collect()


def pieces_message(dtype, shape, pieces):
    message = value_capnp.Value.new_message()
    a = message.init("array")
    a.dtype = dtype
    a.shape = list(shape)
    a.pieces = pieces
    return message.to_bytes()


def test_pieces_are_concatenated_into_one_array():
    expected = np.arange(10, dtype=np.int32).reshape(2, 5)
    raw = expected.tobytes()
    message = pieces_message("int32", (2, 5), [raw[:8], raw[8:8], raw[8:36], raw[36:]])
    assert_same(xproc.decode(message), expected)
    q = xproc.Queue()
    q.put_bytes(message)
    assert_same(q.get(), expected)
    q.put_bytes(message)
    with q.get_view() as view:
        assert view.readonly and view.shape == (2, 5)
        assert_same(np.array(view), expected)


# --- Malformed arrays from other writers ----------------------------------------------------

def array_message(dtype="float64", shape=(2,), data=None, pieces=None):
    message = value_capnp.Value.new_message()
    a = message.init("array")
    a.dtype = dtype
    a.shape = list(shape)
    if data is not None:
        a.data = data
    if pieces is not None:
        a.pieces = pieces
    return message.to_bytes()


MALFORMED = {
    "byte count": array_message(data=b"\x00" * 15),
    "more bytes than the shape": array_message(data=b"\x00" * 24),
    "unknown dtype": array_message(dtype=99, data=b"\x00" * 16),
    "bool byte 2": array_message(dtype="bool", shape=(3,), data=b"\x00\x01\x02"),
    "bool in a piece": array_message(dtype="bool", shape=(3,), pieces=[b"\x01", b"\x00\x03"]),
    "data and pieces": array_message(data=b"\x00" * 8, pieces=[b"\x00" * 8]),
    "piece splits an element": array_message(pieces=[b"\x00" * 4, b"\x00" * 12]),
    "65 dimensions": array_message(shape=(1,) * 65, data=b"\x00" * 8),
    "shape overflow": array_message(shape=(1 << 32, 1 << 32, 1 << 2), data=b"\x00" * 8),
    "shape overflow with a zero": array_message(shape=(1 << 40, 1 << 40, 0), data=b""),
    "dimension past 2**63": array_message(dtype="uint8", shape=(1 << 63, 0), data=b""),
}


@pytest.mark.parametrize("message", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_arrays_are_decode_error_and_the_next_message_arrives(message):
    with pytest.raises(xproc.DecodeError, match="array"):
        xproc.decode(message)
    q = xproc.Queue()
    for get in (q.get, q.get_view):
        q.put_bytes(message)
        q.put({"next": np.arange(2)})
        with pytest.raises(xproc.DecodeError):
            get(timeout=10)
        got = q.get(timeout=10)
        assert_same(got["next"], np.arange(2))
    a, b = xproc.Pipe()
    a.send_bytes(message)  # small: no wait for the receiver
    a.send("next")
    with pytest.raises(xproc.DecodeError):
        b.recv()
    assert b.recv() == "next"


def test_64_dimensions_are_accepted():
    sent = np.zeros((1,) * 64)
    assert_same(xproc.decode(xproc.encode(sent)), sent)
    assert_same(xproc.decode(array_message(shape=(1,) * 64, data=b"\x00" * 8)), sent)


# --- get_view: reading in place -------------------------------------------------------------

def test_get_view_reads_the_array_in_place_and_releases_it_at_the_blocks_end():
    q = xproc.Queue()
    sent = sample("float64", (256, 64))
    q.put(sent)
    q.put("next")
    with q.get_view() as view:
        assert type(view) is memoryview and view.readonly
        assert view.format == "d" and view.shape == (256, 64) and view.c_contiguous
        assert type(view.obj).__name__ == "ArrayBuffer"
        assert_same(np.asarray(view), sent)
        with pytest.raises(TypeError):
            view[0, 0] = 1.0
        with pytest.raises(ValueError):
            np.asarray(view)[0, 0] = 1.0  # read-only for numpy too
    with pytest.raises(ValueError, match="released"):
        view.tolist()
    with pytest.raises(ValueError, match="released"):
        bytes(view)
    assert q.get(timeout=10) == "next"


@pytest.mark.parametrize("dtype", DTYPES)
def test_get_view_of_every_dtype(dtype):
    q = xproc.SimpleQueue()
    sent = sample(dtype, (50, 40))
    q.put(sent)
    with q.get_view() as view:
        assert view.shape == (50, 40) and view.readonly
        assert_same(np.asarray(view), sent)


def test_numpy_arrays_made_inside_the_block_stay_valid_after_it():
    q = xproc.Queue()
    sent = sample("int32", (512, 512))
    q.put(sent)
    q.put(sent + 1)
    with q.get_view() as view:
        kept = np.asarray(view)
        rows = kept[10:20]
        also = np.frombuffer(view, dtype=np.int32)
    assert not kept.flags.writeable
    with pytest.raises(RuntimeError, match="another get would wait for it forever"):
        q.get(timeout=1)  # this thread still holds the message through the arrays
    # The record stays pinned: overwrite what would be reused, then check.
    churn = xproc.Queue()
    for _ in range(20):
        churn.put(np.zeros(1 << 16))
        churn.get()
    assert_same(kept, sent)
    assert_same(rows, sent[10:20])
    assert also.tobytes() == sent.tobytes()
    del kept, rows, also
    assert_same(q.get(timeout=10), sent + 1)


def test_another_thread_waits_for_the_view_and_then_gets_the_next_message():
    q = xproc.Queue()
    q.put(np.arange(100_000))
    q.put("second")
    got = []
    started = threading.Event()

    def consume():
        started.set()
        got.append(q.get(timeout=60))

    with q.get_view() as view:
        thread = threading.Thread(target=consume)
        thread.start()
        started.wait()
        assert_same(np.asarray(view), np.arange(100_000))
    thread.join(60)
    assert got == ["second"]


def test_get_view_of_messages_without_arrays_in_the_ring():
    q = xproc.JoinableQueue()
    q.put("text")
    q.put({"small": np.arange(3), "n": 1})  # a small message is decoded from a copy
    q.put({"frame": np.ones((100, 100)), "meta": [np.arange(5), "x"]})
    with q.get_view() as value:
        assert value == "text"
        assert q.qsize() == 2  # let go at once: no array lies in the ring
    with q.get_view() as value:
        small = value["small"]
        assert value["n"] == 1 and small.readonly and small.tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        small.tolist()  # released at the block's end all the same
    with q.get_view() as value:
        assert_same(np.asarray(value["frame"]), np.ones((100, 100)))
        assert value["meta"][1] == "x" and value["meta"][0].tolist() == [0, 1, 2, 3, 4]
        frame = value["frame"]
    with pytest.raises(ValueError):
        frame.tolist()
    for _ in range(3):
        q.task_done()
    q.join(timeout=10)


def test_get_view_releases_when_the_block_raises():
    q = xproc.Queue()
    q.put(np.arange(10_000))
    q.put("next")
    with pytest.raises(KeyError):
        with q.get_view() as view:
            raise KeyError("inside")
    with pytest.raises(ValueError):
        view.tolist()
    assert q.get(timeout=10) == "next"


def test_get_view_without_with_is_released_by_release_or_garbage_collection():
    q = xproc.Queue()
    for i in range(3):
        q.put(np.full(10_000, i))
    held = q.get_view()
    with pytest.raises(RuntimeError):
        q.get_nowait()
    held.release()
    held.release()  # idempotent
    with pytest.raises(ValueError):
        held.__enter__()
    dropped = q.get_view()
    del dropped
    gc.collect()
    assert_same(q.get(timeout=10), np.full(10_000, 2))


def test_nested_get_view_in_one_thread_is_runtime_error():
    q = xproc.Queue()
    q.put(np.arange(20_000))
    q.put(np.arange(20_000))
    with q.get_view():
        with pytest.raises(RuntimeError):
            q.get_view()
    with q.get_view() as second:
        assert len(second) == 20_000


def test_get_view_waits_and_times_out_as_get_does():
    q = xproc.Queue()
    with pytest.raises(queue.Empty):
        q.get_view(timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get_view(block=False)
    q.put(np.arange(3))
    with q.get_view(block=False) as view:
        assert view.tolist() == [0, 1, 2]


def test_get_view_on_a_queue_of_structs_is_type_error():
    q = xproc.Queue(schema=point_capnp.Point)
    with pytest.raises(TypeError, match="Values"):
        q.get_view(block=False)


def test_get_view_of_a_large_array_from_another_process():
    q = xproc.Queue()
    sent = [sample("float64", (1 << 17,), seed=i) for i in range(4)]
    child = mp.get_context("fork").Process(target=produce, args=(q, sent))
    child.start()
    for expected in sent:
        with q.get_view(timeout=30) as view:
            assert np.asarray(view).tobytes() == expected.tobytes()
    child.join()
    assert child.exitcode == 0


def test_closed_queue_refuses_get_view():
    q = xproc.Queue()
    q.close()
    with pytest.raises(ValueError):
        q.get_view()


def test_ctrl_c_interrupts_a_blocked_get_view_and_the_queue_goes_on():
    code = """
import numpy as np, xproc
q = xproc.Queue()
print("blocking", flush=True)
try:
    q.get_view()
except KeyboardInterrupt:
    q.put(np.arange(100_000))
    with q.get_view(timeout=10) as view:
        print("interrupted", view.shape, flush=True)
"""
    result = interrupt_python(code)
    assert result.stdout == "interrupted (100000,)"


def threads_of_this_process():
    return len(os.listdir("/proc/self/task"))


def test_views_leave_no_thread_behind():
    q = xproc.Queue()
    before = threads_of_this_process()
    for i in range(50):
        q.put(np.full(20_000, i))
        with q.get_view() as view:
            kept = np.asarray(view)
        assert kept[0] == i
        del kept
    with pytest.raises(queue.Empty):
        q.get_view(timeout=0.01)
    assert threads_of_this_process() == before
