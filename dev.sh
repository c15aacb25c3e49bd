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

APT_PACKAGES=(g++ cmake ninja-build pkg-config capnproto libcapnp-dev libboost-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev redis-server python3-venv python3-dev)
PY_PACKAGES=(pytest nanobind scikit-build-core pycapnp)

usage() {
  cat <<'USAGE'
usage: ./dev.sh COMMAND

  setup         install missing system and Python packages, configure the build
  build         setup, then build everything
  demo          build, then run the seed document's examples (C++ and Python)
  test          build, then run every test (C++ through ctest, Python through pytest)
  bench [TOPIC] build, then run the comparison harness for TOPIC (all when omitted);
                results go to build/bench/TOPIC.json
  soak          long-running fault and fuzz tests (not part of `test`)

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
  setup
  log "building ($PRESET)"
  cmake --build "$BUILD" -j "$(nproc)"
  if [ -x "$ROOT/bindings/python/install.sh" ]; then
    "$ROOT/bindings/python/install.sh" "$VENV" "$BUILD"
  fi
}

demo() {
  build
  "$ROOT/examples/run_all.sh" "$BUILD" "$VENV"
}

run_tests() {
  build
  log "running tests"
  if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    log "cargo not found: the Rust crate's tests (bindings/rust) are skipped"
  fi
  export XPROC_VENV=$VENV
  ctest --preset "$PRESET" --output-on-failure -j "$(nproc)"
}

bench() {
  local topic=${1:-}
  XPROC_PRESET=${XPROC_PRESET:-release}
  PRESET=$XPROC_PRESET BUILD=$ROOT/build/$XPROC_PRESET
  build
  mkdir -p "$ROOT/build/bench"
  "$ROOT/bench/run.sh" "$BUILD" "$VENV" "$ROOT/build/bench" ${topic:+"$topic"}
}

soak() {
  build
  export XPROC_SOAK=1
  ctest --test-dir "$BUILD" --output-on-failure -R Fault
}

case "${1:-}" in
  setup) setup ;;
  build) build ;;
  demo) demo ;;
  test) run_tests ;;
  bench) shift; bench "$@" ;;
  soak) soak ;;
  ""|-h|--help|help) usage ;;
  *) usage; exit 2 ;;
esac
