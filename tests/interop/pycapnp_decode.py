"""Decodes a file holding one xproc Value message with pycapnp alone (no xproc code) and
prints the Python object's repr, which must equal xproc's Value::repr().

usage: pycapnp_decode.py SCHEMA_DIR MESSAGE_FILE
"""
import sys

import capnp
from value_to_python import to_python

capnp.remove_import_hook()
schema = capnp.load(sys.argv[1] + "/xproc/value.capnp", imports=[sys.argv[1], "/usr/include"])


with open(sys.argv[2], "rb") as f:
    data = f.read()
with schema.Value.from_bytes(data) as message:
    print(repr(to_python(message)))
