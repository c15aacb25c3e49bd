"""The seed's programs in examples/python run with only their import line changed."""

from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "python"


def run_example(name: str) -> str:
    # Run from elsewhere, as a user would; the script's own folder goes first on sys.path
    # (which is why the package must cope with a program called queue.py).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py")], capture_output=True, text=True,
                            timeout=120, env=env, cwd="/")
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("name", ["queue", "pipe", "manager"])
def test_only_xproc_is_imported_from_outside_the_standard_library(name):
    tree = ast.parse((EXAMPLES / f"{name}.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "xproc" in imported and "multiprocessing" in imported


def test_queue_program():
    lines = run_example("queue").splitlines()
    assert len(lines) == 3
    assert sorted(int(re.search(r"id (\d) queue", line).group(1)) for line in lines) == [0, 1, 2]
    assert all(line.startswith("My Process_name is Process-") for line in lines)


def test_pipe_program():
    lines = run_example("pipe").splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("parent")] == ["parent got"] * 2
    assert sum("got: Remember I'm your Master" in line for line in lines) == 2


def test_manager_program():
    dic_line, lst_line = run_example("manager").splitlines()
    dic = ast.literal_eval(dic_line)
    assert dic == {**{f"Process_{i}": "1" for i in range(10)}, "2": 2, 0.25: None}
    lst = ast.literal_eval(lst_line)
    assert lst[:5] == [0, 1, 2, 3, 4] and sorted(lst[5:]) == list(range(10))
