#!/usr/bin/env bash
# Builds a wheel from the sdist of `./dev.sh wheel` the way pip does for a user (an isolated
# build in a temporary directory, nothing reused), and checks it against the wheel in
# build/wheel: the same files, and an extension with the same needed libraries and the same
# exported symbols. Not part of `./dev.sh test`: the build from scratch takes minutes.
# usage: tests/wheel/sdist.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
"$root/dev.sh" wheel >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$root/.venv/bin/python" -m pip wheel -q --no-deps --no-cache-dir -w "$work/out" "$root"/build/wheel/xproc_ipc-*.tar.gz
mkdir "$work/from_sdist" "$work/shipped"
unzip -q "$work"/out/*.whl -d "$work/from_sdist"
unzip -q "$root"/build/wheel/xproc_ipc-*.whl -d "$work/shipped"
# files; then, for the extension, its needed libraries and its defined dynamic symbols
describe() {
  (cd "$1" && find . -type f | sort)
  local so
  so=$(find "$1" -name '_xproc*.so')
  readelf -d "$so" | awk '/NEEDED/ {print $NF}'
  readelf --dyn-syms -W "$so" | awk '$1 ~ /^[0-9]+:$/ && $7 != "UND" {print $8}' | sort
}
if ! diff <(describe "$work/from_sdist") <(describe "$work/shipped"); then
  echo "the wheel built from the sdist differs from build/wheel's (< sdist, > shipped)" >&2
  exit 1
fi
describe "$work/shipped"
echo "the sdist builds the same wheel"
