"""Describes a benchmark run as JSON on stdout: date, commit, machine, compiler, Python and the
peers' versions. bench/run.sh runs it once at the start of a run, with the interpreter the
Python peers run on (so the Python version and packages are that environment's), and keeps
the result beside each topic's JSON as OUT_DIR/TOPIC.meta.json. Standard library only.

usage: VENV/bin/python bench/meta.py BUILD_DIR > meta.json
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The Python packages python_compare.py measures against (distribution names). Absent ones
# are left out: their rows are too.
PYTHON_PACKAGES = ("pyzmq", "faster-fifo", "iceoryx2", "UltraDict", "atomics", "shared-memory-dict",
                   "aioprocessing", "numpy", "uvloop")


def command_output(*argv: str) -> str | None:
    """The command's stdout, stripped, or None when it cannot run or fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def commit() -> str:
    """The short hash of HEAD, with "+dirty" when tracked files differ from it (untracked files,
    as `git describe --dirty` does, do not count)."""
    head = command_output("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    if head is None:
        return "unknown"
    clean = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--"]).returncode == 0
    return head if clean else head + "+dirty"


def read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def machine() -> dict:
    cpuinfo = read_text("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    memory = re.search(r"^MemTotal:\s*(\d+) kB", read_text("/proc/meminfo"), re.M)
    os_name = re.search(r'^PRETTY_NAME="?([^"\n]+)', read_text("/etc/os-release"), re.M)
    found = {
        "cpu": model.group(1).strip() if model else platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(int(memory.group(1)) / 2**20, 1) if memory else None,
        "kernel": platform.release(),
        "os": os_name.group(1) if os_name else platform.system(),
        # A guest's vCPUs share their cores with other tenants: a reason for noisy figures.
        "virtual_machine": bool(re.search(r"^flags\s*:.*\bhypervisor\b", cpuinfo, re.M)),
    }
    return {key: value for key, value in found.items() if value is not None}


def cmake_cache(build: Path) -> dict[str, str]:
    """NAME → value of BUILD/CMakeCache.txt's `NAME:TYPE=value` lines."""
    entries = {}
    for line in read_text(build / "CMakeCache.txt").splitlines():
        match = re.match(r"([A-Za-z_][\w.-]*):[A-Z]+=(.*)", line)
        if match:
            entries[match.group(1)] = match.group(2)
    return entries


def build_info(cache: dict[str, str]) -> dict:
    found = {"build_type": cache.get("CMAKE_BUILD_TYPE") or None}
    compiler = cache.get("CMAKE_CXX_COMPILER")
    if compiler:
        # Through the symlinks: `c++ --version` calls itself "c++"; the file it links to
        # names the compiler (x86_64-linux-gnu-g++-12, clang++-14).
        version = command_output(os.path.realpath(compiler), "--version")
        found["compiler"] = version.splitlines()[0] if version else compiler
    capnp_dir = cache.get("CapnProto_DIR")
    version_file = read_text(Path(capnp_dir) / "CapnProtoConfigVersion.cmake") if capnp_dir else ""
    capnp = re.search(r'set\(PACKAGE_VERSION "([^"]+)"\)', version_file)
    if capnp:
        found["capnproto"] = capnp.group(1)
    return {key: value for key, value in found.items() if value}


def boost_version(cache: dict[str, str]) -> str | None:
    include = cache.get("Boost_INCLUDE_DIR") or "/usr/include"
    version_header = read_text(Path(include) / "boost/version.hpp")
    match = re.search(r'#define BOOST_LIB_VERSION "([\d_]+)"', version_header)
    return match.group(1).replace("_", ".") if match else None


def redis_version() -> str | None:
    banner = command_output("redis-server", "--version")  # "Redis server v=7.0.15 sha=…"
    match = re.search(r"v=(\S+)", banner or "")
    return match.group(1) if match else None


def nats_versions() -> dict[str, str]:
    """The NATS topic's server and C client (Debian's packages)."""
    versions = {}
    banner = command_output("nats-server", "--version")  # "nats-server: v2.9.10"
    match = re.search(r"\bv(\d\S*)", banner or "")
    if match:
        versions["nats-server"] = match.group(1)
    libnats = command_output("pkg-config", "--modversion", "libnats")
    if libnats:
        versions["libnats"] = libnats.strip()
    return versions


def iceoryx2_peer_version() -> str | None:
    """The Rust peer of the queue topic, found where queue_compare.cpp looks for it."""
    binary = os.environ.get("XPROC_BENCH_ICEORYX2") or str(
        ROOT / "build/bench-peers/iceoryx2/release/xproc-bench-iceoryx2")
    if not os.access(binary, os.X_OK):
        return None
    try:
        return json.loads(command_output(binary, "--version") or "")["iceoryx2"]
    except (ValueError, KeyError, TypeError):
        return None


def python_package_versions() -> dict[str, str]:
    versions = {}
    for name in PYTHON_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    cache = cmake_cache(Path(sys.argv[1]))
    python = platform.python_version()
    native_peers = {"Boost": boost_version(cache), "Redis": redis_version(),
                    "iceoryx2": iceoryx2_peer_version(), "multiprocessing": python, **nats_versions()}
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit(),
        "machine": machine(),
        **build_info(cache),
        "python": python,
        # What the run was told beyond the defaults (--quick, --reps N, --scale F): a quick
        # run's figures are not comparable with a full one's.
        "flags": os.environ.get("XPROC_BENCH_FLAGS", "").strip(),
        "python_flags": os.environ.get("XPROC_BENCH_PYTHON_FLAGS", "").strip(),
        # Two groups because a name can mean two programs: iceoryx2 is a Rust binary beside
        # the C++ comparisons (queue) and a Python package beside python_compare.py.
        "peers": {name: version for name, version in native_peers.items() if version},
        "python_peers": {"multiprocessing": python, **python_package_versions()},
    }
    json.dump(meta, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
