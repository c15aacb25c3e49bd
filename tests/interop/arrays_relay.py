"""The Python ends of the arrays' tour Python -> C++ -> Rust -> Python (bindings/rust/tests/
arrays.rs drives it):

    arrays_relay.py put NAME     put every sample array on the named Value queue NAME and
                                 print how many
    arrays_relay.py check NAME   get as many arrays from NAME and compare them with the
                                 samples (dtype, shape and every byte); exit 1 on a difference

The samples: every dtype in shapes 0-d, empty, 1-d and 3-d, from little- and big-endian and
non-contiguous numpy arrays, with NaN, -0.0 and extreme values."""

import sys

import numpy as np

import xproc

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64", "complex64", "complex128"]
SHAPES = [(), (0,), (7,), (2, 3, 4)]


def samples():
    out = []
    for name in DTYPES:
        dtype = np.dtype(name)
        for shape in SHAPES:
            count = int(np.prod(shape))
            raw = np.arange(count * dtype.itemsize, dtype=np.uint8) * 37 % 251
            array = raw.view(dtype).reshape(shape) if dtype.kind != "b" else (raw[:count] % 2 == 0).reshape(shape)
            out.append(array)
    out.append(np.array([np.nan, -0.0, np.inf, np.finfo(np.float64).max], dtype=">f8"))  # big-endian
    out.append(np.arange(48, dtype=np.int32).reshape(6, 8)[::2, 1::3])  # not contiguous
    out.append(np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)))
    return out


def expected(array):
    """What arrives: the same elements, C-ordered and little-endian."""
    return array.astype(array.dtype.newbyteorder("<"), order="C")  # (ascontiguousarray makes 0-d 1-d)


def main():
    command, name = sys.argv[1], sys.argv[2]
    queue = xproc.Queue.open(name)
    if command == "put":
        arrays = samples()
        for array in arrays:
            queue.put(array)
        print(len(arrays))
        return 0
    failures = 0
    for i, want in enumerate(samples()):
        got = queue.get(timeout=20)
        want = expected(want)
        if got.dtype != want.dtype or got.shape != want.shape or got.tobytes() != want.tobytes():
            print(f"array {i}: sent {want.dtype} {want.shape} {want.tobytes()[:32]!r}, "
                  f"got {got.dtype} {got.shape} {got.tobytes()[:32]!r}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
