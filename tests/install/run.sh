#!/usr/bin/env bash
# Installs xproc from BUILD_DIR into a temporary prefix, builds tests/install/example_service
# against it with only find_package(xproc), runs it, and checks the pkg-config file.
# usage: tests/install/run.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$here/example_service" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
output=$("$work/build/example_service")
echo "$output"
[ "$output" = "job 7: {'task': 'resize', 'sizes': [64, 128]}" ]
includedir=$(PKG_CONFIG_PATH=$work/prefix/lib/pkgconfig pkg-config --variable=includedir xproc)
[ -f "$includedir/xproc/queue.h" ]
[ -x "$work/prefix/bin/xproc" ]
[ -f "$work/prefix/share/xproc/schema/xproc/value.capnp" ]
[ -f "$work/prefix/include/xproc.h" ]
echo "installed package OK"
