#!/usr/bin/env bash
# Puts in deps/capnproto the Cap'n Proto sources that the Python package compiles
# (cmake/CapnProtoFromSource.cmake, XPROC_STATIC_DEPS): Debian's source package of the
# installed capnproto, of the same release as the `capnp` compiler that generates the code.
# `apt-get source` fetches it into build/deps, checked against the archive's signed indexes
# and with Debian's patches applied; its src/kj, src/capnp, cmake/CapnProtoMacros.cmake and
# LICENSE.txt are copied to deps/capnproto, which git ignores and the sdist carries. Does
# nothing when deps/capnproto holds that version already.
# Needs dpkg-dev and a deb-src entry for the archive (./dev.sh build and wheel add both).
# usage: cmake/fetch_capnproto_source.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$root/build/deps
out=$root/deps/capnproto

fail() {
  echo "fetch_capnproto_source: $*" >&2
  exit 1
}

version=$(dpkg-query -W -f='${Version}' capnproto 2>/dev/null) ||
  fail "the capnproto package is not installed (apt-get install capnproto)"
# 0.9.2-2 unpacks into capnproto-0.9.2 (no epoch, no Debian revision).
upstream=${version#*:}
upstream=${upstream%-*}
tree=$work/capnproto-$upstream
provenance="Debian's source package capnproto $version (apt-get source capnproto=$version)"

[ "$(cat "$out/SOURCE" 2>/dev/null)" = "$provenance" ] && exit 0

# The unpacked tree records the version it was fetched for once it is complete.
if [ "$(cat "$tree/.xproc-fetched" 2>/dev/null)" != "$version" ]; then
  command -v dpkg-source >/dev/null || fail "dpkg-source not found (apt-get install dpkg-dev)"
  rm -rf "$tree"
  mkdir -p "$work"
  printf '\033[1m==> %s\033[0m\n' "fetching $provenance into $work" >&2
  (cd "$work" && apt-get source -q capnproto="$version") >"$work/apt-get-source.log" 2>&1 ||
    fail "apt-get source capnproto=$version failed: $(tail -n 1 "$work/apt-get-source.log")" \
      "(needs a deb-src entry for it, which ./dev.sh wheel adds; log: $work/apt-get-source.log)"
  [ -f "$tree/src/capnp/common.h" ] || fail "apt-get source did not unpack $tree (log: $work/apt-get-source.log)"
  echo "$version" >"$tree/.xproc-fetched"
fi

# Copied with new times, so that an incremental build recompiles what another version changed.
rm -rf "$out"
mkdir -p "$out/src" "$out/cmake"
cp -R "$tree/src/kj" "$tree/src/capnp" "$out/src/"
cp "$tree/cmake/CapnProtoMacros.cmake" "$out/cmake/"
cp "$tree/LICENSE.txt" "$out/"
echo "$provenance" >"$out/SOURCE"
