# Python and C++ on the same objects: a named typed queue each way, and C++ proxies on a
# Manager started from Python. The C++ side is peer.cpp.
# usage: python_and_cpp.py PATH/TO/xproc_example_cross_peer
import os
import pathlib
import subprocess
import sys

import xproc  # before capnp: see bindings/python/README.md
import capnp

point_capnp = capnp.load(str(pathlib.Path(__file__).resolve().parents[1] / "cpp" / "point.capnp"))
peer = sys.argv[1]
name = f"cross-demo-{os.getpid()}"


def run(*args):
    print(subprocess.run([peer, *args], check=True, capture_output=True, text=True).stdout, end="")


# C++ puts Points on a named queue; Python reads them as pycapnp readers.
run("produce", name, "2")
points = xproc.Queue.open(name, schema=point_capnp.Point)
for _ in range(2):
    p = points.get(timeout=10)
    print(f"Python got x={p.x} y={p.y} name={p.name}")
xproc.Queue.remove(name)

# Python puts Points; C++ reads them.
points = xproc.Queue(name=name, schema=point_capnp.Point)
for i in range(2):
    points.put(point_capnp.Point.new_message(x=10 + i, y=i, name=f"Python point {i}"))
run("consume", name, "2")
xproc.Queue.remove(name)

# A Manager started from Python, used by a C++ process through its address and key.
with xproc.Manager(authkey=b"demo key") as manager:
    counts = manager.dict({"Python": 1}, name="counts")
    manager.list(name="log").append("hello from Python")
    run("manager", manager.address, "demo key")
    print("Python sees", counts, manager.list(name="log"))
