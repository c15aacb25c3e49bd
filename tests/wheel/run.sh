#!/usr/bin/env bash
# Installs the wheel of `./dev.sh wheel` into a fresh virtual environment that holds only
# it, pycapnp and pytest, and runs there, from a temporary directory and without
# PYTHONPATH (so that nothing of the source or build tree can be imported): this folder's
# checks of the wheel itself, the seed programs and the Python/C++ exchanges of
# tests/python. The C++ peer is the developer build's.
# usage: tests/wheel/run.sh BUILD_DIR PYTHON
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "$1" && pwd)
python=$2
"$root/dev.sh" wheel >&2  # up to date: a no-op
wheels=("$root"/build/wheel/xproc_ipc-*.whl)
[ ${#wheels[@]} -eq 1 ] || { echo "expected one wheel in build/wheel: ${wheels[*]}" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check "${wheels[0]}" pycapnp pytest
cd "$work"
env -u PYTHONPATH XPROC_BUILD_DIR="$build" XPROC_WHEEL="${wheels[0]}" \
  "$work/venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$work" \
  "$here/test_wheel.py" "$root/tests/python/test_examples.py" "$root/tests/python/test_cross_language.py"
