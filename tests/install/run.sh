#!/usr/bin/env bash
# Installs xproc from BUILD_DIR into a temporary prefix, builds tests/install/example_service
# against it with only find_package(xproc), runs its programs, and checks what the prefix
# holds: the public headers only (xproc::nats's too, where built), an umbrella header free of kj's event loop, the
# pkg-config file.
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
output=$("$work/build/example_manager")
echo "$output"
[ "$output" = "jobs: 3" ]
# xproc::nats, when this build has it: linked from the installed tree alone, and a connect
# to a closed port answers with xproc's ConnectionError.
if [ -f "$build/libxproc_nats.a" ] || [ -f "$build/libxproc_nats.so" ]; then
  output=$("$work/build/example_nats" nats://127.0.0.1:1)
  echo "$output"
  [ "$output" = "unreachable" ]
  [ -f "$work/prefix/include/xproc/nats/queue.h" ]
fi
# Only public headers: no private layouts, no RPC internals.
if find "$work/prefix/include/xproc" -name '*_internal.h' -o -type d -name rpc -o -type d -name shm | grep -q .; then
  echo "private headers were installed:" >&2
  find "$work/prefix/include/xproc" -name '*_internal.h' -o -type d -name rpc -o -type d -name shm >&2
  exit 1
fi
# <xproc/xproc.h> (xproc::core) compiles against the installed tree without kj's event loop.
echo '#include <xproc/xproc.h>' >"$work/umbrella.cpp"
deps=$(c++ -std=c++20 -I"$work/prefix/include" -M "$work/umbrella.cpp")
if grep -q 'kj/async' <<<"$deps"; then
  echo "<xproc/xproc.h> pulls in kj-async:" >&2
  grep -o '[^ ]*kj/async[^ ]*' <<<"$deps" >&2
  exit 1
fi
# The event-loop headers (xproc::manager) compile against the installed tree too.
for header in queue_promises.h queue_waiter.h wait.h; do
  echo "#include <xproc/$header>" >"$work/$header.cpp"
  c++ -std=c++20 -I"$work/prefix/include" -fsyntax-only "$work/$header.cpp"
done
includedir=$(PKG_CONFIG_PATH=$work/prefix/lib/pkgconfig pkg-config --variable=includedir xproc)
[ -f "$includedir/xproc/queue.h" ]
[ -x "$work/prefix/bin/xproc" ]
# The installed command finds its files from where it is, not from where it was built: it
# has no harness, and says so.
if bench_out=$("$work/prefix/bin/xproc" bench 2>&1); then
  echo "an installed xproc ran a benchmark harness: $bench_out" >&2
  exit 1
fi
grep -q "not in one" <<<"$bench_out" || { echo "unexpected: $bench_out" >&2; exit 1; }
[ -f "$work/prefix/share/xproc/schema/xproc/value.capnp" ]
[ -f "$work/prefix/include/xproc.h" ]
echo "installed package OK"
