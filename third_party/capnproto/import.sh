#!/usr/bin/env bash
# Copies Cap'n Proto's library sources from a checkout of its repository at a release tag
# into src/ here (replacing what is there), with the licence, and records the release in
# VERSION: what CMakeLists.txt builds, the C++ sources and headers of kj (with its TLS
# layer) and capnp, without tests, the compiler, or the other compat libraries.
# usage: third_party/capnproto/import.sh CAPNPROTO_CHECKOUT TAG   (e.g. v0.9.2)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$1
tag=$2
rm -rf "$here/src"
mkdir -p "$here/src"
git -C "$repo" archive "$tag" c++/src/kj c++/src/capnp | tar -x -C "$here/src" \
  --strip-components=2 --wildcards --no-wildcards-match-slash \
  'c++/src/kj/*.h' 'c++/src/kj/*.c++' 'c++/src/kj/parse/*' 'c++/src/kj/std/*' \
  'c++/src/kj/compat/tls.*' 'c++/src/kj/compat/readiness-io.*' \
  'c++/src/capnp/*.h' 'c++/src/capnp/*.c++' 'c++/src/capnp/*.capnp' 'c++/src/capnp/compat/std-iterator.h'
git -C "$repo" show "$tag:LICENSE" >"$here/LICENSE"
# Tests stay upstream, except the helpers upstream's libkj holds.
find "$here/src" -name '*test*' -not -name test.h -not -name test-helpers.c++ -delete
echo "${tag#v}" >"$here/VERSION"
