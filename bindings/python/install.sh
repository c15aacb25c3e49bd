#!/usr/bin/env bash
# Installs the xproc Python package into a virtual environment the way a user does
# (`pip install ./bindings/python`), keeping scikit-build-core's build directory so that a
# rebuild is incremental, and skipping pip entirely when no source changed.
# usage: bindings/python/install.sh VENV_DIR [BUILD_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=$1
python=$venv/bin/python
stamp=$venv/.xproc-python-sources

sources_hash() {
  (cd "$root" && find CMakeLists.txt cmake schema src bindings/python -type f \
      -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha1sum | sha1sum | cut -d' ' -f1)
}

hash=$(sources_hash)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ] && "$python" -c "import xproc" 2>/dev/null; then
  exit 0
fi
printf '\033[1m==> %s\033[0m\n' "installing the xproc Python package into $venv" >&2
"$python" -m pip install -q --no-build-isolation --no-deps \
  -C build-dir="$root/build/python-wheel" "$here"
echo "$hash" >"$stamp"
