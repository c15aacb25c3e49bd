#!/usr/bin/env bash
# One entry point for working on xproc. On a fresh Debian/Ubuntu machine it installs
# what is missing, then configures, builds and runs. Every command is idempotent: a second
# call installs nothing and rebuilds incrementally.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
PRESET=${XPROC_PRESET:-default}
BUILD=$ROOT/build/$PRESET
VENV=$ROOT/.venv

# libnats-dev and nats-server: xproc::nats and `xproc bridge` (JetStream), and the real
# servers their tests start; without them the rest builds and those tests report not built.
APT_PACKAGES=(g++ cmake ninja-build pkg-config capnproto libcapnp-dev libboost-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev libasio-dev redis-server python3-venv
  python3-dev libnats-dev nats-server)
# nats-py: the NATS tests' consumer that knows nothing of xproc (tests/nats/test_any_language.py).
PY_PACKAGES=(pytest hypothesis nanobind 'scikit-build-core>=1.0' pycapnp uvloop numpy nats-py)
# The Python peers of `bench python` (asyncio rows; pyzmq, faster-fifo, iceoryx2, UltraDict
# with atomics and shared-memory-dict beside the Queue and the Manager's dict), installed by
# the bench command alone.
BENCH_PY_PACKAGES=(aioprocessing pyzmq faster-fifo iceoryx2 UltraDict atomics shared-memory-dict)
# The fuzz preset's compiler and libFuzzer, installed only by the commands that build it.
FUZZ_APT_PACKAGES=(clang libclang-rt-14-dev)
# dpkg-source, which `apt-get source` runs to unpack Debian's source package of Cap'n Proto
# (compiled into the Python package: cmake/fetch_capnproto_source.sh).
SOURCE_APT_PACKAGES=(dpkg-dev)
# The formatter the tree is formatted with (.clang-format); another version formats differently.
FORMAT_APT_PACKAGES=(clang-format-14)

usage() {
  cat <<'USAGE'
usage: ./dev.sh COMMAND

  setup         install missing system and Python packages, configure the build
  build         setup, then build everything
  wheel         build the Python package's manylinux wheel and sdist into build/wheel
                (distribution xproc-ipc, import name xproc; Cap'n Proto, kj and OpenSSL
                linked in, Cap'n Proto compiled from Debian's source package, which
                `apt-get source` fetches into build/deps, adding deb-src entries
                that mirror debian.sources if apt has none)
  demo          build, then run the seed document's examples (C++ and Python)
  test          check the formatting, build, then run every test (C++ through ctest,
                Python through pytest)
  bench [TOPIC] build, install the peers (Python packages; the iceoryx2 peer with cargo),
                then run the comparison harness for TOPIC (all when omitted), showing
                each row as it is measured; results go to build/bench/TOPIC.json, and
                the tables of every topic measured are printed at the end
                (bench/report.py; `--docs docs` refreshes docs/benchmarks.md)
  fuzz [TARGET] [SECONDS]
                build the libFuzzer targets (preset `fuzz`, clang), then run TARGET
                (every target when omitted or `all`) for SECONDS each (default 60) from
                its checked-in corpus tests/fuzz/corpus/TARGET plus a work corpus in
                build/fuzz/corpus/TARGET; fails on any finding, saved in
                build/fuzz/artifacts/TARGET
  soak          long-running fault tests, then every fuzz target for 10 minutes
                (XPROC_SOAK_FUZZ_SECONDS); not part of `test`
  format [--check]
                format the C++ sources with clang-format 14 (.clang-format); with
                --check, change nothing and fail on any difference
  docs          regenerate the reference pages docs/reference/{cpp,python}.md from the
                public headers and the Python package (built first); a test fails
                while the committed pages differ from what this writes

Environment: XPROC_PRESET=debug|asan|tsan|release picks another CMake preset.
USAGE
}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

missing_apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  echo "${missing[@]:-}"
}

install_system_packages() {
  local missing
  missing=$(missing_apt_packages)
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "xproc needs these packages: $missing" >&2
    echo "run: sudo apt-get update && sudo apt-get install -y $missing" >&2
    exit 1
  fi
  log "installing system packages: $missing"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  apt-get update -qq && apt-get install -y -qq $missing >/dev/null
}

