"""What Python objects become on the wire, and back: the mapping the package documents."""

from __future__ import annotations

import math
import struct

import pytest

import xproc
from conftest import point_capnp, value_capnp


@pytest.mark.parametrize(
    "obj",
    [None, True, False, 0, -1, 2**63 - 1, -(2**63), 1.5, -0.0, math.inf, "", "héllo ✓", b"", b"\x00\xff",
     [], [1, "a", None], {}, {"a": 1, 2: [b"x", {"n": None}], 0.25: False}],
)
def test_round_trip_keeps_value_and_type(obj):
    back = xproc.decode(xproc.encode(obj))
    assert back == obj
    assert type(back) is type(obj)
    if isinstance(obj, dict):
        assert list(back) == list(obj)  # insertion order kept


def test_recurring_keys_decode_right_whatever_the_decoder_remembers():
    # Many distinct keys (more than the decoder keeps), ones that differ only late, long
    # ones and non-ASCII ones, decoded again and again in varying orders.
    keys = [f"key-{i}" for i in range(300)] + ["x" * 40, "x" * 41, "clé", "ключ", "k\u00e9", ""]
    for round_ in range(3):
        chunk = {k: i + round_ for i, k in enumerate(keys[round_::2])}
        back = xproc.decode(xproc.encode(chunk))
        assert back == chunk
        assert list(back) == list(chunk)
    assert xproc.decode(xproc.encode([{"a": 1}, {"a": 2}])) == [{"a": 1}, {"a": 2}]


def test_bool_and_int_stay_distinct():
    assert [type(x) for x in xproc.decode(xproc.encode([True, 1, 1.0]))] == [bool, int, float]


def test_nan_survives():
    assert math.isnan(xproc.decode(xproc.encode(math.nan)))


def test_tuples_travel_as_tuples_and_lists_as_lists():
    sent = {(1, "a"): (2, (3,), [4, ()]), "l": [(5,), [6]]}
    back = xproc.decode(xproc.encode(sent))
    assert back == sent
    assert type(next(iter(back))) is tuple
    assert type(back[(1, "a")]) is tuple and type(back[(1, "a")][2]) is list
    assert (1, 2) != [1, 2] and xproc.decode(xproc.encode((1, 2))) != [1, 2]


def test_a_list_key_from_another_language_comes_back_as_a_tuple():
    message = value_capnp.Value.new_message()
    entry = message.init("map", 1)[0]
    items = entry.key.init("list", 2)
    items[0].int64, items[1].int64 = 1, 2
    entry.value.text = "v"
    back = xproc.decode(message.to_bytes())
    assert back == {(1, 2): "v"} and type(next(iter(back))) is tuple


def test_plain_pycapnp_reads_a_tuple_as_its_own_kind():
    reader = next(iter(value_capnp.Value.read_multiple_bytes(xproc.encode((1, "two")))))
    assert reader.which() == "tuple"
    assert [reader.tuple[0].int64, reader.tuple[1].text] == [1, "two"]


@pytest.mark.parametrize("obj", [object(), {1, 2}, 1j, [1, object()], {"k": frozenset()}])
def test_unsupported_type_is_type_error_naming_it(obj):
    with pytest.raises(TypeError, match="cannot send an object of type"):
        xproc.encode(obj)


@pytest.mark.parametrize(
    "big", [2**63, -(2**63) - 1, 2**64, -(2**64), 2**94, 7**1000, -(3**2000), (1 << 32766) - 1],
    ids=["2**63", "-2**63-1", "2**64", "-2**64", "2**94", "7**1000", "-3**2000", "32766 bits"],
)
def test_ints_past_64_bits_travel_as_big_ints(big):
    message = xproc.encode(big)
    assert xproc.decode(message) == big
    reader = next(iter(value_capnp.Value.read_multiple_bytes(message)))
    assert reader.which() == "bigInt"
    assert int.from_bytes(reader.bigInt, "little", signed=True) == big
    assert xproc.decode(xproc.encode({big: [big]})) == {big: [big]}  # as a key too


def test_ints_of_more_than_32767_bits_are_overflow_error():
    with pytest.raises(OverflowError, match="32767 bits"):
        xproc.encode(1 << 32767)


