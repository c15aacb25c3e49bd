"""Every row of the library's error list (XPROC_ERRORS in src/xproc/errors.h) is raised in
Python as the class its row names, so code written for multiprocessing catches what it
always caught."""

from __future__ import annotations

import errno
import importlib

import pytest

import xproc
from xproc import _xproc


def python_class(name: str, module: str) -> type:
    return getattr(xproc if module == "xproc" else importlib.import_module(module), name)


ROWS = _xproc._error_rows()


def test_the_list_has_every_error_the_api_documents():
    names = {name for name, _ in ROWS}
    assert {"Empty", "Full", "EOFError", "AuthenticationError", "BufferTooShort", "BrokenBarrierError",
            "MessageTooLarge", "DecodeError", "OSError", "PermissionError", "AttributeError"} <= names


@pytest.mark.parametrize("name,module", ROWS)
def test_each_error_is_raised_as_its_python_class(name, module):
    expected = python_class(name, module)
    with pytest.raises(expected) as raised:
        _xproc._raise_error(name, "the message")
    if name == "PermissionError":
        assert raised.value.errno == errno.EACCES
    elif name != "BufferTooShort":
        assert "the message" in str(raised.value)


def test_an_oserror_keeps_its_errno_and_python_picks_its_subclass():
    with pytest.raises(FileNotFoundError) as raised:
        _xproc._raise_error("OSError", f"[Errno {errno.ENOENT}] open: gone")
    assert raised.value.errno == errno.ENOENT
    assert raised.value.strerror == "open: gone"


def test_xprocs_own_errors_are_value_errors():
    assert issubclass(xproc.MessageTooLarge, ValueError)
    assert issubclass(xproc.DecodeError, ValueError)
