"""The installed wheel (tests/wheel/run.sh installs it into a fresh venv): it is what is
imported, its extension depends on nothing but glibc and the C++ runtime and exports its
init function alone, its metadata carries CMakeLists.txt's version and the licences of the
libraries linked in, and pycapnp may be imported before or after it."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import sysconfig
from importlib import metadata

import pytest

import xproc

SOURCE_DIR = pathlib.Path(__file__).resolve().parents[2]
BUILD_DIR = pathlib.Path(os.environ.get("XPROC_BUILD_DIR", SOURCE_DIR / "build" / "default"))
PEER = BUILD_DIR / "examples" / "xproc_example_cross_peer"
POINT_SCHEMA = SOURCE_DIR / "examples" / "cpp" / "point.capnp"
EXTENSION = pathlib.Path(xproc._xproc.__file__)

# What a manylinux extension may need from the system (auditwheel's whitelist, in short).
ALLOWED_LIBRARIES = {"linux-vdso.so.1", "libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1",
                     "libpthread.so.0", "libdl.so.2", "librt.so.1", "ld-linux-x86-64.so.2"}


def test_xproc_comes_from_the_venv_not_the_source_or_build_tree():
    site_packages = pathlib.Path(sysconfig.get_paths()["platlib"]).resolve()
    assert pathlib.Path(xproc.__file__).resolve().is_relative_to(site_packages)
    assert EXTENSION.resolve().is_relative_to(site_packages)
    assert "PYTHONPATH" not in os.environ


def test_distribution_is_xproc_ipc_with_the_version_of_cmakelists():
    declared = re.search(r"project\(xproc\s+VERSION\s+([0-9.]+)", (SOURCE_DIR / "CMakeLists.txt").read_text())
    assert metadata.version("xproc-ipc") == declared.group(1)
    assert os.path.basename(os.environ["XPROC_WHEEL"]).startswith(f"xproc_ipc-{declared.group(1)}-")


def test_metadata_carries_the_licences_of_capnproto_and_openssl():
    files = metadata.distribution("xproc-ipc").files
    licences = [f.read_text() for f in files if f.parts[0].endswith(".dist-info") and "licenses" in f.parts]
    assert any("Sandstorm Development Group" in text for text in licences), [str(f) for f in files]
    assert any("Upstream-Name: OpenSSL" in text and "Apache-2.0" in text for text in licences), [
        str(f) for f in files]


def test_extension_needs_no_capnp_kj_or_openssl_library():
    ldd = subprocess.run(["ldd", str(EXTENSION)], capture_output=True, text=True, check=True).stdout
    needed = {os.path.basename(line.split()[0]) for line in ldd.splitlines() if line.strip()}
    assert not {name for name in needed if re.match(r"lib(capnp|kj|ssl|crypto)", name)}, ldd
    assert needed <= ALLOWED_LIBRARIES, ldd


def test_extension_exports_its_init_function_alone():
    symbols = subprocess.run(["readelf", "--dyn-syms", "-W", str(EXTENSION)], capture_output=True, text=True,
                             check=True).stdout
    # Num: Value Size Type Bind Vis Ndx Name: the defined ones, and any GNU unique binding.
    rows = [line.split() for line in symbols.splitlines() if re.match(r"\s*\d+:", line)]
    defined = {row[7].split("@")[0] for row in rows if len(row) >= 8 and row[6] != "UND"}
    assert defined == {"PyInit__xproc"}
    assert not [row for row in rows if row[4] == "UNIQUE"]


# A fresh interpreter imports both in the given order, then uses the Manager, queues and
# typed pycapnp messages, and exchanges Points with the C++ peer.
IMPORT_ORDER_PROGRAM = r"""
import os, subprocess, sys
if sys.argv[1] == "capnp first":
    import capnp
    import xproc
else:
    import xproc
    import capnp
point_capnp = capnp.load(sys.argv[2])
peer = sys.argv[3]
name = f"wheel-{os.getpid()}"

with xproc.Manager() as manager:
    counts = manager.dict()
    counts.increment("hits", 2)
    counts["point"] = point_capnp.Point.new_message(x=7, name="in a dict")
    shared = manager.Queue()
    shared.put([1, "two"])
    assert counts["hits"] == 2, counts
    assert counts["point"].name == "in a dict"
    assert shared.get(timeout=10) == [1, "two"]

typed = xproc.Queue(schema=point_capnp.Point)
typed.put(point_capnp.Point.new_message(x=1, y=2, name="typed"))
got = typed.get(timeout=10)
assert (got.x, got.y, got.name) == (1, 2, "typed")

subprocess.run([peer, "produce", name, "2"], check=True, capture_output=True)
from_cpp = xproc.Queue.open(name, schema=point_capnp.Point)
points = [from_cpp.get(timeout=10) for _ in range(2)]
assert [(p.x, p.name) for p in points] == [(i, f"C++ point {i}") for i in range(2)], points
xproc.Queue.remove(name)

to_cpp = xproc.Queue(name=name, schema=point_capnp.Point)
to_cpp.put(point_capnp.Point.new_message(x=5, y=-5, name="from Python"))
out = subprocess.run([peer, "consume", name, "1"], check=True, capture_output=True, text=True).stdout
assert out.strip() == "C++ got x=5 y=-5 name=from Python", out
xproc.Queue.remove(name)
print("ok")
"""


@pytest.mark.parametrize("order", ["capnp first", "xproc first"])
def test_each_import_order_runs_manager_queues_typed_messages_and_the_cpp_peer(order, tmp_path):
    if not PEER.exists():
        pytest.fail(f"{PEER} is not built (build the examples first)")
    result = subprocess.run([sys.executable, "-c", IMPORT_ORDER_PROGRAM, order, str(POINT_SCHEMA), str(PEER)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