@pytest.mark.parametrize("size", [0, 1, 8, 4097])
def test_a_big_int_of_another_size_is_refused(size):
    message = value_capnp.Value.new_message(bigInt=b"\x01" * size).to_bytes()
    with pytest.raises(xproc.DecodeError, match="bigInt"):
        xproc.decode(message)


def test_cpp_refuses_big_ints():
    # C++'s Value holds 64-bit ints: a Manager container (C++) refuses the message whole.
    with xproc.Manager() as manager:
        d = manager.dict()
        with pytest.raises(xproc.DecodeError, match="past 64 bits"):
            d["k"] = 2**64
        assert len(d) == 0


def test_self_containing_list_is_value_error():
    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="nested deeper"):
        xproc.encode(cycle)


@pytest.mark.parametrize("garbage", [b"", b"\x00" * 7, b"\xff" * 64, b"\x00\x00\x00\x00\x10\x00\x00\x00" + b"\x00" * 8])
def test_malformed_bytes_are_decode_error(garbage):
    with pytest.raises(xproc.DecodeError):
        xproc.decode(garbage)
    assert issubclass(xproc.DecodeError, ValueError)


def test_text_without_its_nul_is_decode_error_quoting_the_byte():
    # The text's last byte (the message's last), its NUL, becomes 0xfe: Cap'n Proto's
    # complaint quotes the byte, which is not UTF-8.
    message = bytearray(xproc.encode("abcdefg"))
    assert message[-1] == 0
    message[-1] = 0xFE
    with pytest.raises(xproc.DecodeError, match=r"\\xfe"):
        xproc.decode(bytes(message))


def test_text_that_is_not_utf8_is_decode_error():
    message = value_capnp.Value.new_message()
    message.text = "ab"
    encoded = bytearray(message.to_bytes())
    encoded[encoded.index(b"ab")] = 0xFF  # as another language may send it
    with pytest.raises(xproc.DecodeError, match="not UTF-8"):
        xproc.decode(bytes(encoded))


def test_dict_as_a_dict_key_is_decode_error():
    # C++ and other languages may use a dict as a key; no Python dict can hold one.
    message = value_capnp.Value.new_message()
    entry = message.init("map", 1)[0]
    entry.key.init("map", 0)
    entry.value.int64 = 1
    with pytest.raises(xproc.DecodeError, match="dict key"):
        xproc.decode(message.to_bytes())


def test_plain_pycapnp_reads_what_xproc_writes():
    reader = next(iter(value_capnp.Value.read_multiple_bytes(xproc.encode({"k": [1, "two"]}))))
    entry = reader.map[0]
    assert entry.key.text == "k"
    assert [entry.value.list[0].int64, entry.value.list[1].text] == [1, "two"]


def test_xproc_reads_what_plain_pycapnp_writes():
    message = value_capnp.Value.new_message()
    items = message.init("list", 2)
    items[0].text = "from pycapnp"
    items[1].float64 = 2.5
    assert xproc.decode(message.to_bytes()) == ["from pycapnp", 2.5]


def test_pycapnp_struct_inside_a_value_comes_back_as_a_reader():
    point = point_capnp.Point.new_message(x=3, y=4, name="p")
    back = xproc.decode(xproc.encode({"point": point}))["point"]
    assert (back.x, back.y, back.name) == (3, 4, "p")


def test_struct_of_an_unknown_schema_comes_back_as_xproc_struct():
    message = value_capnp.Value.new_message()
    struct = message.init("struct")
    struct.schemaId = 0x1234
    back = xproc.decode(message.to_bytes())
    assert isinstance(back, xproc.Struct)
    assert back.schema_id == 0x1234


def test_equal_structs_of_an_unknown_schema_hash_alike():
    message = value_capnp.Value.new_message()
    message.init("struct").schemaId = 0x1234
    first, second = xproc.decode(message.to_bytes()), xproc.decode(message.to_bytes())
    assert first == second and first is not second
    assert hash(first) == hash(second)
    assert len({first: 1, second: 2}) == 1


@pytest.mark.parametrize("kind", [6, 7, 9])  # list, map, tuple
def test_millions_of_elements_that_take_no_bytes_are_decode_error(kind):
    # 40 bytes claiming four million empty elements, each of which would decode to None.
    words = [4 << 32, (1 << 48) | (1 << 32), kind, (7 << 32) | 1, 4_000_000 << 2]
    with pytest.raises(xproc.DecodeError, match="take no bytes"):
        xproc.decode(struct.pack("<5Q", *words))