# The Python package compiles Cap'n Proto from Debian's source package of the installed
# capnproto (cmake/fetch_capnproto_source.sh fetches it with `apt-get source`): makes sure
# apt has source indexes that hold it, adding deb-src entries that mirror the distribution's
# own (/etc/apt/sources.list.d/debian.sources) when it has none.
install_source_indexes() {
  local version entry=/etc/apt/sources.list.d/xproc-deb-src.sources
  version=$(dpkg-query -W -f='${Version}' capnproto)
  apt-cache showsrc capnproto 2>/dev/null | grep -qx "Version: $version" && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "xproc needs apt's source indexes (deb-src) for capnproto $version" >&2
    echo "add deb-src entries (e.g. a copy of /etc/apt/sources.list.d/debian.sources with" \
      "'Types: deb-src'), then run: sudo apt-get update" >&2
    exit 1
  fi
  if [ ! -f "$entry" ]; then
    [ -f /etc/apt/sources.list.d/debian.sources ] || {
      echo "no /etc/apt/sources.list.d/debian.sources to mirror: add deb-src entries for capnproto $version" >&2
      exit 1
    }
    log "adding $entry (deb-src entries mirroring debian.sources)"
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$entry"
  fi
  log "updating apt's indexes (for the source indexes)"
  apt-get update -qq
}

python_bin() {
  # Prefer the python3 on PATH (it may be newer than the distribution's).
  command -v python3
}

install_python_packages() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$(python_bin)" -m venv "$VENV"
  fi
  local stamp=$VENV/.xproc-packages
  local want="${PY_PACKAGES[*]}"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing Python packages: $want"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q "${PY_PACKAGES[@]}"
    echo "$want" >"$stamp"
  fi
}

install_bench_python_packages() {
  local missing
  missing=$("$VENV/bin/python" - "${BENCH_PY_PACKAGES[@]}" <<'PY'
import sys
from importlib import metadata

for name in sys.argv[1:]:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        print(name)
PY
)
  [ -z "$missing" ] && return 0
  log "installing benchmark peers: ${missing//$'\n'/ }"
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q $missing
}

setup() {
  install_system_packages
  install_python_packages
  # (Re)configure when there is no build yet, or when it was made for another Python than
  # the venv's (the Python extension and tests are built for that interpreter).
  if [ ! -f "$BUILD/build.ninja" ] ||
     ! grep -q "^Python_EXECUTABLE:[A-Z]*=$VENV/bin/python\$" "$BUILD/CMakeCache.txt" 2>/dev/null; then
    log "configuring ($PRESET)"
    cmake --preset "$PRESET" -DPython_EXECUTABLE="$VENV/bin/python" >/dev/null
  fi
}

build() {
  APT_PACKAGES+=("${SOURCE_APT_PACKAGES[@]}")
  setup
  install_source_indexes
  log "building ($PRESET)"
  cmake --build "$BUILD" -j "$(nproc)"
  "$ROOT/bindings/python/package.sh" install "$VENV"
}

# The self-contained manylinux wheel and the sdist, in build/wheel (bindings/python/package.sh).
wheel() {
  APT_PACKAGES+=("${SOURCE_APT_PACKAGES[@]}")
  install_system_packages
  install_source_indexes
  install_python_packages
  "$ROOT/bindings/python/package.sh" wheel "$VENV" "$ROOT/build/wheel"
}

demo() {
  build
  "$ROOT/examples/run_all.sh" "$BUILD" "$VENV"
}

run_tests() {
  log "checking the formatting"
  format --check
  build
  wheel  # before ctest, whose wheel.fresh_venv test installs it: built alone, not beside tests
  log "running tests"
  if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    log "cargo not found: the Rust crate's tests (bindings/rust) are skipped"
  fi
  export XPROC_VENV=$VENV
  ctest --preset "$PRESET" --output-on-failure -j "$(nproc)"
}

# The iceoryx2 peer of `bench queue` (bench/peers/iceoryx2), a Rust binary built by cargo
# from the crate registry into build/bench-peers; without cargo its rows are left out.
build_iceoryx2_peer() {
  local cargo
  cargo=$(command -v cargo || echo "$HOME/.cargo/bin/cargo")
  if [ ! -x "$cargo" ]; then
    log "cargo not found: the iceoryx2 rows of bench queue are left out (https://rustup.rs)"
    return 0
  fi
  log "building the iceoryx2 peer (bench/peers/iceoryx2)"
  "$cargo" build --quiet --release --locked --manifest-path "$ROOT/bench/peers/iceoryx2/Cargo.toml" \
    --target-dir "$ROOT/build/bench-peers/iceoryx2"
}

