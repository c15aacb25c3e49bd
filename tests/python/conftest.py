"""Shared fixtures of the Python suites: the schemas (each loaded once per process, as
pycapnp refuses a second load of the same file) and the built C++ peers."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time
import uuid

import pytest

# xproc before capnp: see the guide's note on pycapnp (both bring Cap'n Proto, and the
# first one loaded provides the shared template instances).
import xproc  # noqa: F401  (import order matters)
import capnp  # noqa: E402

SOURCE_DIR = pathlib.Path(__file__).resolve().parents[2]
BUILD_DIR = pathlib.Path(os.environ.get("XPROC_BUILD_DIR", SOURCE_DIR / "build" / "default"))

point_capnp = capnp.load(str(SOURCE_DIR / "examples" / "cpp" / "point.capnp"))
# value.capnp imports /capnp/c++.capnp, which the capnproto package installs in /usr/include.
value_capnp = capnp.load(str(SOURCE_DIR / "schema" / "xproc" / "value.capnp"), imports=["/usr/include"])


@pytest.fixture
def unique_name() -> str:
    """A queue name no other test (or earlier run) uses; removed afterwards."""
    name = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    yield name
    xproc.Queue.remove(name)


@pytest.fixture(scope="session")
def peer() -> pathlib.Path:
    """The C++ peer of the cross-language tests (examples/cross/peer.cpp)."""
    path = BUILD_DIR / "examples" / "xproc_example_cross_peer"
    if not path.exists():
        pytest.fail(f"{path} is not built (build the examples first)")
    return path


def python_env() -> dict:
    """The environment of a fresh interpreter that imports what this one does."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def run_python(code: str, *args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter with this one's import path."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, env=python_env(), **kwargs)


def interrupt_python(code: str, settle: float = 0.2, timeout: float = 10) -> subprocess.CompletedProcess:
    """Runs `code`, which prints "blocking" just before it blocks; once it has, presses
    Ctrl-C (SIGINT) and returns what it printed after that, and its exit status."""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=python_env())
    assert child.stdout.readline().strip() == "blocking"
    time.sleep(settle)  # let it get into the blocking call
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=timeout)
    return subprocess.CompletedProcess(child.args, child.returncode, out.strip())
