#!/usr/bin/env bash
# The Rust crate as crates.io would take it: `cargo package` packs it and builds the packed
# crate on its own, away from the repository (so it must carry its schema, README and
# LICENSE), and its documentation builds without a warning (missing docs included).
# usage: tests/release/rust_package.sh CARGO   (ctest sets XPROC_LIB_DIR and CARGO_TARGET_DIR)
set -euo pipefail
cargo=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root/bindings/rust"
# --allow-dirty: the check runs on working trees too; what goes in is checked below.
"$cargo" package --quiet --allow-dirty
listing=$("$cargo" package --list --allow-dirty 2>/dev/null)
for file in Cargo.toml LICENSE README.md build.rs schema/value.capnp src/lib.rs src/array.rs; do
  grep -qx "$file" <<<"$listing" || { echo "the packaged crate lacks $file" >&2; exit 1; }
done
if grep -q '^tests/' <<<"$listing"; then
  echo "the packaged crate holds the repository's tests:" >&2
  grep '^tests/' <<<"$listing" >&2
  exit 1
fi
# The links are packed as copies of what they point to.
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
crate=${CARGO_TARGET_DIR:-target}/package/xproc-ipc-$version.crate
tar -xzOf "$crate" "xproc-ipc-$version/schema/value.capnp" | cmp - "$root/schema/xproc/value.capnp"
tar -xzOf "$crate" "xproc-ipc-$version/LICENSE" | cmp - "$root/LICENSE"
RUSTDOCFLAGS="-D warnings" "$cargo" doc --quiet --no-deps
echo "xproc-ipc $version packages and documents cleanly"
