#!/usr/bin/env bash
# Runs the side-by-side comparisons and writes OUT_DIR/<topic>.json for each.
# usage: bench/run.sh BUILD_DIR VENV_DIR OUT_DIR [TOPIC]   (extra flags: XPROC_BENCH_FLAGS)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$1
venv=$2
out=$3
topic=${4:-}
topics=(queue pipe manager)
if [ -n "$topic" ]; then
  if [ ! -x "$build/bench/xproc_${topic}_compare" ]; then
    echo "no benchmark for topic '$topic' (have: ${topics[*]})" >&2
    exit 2
  fi
  topics=("$topic")
fi
python=$venv/bin/python
[ -x "$python" ] || python=python3
for t in "${topics[@]}"; do
  echo "== $t (xproc $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo unknown))"
  # shellcheck disable=SC2086
  XPROC_BENCH_DIR=$here "$build/bench/xproc_${t}_compare" --python "$python" --out "$out/$t.json" \
    ${XPROC_BENCH_FLAGS:-}
done
