#!/usr/bin/env bash
# Runs the cross-language demos: a C++ Listener and a standard-library Python client, then
# xproc's Python package and C++ on one typed queue each way and one Manager.
# usage: examples/cross/run.sh BUILD_DIR VENV_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$1
python=${2:-}/bin/python
[ -x "$python" ] || python=python3
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$build/examples/xproc_example_cross_listener" >"$out" &
listener=$!
for _ in $(seq 100); do [ -s "$out" ] && break; sleep 0.05; done
"$python" "$here/client.py" "$(head -n 1 "$out")"
wait "$listener"
tail -n +2 "$out"
if "$python" -c "import xproc" 2>/dev/null; then
  printf '\n$ python examples/cross/python_and_cpp.py\n'
  "$python" "$here/python_and_cpp.py" "$build/examples/xproc_example_cross_peer"
fi
