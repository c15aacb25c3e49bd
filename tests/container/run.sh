#!/usr/bin/env bash
# A container's usual limits, for real: a private mount namespace whose /dev/shm is a 64 MiB
# tmpfs, and at most 1024 descriptors per process. In it: 100 named queues, 400 Pipes, a
# 100 MiB message through a queue and through a pipe (load.py), then the seed programs in
# C++ and Python (examples/run_all.sh). Needs root (unshare and mount); fails without it.
# usage: tests/container/run.sh BUILD_DIR PYTHON (the interpreter of a venv, or the system's)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
python=$2
venv=$(dirname "$(dirname "$python")")  # what examples/run_all.sh takes: PYTHON is VENV/bin/python
if [ "${XPROC_IN_CONTAINER:-}" != 1 ]; then
  # A mount namespace of our own, private, so that the small /dev/shm is ours alone.
  exec env XPROC_IN_CONTAINER=1 unshare --mount --propagation private -- "$0" "$build" "$python"
fi
mount -t tmpfs -o size=64m,mode=1777 tmpfs /dev/shm
ulimit -n 1024
echo "/dev/shm: $(df -h --output=size /dev/shm | tail -1 | tr -d ' '), descriptors: $(ulimit -n)"
PYTHONPATH=$build/python "$python" "$here/load.py"
PYTHONPATH=$build/python "$here/../../examples/run_all.sh" "$build" "$venv" > "$build/container-examples.log" 2>&1 ||
  { cat "$build/container-examples.log"; echo "the seed programs failed in the container" >&2; exit 1; }
echo "seed programs: ok"
leftover=$(ls /dev/shm | grep '^xproc\.' || true)
[ -z "$leftover" ] || { echo "left in /dev/shm: $leftover" >&2; exit 1; }
echo "container: ok"