bench() {
  local topic=${1:-}
  XPROC_PRESET=${XPROC_PRESET:-release}
  PRESET=$XPROC_PRESET BUILD=$ROOT/build/$XPROC_PRESET
  build
  if [ -z "$topic" ] || [ "$topic" = python ]; then
    install_bench_python_packages
  fi
  if [ -z "$topic" ] || [ "$topic" = queue ]; then
    build_iceoryx2_peer
  fi
  mkdir -p "$ROOT/build/bench"
  "$ROOT/bench/run.sh" "$BUILD" "$VENV" "$ROOT/build/bench" ${topic:+"$topic"}
  "$VENV/bin/python" "$ROOT/bench/report.py" "$ROOT/build/bench"
}

soak() {
  build
  export XPROC_SOAK=1
  ctest --test-dir "$BUILD" --output-on-failure -R Fault
  fuzz all "${XPROC_SOAK_FUZZ_SECONDS:-600}"
}

# The fuzz targets: tests/fuzz/<name>_fuzz.cpp, each with its corpus tests/fuzz/corpus/<name>.
fuzz_targets() {
  local file
  for file in "$ROOT"/tests/fuzz/*_fuzz.cpp; do
    file=${file##*/}
    echo "${file%_fuzz.cpp}"
  done
}

fuzz() {
  local wanted=${1:-all} seconds=${2:-60}
  PRESET=fuzz BUILD=$ROOT/build/fuzz
  APT_PACKAGES+=("${FUZZ_APT_PACKAGES[@]}")
  setup
  log "building the fuzz targets"
  cmake --build "$BUILD" --target fuzz -j "$(nproc)"
  local targets=()
  if [ "$wanted" = all ]; then
    mapfile -t targets < <(fuzz_targets)
  elif [ -f "$ROOT/tests/fuzz/${wanted}_fuzz.cpp" ]; then
    targets=("$wanted")
  else
    echo "no fuzz target '$wanted'; there are: $(fuzz_targets | tr '\n' ' ')" >&2
    exit 2
  fi
  local failed=()
  for target in "${targets[@]}"; do
    local binary=$BUILD/tests/fuzz/${target}_fuzz
    if [ ! -x "$binary" ]; then
      log "$target: not built (see the configure output), skipped"
      continue
    fi
    local work=$BUILD/corpus/$target artifacts=$BUILD/artifacts/$target/
    mkdir -p "$work" "$artifacts" "$ROOT/tests/fuzz/corpus/$target"
    log "fuzzing $target for ${seconds}s"
    # New inputs go to the work corpus (the first directory); the checked-in one is read.
    if ! "$binary" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$artifacts" "$work" "$ROOT/tests/fuzz/corpus/$target" \
        >"$BUILD/$target.log" 2>&1; then
      failed+=("$target")
      tail -n 60 "$BUILD/$target.log" >&2
    fi
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb))' \
      "$BUILD/$target.log" >&2 || true
  done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found something in: ${failed[*]} (inputs in $BUILD/artifacts/)" >&2
    exit 1
  fi
}

format() {
  local -a APT_PACKAGES=("${FORMAT_APT_PACKAGES[@]}")
  install_system_packages
  local files
  mapfile -t files < <(git -C "$ROOT" ls-files '*.h' '*.cpp')
  if [ "${1:-}" = --check ]; then
    clang-format-14 --dry-run --Werror "${files[@]}"
  else
    clang-format-14 -i "${files[@]}"
  fi
}

# The reference pages are generated from the headers' comments and the package's docstrings
# (docs/reference/generate.py); introspecting the package needs its extension built.
docs() {
  setup
  cmake --build "$BUILD" --target _xproc
  PYTHONPATH=$BUILD/python "$VENV/bin/python" "$ROOT/docs/reference/generate.py"
}

case "${1:-}" in
  setup) setup ;;
  build) build ;;
  wheel) wheel ;;
  demo) demo ;;
  test) run_tests ;;
  bench) shift; bench "$@" ;;
  soak) soak ;;
  fuzz) shift; fuzz "$@" ;;
  format) shift; format "$@" ;;
  docs) docs ;;
  ""|-h|--help|help) usage ;;
  *) usage; exit 2 ;;
esac
