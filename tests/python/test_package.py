"""The package as a whole: the multiprocessing-shaped API, its type stubs."""

from __future__ import annotations

import inspect
import pathlib
import subprocess
import sys

import xproc

PACKAGE_SOURCE = pathlib.Path(__file__).resolve().parents[2] / "bindings" / "python" / "xproc"


def test_the_multiprocessing_names_are_there():
    for name in ["Queue", "SimpleQueue", "JoinableQueue", "Pipe", "Manager", "connect", "AuthenticationError"]:
        assert hasattr(xproc, name), name
    for name in ["Listener", "Client", "wait", "Connection"]:
        assert hasattr(xproc.connection, name), name
    manager_factories = ["dict", "list", "Namespace", "Value", "Array", "Queue", "JoinableQueue", "Lock", "RLock",
                         "Semaphore", "BoundedSemaphore", "Event", "Condition", "Barrier"]
    for name in manager_factories:
        assert callable(getattr(xproc.SyncManager, name)), name


def test_queue_signature_matches_the_documented_one():
    parameters = inspect.signature(xproc.Queue).parameters
    assert list(parameters)[:3] == ["maxsize", "name", "schema"]
    assert parameters["name"].kind is inspect.Parameter.KEYWORD_ONLY


def test_type_stub_is_current_and_shipped(tmp_path):
    """The checked-in stub is what nanobind's stubgen writes for the built module."""
    fresh = tmp_path / "_xproc.pyi"
    subprocess.run([sys.executable, "-m", "nanobind.stubgen", "-q", "-m", "xproc._xproc", "-o", str(fresh)],
                   check=True)
    shipped = PACKAGE_SOURCE / "_xproc.pyi"
    assert shipped.read_text() == fresh.read_text(), (
        "bindings/python/xproc/_xproc.pyi is stale: regenerate it with "
        "`python -m nanobind.stubgen -m xproc._xproc -o bindings/python/xproc/_xproc.pyi`")
    assert (PACKAGE_SOURCE / "py.typed").exists()
    compile(shipped.read_text(), str(shipped), "exec")  # valid Python syntax


def test_every_public_function_is_documented():
    for module in (xproc, xproc.connection, xproc.managers, xproc.queues):
        for name, value in vars(module).items():
            if not name.startswith("_") and callable(value) and getattr(value, "__module__", "").startswith("xproc"):
                assert inspect.getdoc(value), f"{module.__name__}.{name} has no docstring"
