"""Every package of xproc reports the one version set in the root CMakeLists.txt.

project(xproc VERSION ...) is the source; everything else is derived from it at build time
(<xproc/version.h>, xproc.pc, xprocConfigVersion.cmake, the libraries' SONAME) or, where
a tool cannot read CMake (Cargo, the wheel's pyproject), repeated or read by a regex. This
script compares them all and names every one that differs.

usage: check_versions.py BUILD_DIR XPROC_CLI LIBXPROC_C
  (run by ctest as release.versions, with PYTHONPATH at the developer build's package)
"""

from __future__ import annotations

import ctypes
import pathlib
import re
import subprocess
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def cmake_version() -> str:
    text = (ROOT / "CMakeLists.txt").read_text()
    match = re.search(r"^project\(xproc\s+VERSION\s+(\d+\.\d+\.\d+)\b", text, re.MULTILINE)
    assert match, "no project(xproc VERSION x.y.z ...) in CMakeLists.txt"
    return match.group(1)


def soversion(version: str) -> str:
    """The SOVERSION rule of the root CMakeLists.txt: the major, or 0.MINOR before 1.0."""
    major, minor, _ = version.split(".")
    return f"0.{minor}" if major == "0" else major


def scikit_build_version(pyproject: pathlib.Path, project: dict, tool: dict) -> str | None:
    """The wheel's version as scikit-build-core derives it, or None if it is static."""
    if "version" not in project.get("dynamic", []):
        return project.get("version")
    settings = tool.get("scikit-build", {}).get("metadata", {}).get("version")
    if settings is None:  # the dynamic-metadata table form
        entries = [e for e in tool.get("dynamic-metadata", []) if e.get("field") == "version"]
        settings = entries[0] if entries else None
    assert settings is not None, f"{pyproject}: a dynamic version with no provider settings"
    provider = settings.get("provider", "")
    assert provider.endswith("metadata.regex"), f"{pyproject}: version provider {provider!r} is not the regex one"
    # The provider's own rule (scikit_build_core/metadata/regex.py): search, format, remove.
    text = (pyproject.parent / settings["input"]).read_text()
    default = r'(?i)^(__version__|VERSION)(?: ?\: ?str)? *= *([\'"])v?(?P<value>.+?)\2'
    match = re.search(settings.get("regex", default), text, re.MULTILINE)
    assert match, f"{pyproject}: its version regex finds nothing in {settings['input']}"
    value = settings.get("result", "{value}").format(*match.groups(), **match.groupdict())
    return re.sub(settings["remove"], "", value) if settings.get("remove") else value


def main() -> int:
    build, cli, libxproc_c = (pathlib.Path(arg) for arg in sys.argv[1:4])
    expected = cmake_version()
    found: dict[str, str | None] = {}

    found["xproc --version"] = subprocess.run([cli, "--version"], check=True, capture_output=True,
                                              text=True).stdout.strip().removeprefix("xproc ")
    found["xproc.__version__"] = subprocess.run(
        [sys.executable, "-c", "import xproc; print(xproc.__version__)"], check=True, capture_output=True,
        text=True).stdout.strip()
    library = ctypes.CDLL(str(libxproc_c))
    library.xproc_version.restype = ctypes.c_char_p
    found["xproc_version() of libxproc_c"] = library.xproc_version().decode()

    pc = re.search(r"^Version: *(\S+)", (build / "xproc.pc").read_text(), re.MULTILINE)
    found["xproc.pc"] = pc and pc.group(1)
    config = re.search(r'set\(PACKAGE_VERSION "([^"]+)"\)', (build / "xprocConfigVersion.cmake").read_text())
    found["xprocConfigVersion.cmake"] = config and config.group(1)
    header = re.search(r'#define XPROC_VERSION_STRING "([^"]+)"',
                       (build / "generated/xproc/version.h").read_text())
    found["<xproc/version.h>"] = header and header.group(1)

    cargo = tomllib.loads((ROOT / "bindings/rust/Cargo.toml").read_text())
    found["bindings/rust/Cargo.toml"] = cargo["package"]["version"]
    pyproject = ROOT / "pyproject.toml"
    data = tomllib.loads(pyproject.read_text())
    found["pyproject.toml (wheel metadata)"] = scikit_build_version(pyproject, data["project"], data.get("tool", {}))

    changelog = (ROOT / "CHANGELOG.md").read_text()
    found["CHANGELOG.md section"] = expected if re.search(rf"^## \[{re.escape(expected)}\]", changelog,
                                                          re.MULTILINE) else None

    # SONAME as the dynamic section records it: what programs linked to it will look for.
    dynamic = subprocess.run(["readelf", "-d", str(libxproc_c)], check=True, capture_output=True, text=True).stdout
    soname = re.search(r"\(SONAME\)\s+Library soname: \[(.+?)\]", dynamic)
    wanted_soname = f"libxproc_c.so.{soversion(expected)}"

    failures = [f"{where}: {value!r}" for where, value in found.items() if value != expected]
    if not soname or soname.group(1) != wanted_soname:
        failures.append(f"libxproc_c SONAME: {soname and soname.group(1)!r}, expected {wanted_soname!r}")
    for where, value in found.items():
        print(f"{where:50} {value}")
    print(f"{'libxproc_c SONAME':50} {soname and soname.group(1)}")
    if failures:
        print(f"\nCMakeLists.txt says {expected}, but:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print(f"\nall report {expected}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
