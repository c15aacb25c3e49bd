"""A value.capnp Value read with pycapnp, as the Python object it stands for (shared by the
interop scripts, which use pycapnp alone)."""


def to_python(value):
    kind = value.which()
    if kind == "null":
        return None
    if kind in ("bool", "int64", "float64", "text"):
        return getattr(value, kind)
    if kind == "data":
        return bytes(value.data)
    if kind == "list":
        return [to_python(item) for item in value.list]
    if kind == "map":
        return {to_python(entry.key): to_python(entry.value) for entry in value.map}
    raise ValueError("unsupported Value kind " + kind)
