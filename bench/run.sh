#!/usr/bin/env bash
# Runs the side-by-side comparisons and writes OUT_DIR/<topic>.json for each.
# usage: bench/run.sh BUILD_DIR VENV_DIR OUT_DIR [TOPIC]   (extra flags: XPROC_BENCH_FLAGS)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$1
venv=$2
out=$3
topic=${4:-}
topics=(queue pipe manager python)
if [ -n "$topic" ]; then
  if [ "$topic" != python ] && [ ! -x "$build/bench/xproc_${topic}_compare" ]; then
    echo "no benchmark for topic '$topic' (have: ${topics[*]})" >&2
    exit 2
  fi
  topics=("$topic")
fi
python=$venv/bin/python
[ -x "$python" ] || python=python3
for t in "${topics[@]}"; do
  echo "== $t (xproc $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo unknown))"
  if [ "$t" = python ]; then
    # The Python package as built in this build directory.
    PYTHONPATH=$build/python "$python" "$here/python/python_compare.py" --out "$out/python.json" \
      ${XPROC_BENCH_PYTHON_FLAGS:-}
    continue
  fi
  # shellcheck disable=SC2086
  XPROC_BENCH_DIR=$here "$build/bench/xproc_${t}_compare" --python "$python" --out "$out/$t.json" \
    ${XPROC_BENCH_FLAGS:-}
done
