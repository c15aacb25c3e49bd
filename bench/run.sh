#!/usr/bin/env bash
# Runs the side-by-side comparisons and writes OUT_DIR/<topic>.json for each, with
# OUT_DIR/<topic>.meta.json beside it: the run that produced it (bench/meta.py).
# usage: bench/run.sh BUILD_DIR VENV_DIR OUT_DIR [TOPIC]
#   extra flags: XPROC_BENCH_FLAGS (C++ topics), XPROC_BENCH_PYTHON_FLAGS (python)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$1
venv=$2
out=$3
topic=${4:-}
topics=(queue pipe manager python)
# NATS (a loopback cluster the comparison starts itself) where xproc::nats was built.
[ -x "$build/bench/xproc_nats_compare" ] && topics+=(nats)
if [ -n "$topic" ]; then
  if [ "$topic" != python ] && [ ! -x "$build/bench/xproc_${topic}_compare" ]; then
    echo "no benchmark for topic '$topic' (have: ${topics[*]})" >&2
    exit 2
  fi
  topics=("$topic")
fi
python=$venv/bin/python
[ -x "$python" ] || python=python3
mkdir -p "$out"

# Described once, before the first measurement: every topic of this run shares it.
meta=$(mktemp)
trap 'rm -f "$meta"' EXIT
"$python" "$here/meta.py" "$build" >"$meta"
commit=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["commit"])' "$meta")

run_topic() {
  local t=$1
  if [ "$t" = python ]; then
    # The Python package as built in this build directory.
    # shellcheck disable=SC2086
    PYTHONPATH=$build/python "$python" "$here/python/python_compare.py" --out "$out/python.json" \
      ${XPROC_BENCH_PYTHON_FLAGS:-}
  else
    # shellcheck disable=SC2086
    XPROC_BENCH_DIR=$here "$build/bench/xproc_${t}_compare" --python "$python" --out "$out/$t.json" \
      ${XPROC_BENCH_FLAGS:-}
  fi
}

# Microseconds since the epoch (bash 5's EPOCHREALTIME; whole seconds on an older bash).
now_us() { local t=${EPOCHREALTIME:-$SECONDS.000000}; echo "${t//[.,]/}"; }
# "4.2 s" or "3m 07s" since START_US.
elapsed_since() {
  local us=$(($(now_us) - $1)) s
  s=$((us / 1000000))
  if ((s < 60)); then
    printf '%d.%d s' "$s" $((us / 100000 % 10))
  else
    printf '%dm %02ds' $((s / 60)) $((s % 60))
  fi
}

run_start=$(now_us)
for i in "${!topics[@]}"; do
  t=${topics[$i]}
  echo "[$((i + 1))/${#topics[@]}] $t (xproc $commit) …"
  topic_start=$(now_us)
  run_topic "$t"
  # Written only once the topic's JSON is: a topic that fails leaves its previous pair as
  # it was, JSON and description together.
  cp "$meta" "$out/$t.meta.json"
  echo "[$((i + 1))/${#topics[@]}] $t done in $(elapsed_since "$topic_start")"
done
echo "${#topics[@]} topic(s) done in $(elapsed_since "$run_start"), results in $out"
