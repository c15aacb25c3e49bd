#!/usr/bin/env bash
# Runs the seed document's examples: C++ first, then Python, then the cross-language demos.
# usage: examples/run_all.sh BUILD_DIR VENV_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$1
venv=$2
run() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
for name in value process queue pipe manager; do
  exe=$build/examples/xproc_example_$name
  [ -x "$exe" ] && run "$exe"
done
for name in queue pipe manager; do
  script=$here/python/$name.py
  [ -f "$script" ] && run "$venv/bin/python" "$script"
done
if [ -x "$here/cross/run.sh" ]; then
  run "$here/cross/run.sh" "$build" "$venv"
fi
exit 0
