"""Property tests (hypothesis): random nested values travel through Queue, Pipe and a
Manager dict and come back equal, as the guide's "What can be sent" says they do; what
cannot be sent is refused at the call, and the queue, pipe or dict stays usable."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xproc

INT64 = (-(2**63), 2**63 - 1)

ints = st.sampled_from([INT64[0], INT64[0] + 1, -1, 0, 1, INT64[1] - 1, INT64[1]]) | st.integers(*INT64)
# Ints past 64 bits travel between Python processes (a bigInt); C++'s Value, which the
# Manager's containers hold, refuses them.
wide_ints = ints | st.sampled_from([INT64[0] - 1, INT64[1] + 1, 2**64, -(2**64), 7**1000, -(3**2000)]) | st.integers()
floats = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324]) | st.floats()
texts = st.text(st.characters(blacklist_categories=["Cs"]))  # lone surrogates: see below


def values_with(integers):
    """Nested values of these ints, and the dict keys among them (hashable: scalars and
    tuples of them)."""
    scalars = st.none() | st.booleans() | integers | floats | texts | st.binary()
    keys = st.recursive(scalars, lambda inner: st.tuples(inner, inner) | st.lists(inner, max_size=3).map(tuple),
                        max_leaves=4)
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(keys, inner, max_size=4),
        max_leaves=16,
    )
    return values, keys


values, keys = values_with(ints)
wide_values, _ = values_with(wide_ints)
# What cannot be sent, and the exception the call raises for it: ints of more than 32767
# bits, types Value has no kind for, and str that is not text (lone surrogates cannot be
# UTF-8).
refused = st.sampled_from([
    (1 << 40000, OverflowError),
    (-(1 << 40000), OverflowError),
    ({1, 2}, TypeError),
    (object(), TypeError),
    (1j, TypeError),
    ("lone \ud800 surrogate", UnicodeEncodeError),
])

# No example database: every run starts afresh, and nothing is written into the tree.
settings.register_profile("xproc", deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("xproc")


def expected(obj, as_key=False):
    """What comes back for `obj`: the same object (tuples as tuples), except that a list
    inside a dict key comes back as a tuple (Python could not hash the key otherwise; only
    another language sends one)."""
    if isinstance(obj, (list, tuple)):
        items = [expected(item, as_key) for item in obj]
        return tuple(items) if as_key or isinstance(obj, tuple) else items
    if isinstance(obj, dict):
        return {expected(k, True): expected(v) for k, v in obj.items()}
    return obj


def same(a, b) -> bool:
    """Equal, of the same types, in the same order; NaN matches NaN and -0.0 only -0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(same(ka, kb) and same(va, vb)
                                        for (ka, va), (kb, vb) in zip(a.items(), b.items()))
    return a == b


def with_refused_leaf(obj, bad):
    """`obj` with `bad` somewhere inside (as the last item of a list holding it)."""
    return [obj, [bad]]


@pytest.fixture(scope="module")
def channels():
    """One queue, one pipe and one Manager dict for every example (made once: a Manager is
    a server process)."""
    q = xproc.Queue()
    a, b = xproc.Pipe()
    with xproc.Manager() as manager:
        yield q, (a, b), manager.dict()
    a.close()
    b.close()


@given(wide_values)
@settings(max_examples=400)
def test_values_round_trip_through_a_queue(channels, obj):
    q, _, _ = channels
    q.put(obj)
    assert same(q.get(timeout=10), expected(obj))


@given(wide_values)
@settings(max_examples=400)
def test_values_round_trip_through_a_pipe(channels, obj):
    _, (a, b), _ = channels
    a.send(obj)
    assert same(b.recv(), expected(obj))


@given(values)
@settings(max_examples=150)
def test_values_round_trip_through_a_manager_dict(channels, obj):
    _, _, d = channels
    d["value"] = obj
    assert same(d["value"], expected(obj))


@given(keys)
@settings(max_examples=150)
def test_keys_round_trip_as_manager_dict_keys(channels, key):
    _, _, d = channels
    d.clear()
    d[key] = 1
    (back,) = d.keys()
    assert same(back, expected(key, as_key=True))


@given(values, refused)
@settings(max_examples=100)
def test_what_cannot_be_sent_is_refused_at_the_call_and_nothing_is_lost(channels, obj, bad):
    q, (a, b), d = channels
    leaf, error = bad
    message = with_refused_leaf(obj, leaf)
    with pytest.raises(error):
        q.put(message)
    with pytest.raises(error):
        a.send(message)
    with pytest.raises(error):
        d["refused"] = message
    # Each is still usable, and nothing half-sent arrives.
    q.put("after")
    assert q.get(timeout=10) == "after"
    a.send("after")
    assert b.recv() == "after"
    assert "refused" not in d


@given(st.sampled_from([INT64[1] + 1, INT64[0] - 1, 7**1000]))
@settings(max_examples=10)
def test_a_manager_dict_refuses_ints_past_64_bits_and_goes_on(channels, big):
    _, _, d = channels
    with pytest.raises(xproc.DecodeError, match="past 64 bits"):
        d["big"] = [big]
    assert "big" not in d
    d["small"] = 1
    assert d["small"] == 1
