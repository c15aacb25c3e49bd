"""Writes the reference pages docs/reference/cpp.md and python.md from the sources.

cpp.md: the comments of the installed public headers (the XPROC_PUBLIC_HEADERS list of
cmake/XprocInstall.cmake) beside the declarations they precede, as the headers group them,
without bodies, private members or namespace detail.

python.md: the `xproc` package as Python sees it, through introspection: every public
module, class, function, method and property with its signature and docstring. The
package must be importable: run with PYTHONPATH=build/default/python (`./dev.sh docs`
does). tests/python/test_docstrings.py walks the same objects (public_objects()).

usage: generate.py [--check] [--audit]
  --check  change nothing; fail, naming the pages, when a committed page is not what the
           sources give (release.reference_docs runs this)
  --audit  list the public C++ declarations that no comment precedes
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import inspect
import pathlib
import pkgutil
import re
import sys
from typing import Any, Iterator

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = ROOT / "docs" / "reference"

# ---- C++: declarations and the comments before them ----------------------------------------


@dataclasses.dataclass
class Decl:
    """One group of declarations (consecutive lines, no blank between) and its comment."""

    signatures: list[str]
    doc: list[str]
    kind: str = "decl"  # "decl", "class", "enum", "note"
    members: list["Decl"] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Scope:
    kind: str  # "namespace", "class", "enum", "body"
    hidden: bool  # inside namespace detail, a private section, a function body...
    access: str = "public"
    decl: Decl | None = None
    group: Decl | None = None  # the group the next declaration joins if no blank line comes


def public_headers() -> list[str]:
    text = (ROOT / "cmake" / "XprocInstall.cmake").read_text()
    block = re.search(r"set\(XPROC_PUBLIC_HEADERS(.*?)\)", text, re.S)
    assert block, "no XPROC_PUBLIC_HEADERS in cmake/XprocInstall.cmake"
    return [word for line in block.group(1).splitlines() for word in line.split("#")[0].split()]


def split_comment(line: str) -> tuple[str, str]:
    """(code, trailing comment) of one line, leaving // inside string literals alone."""
    quote = None
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif line.startswith("//", i):
            return line[:i], line[i + 2:].strip()
        i += 1
    return line, ""


def clean_comment(text: str) -> str:
    """A comment's text without the space after // (an indented line stays code) or a
    clang-tidy NOLINT marker."""
    text = text.removeprefix(" ").rstrip()
    return re.sub(r"^NOLINT(\([^)]*\))?:?\s*", "", text)


def signature(text: str) -> str:
    """A declaration as shown: one line, no constructor initializers, no trailing ;."""
    text = " ".join(text.split()).rstrip(";").strip()
    depth = 0
    seen_parameters = False
    for i, c in enumerate(text):
        if c in "(<[":
            depth += 1
        elif c in ")>]":
            depth -= 1
            seen_parameters = seen_parameters or (c == ")" and depth == 0)
        elif c == ":" and depth == 0 and seen_parameters and text[i - 1] != ":" and text[i + 1:i + 2] != ":":
            return text[:i].strip()
    return text


def skipped(text: str) -> bool:
    """Declarations a reader learns nothing from in a reference."""
    text = " ".join(text.split())
    return (not text or text.startswith(("static_assert", "friend class", "friend struct", "using namespace"))
            or re.search(r"\boverride\b|= *delete\b", text) is not None
            or re.fullmatch(r"using (\w+::)*(\w+)(<[^;]*>)?::\2;?", text) is not None)  # inherited constructors


def opens_body(text: str) -> bool:
    """Whether a { after `text` opens a function's body rather than a braced initializer
    (size_t{1}, spin{50}, = {...}): a body follows a parameter list and its qualifiers, or
    a constructor's last initializer."""
    return re.search(r"[)}]\s*((const|noexcept|override|final|mutable|&|&&)\s*)*$", text) is not None


def forward_declaration(text: str) -> bool:
    text = " ".join(text.split())
    return re.fullmatch(r"(template\s*<.*>\s*)?(class|struct) \w+|enum (class )?\w+( : [\w:]+)?", text) is not None


def parse_header(path: pathlib.Path) -> tuple[list[str], list[Decl]]:
    """The file's opening comment and its public declarations, nested by class."""
    lines = path.read_text().splitlines()
    intro: list[str] = []
    index = 0
    while index < len(lines) and lines[index].lstrip().startswith("//"):
        intro.append(lines[index].lstrip()[2:].removeprefix(" "))
        index += 1
    top: list[Decl] = []
    stack = [Scope("file", hidden=False)]
    pending: list[str] = []  # the comment lines above the statement being read
    statement = ""
    statement_doc: list[str] = []
    paren = 0
    preprocessor = False

    def container() -> list[Decl]:
        for scope in reversed(stack):
            if scope.decl is not None:
                return scope.decl.members
        return top

    def visible() -> bool:
        return not any(s.hidden or (s.kind == "class" and s.access != "public") for s in stack)

    def add(text: str, kind: str, doc: list[str]) -> Decl | None:
        scope = stack[-1]
        if not visible() or skipped(text):
            scope.group = None
            return None
        shown = signature(text)
        if not doc and scope.group is not None and kind == "decl" and scope.kind != "enum":
            scope.group.signatures.append(shown)
            return scope.group
        decl = Decl([shown], doc, kind)
        container().append(decl)
        scope.group = decl if kind == "decl" else None
        return decl

    for raw in lines[index:]:
        stripped = raw.strip()
        if preprocessor or stripped.startswith("#"):  # a directive has its line to itself
            # A macro with a comment of its own is API (XPROC_REQUIRE); the rest is plumbing.
            macro = re.match(r"#\s*define\s+(\w+(\([^)]*\))?)", stripped)
            if macro and not preprocessor and pending and visible() and stack[-1].kind in ("file", "namespace"):
                container().append(Decl([f"#define {macro.group(1)}"], pending))
            preprocessor = stripped.endswith("\\")
            pending = []
            continue
        if stripped.startswith("//") and not statement.strip():
            pending.append(clean_comment(stripped[2:]))
            continue
        if not stripped:
            if pending and not statement.strip() and visible():
                container().append(Decl([], pending, "note"))
            pending = []
            stack[-1].group = None
            continue
        code, trailing = split_comment(raw)
        trailing = clean_comment(trailing).strip()
        if not statement.strip():
            statement_doc = pending
            pending = []
        if trailing:
            statement_doc = statement_doc + [trailing]
        last: Decl | None = None
        quote = None
        for i, c in enumerate(code):
            scope = stack[-1]
            if quote:
                statement += c
                if c == quote and code[i - 1] != "\\":
                    quote = None
                continue
            if scope.kind == "body":
                if c == "{":
                    stack.append(Scope("body", hidden=True))
                elif c == "}":
                    stack.pop()
                continue
            if c in "\"'":
                quote = c
            if c == "{" and paren == 0 and statement.strip() and not re.match(
                    r"(namespace|extern|enum|(template\s*<.*>\s*)?(class|struct|union))\b", statement.strip()) \
                    and not opens_body(statement.strip()) and not statement.strip().endswith("requires"):
                paren += 1  # a braced initializer: part of the statement, as parentheses are
            elif c in "({" and paren > 0:
                paren += 1
            elif c == "(":
                paren += 1
            elif c in ")}" and paren > 0:
                paren -= 1
                statement += c
                continue
            if paren > 0 or c not in "{};:,":
                statement += c
                continue
            text = statement.strip()
            if c == ":" and text in ("public", "private", "protected"):
                scope.access = text
                scope.group = None
                statement, statement_doc = "", []
            elif c == ":":
                statement += c
            elif c == "," and scope.kind == "enum":
                last = add(text, "decl", statement_doc) if text else last
                statement, statement_doc = "", []
            elif c == ",":
                statement += c
            elif c == ";":
                if text and not forward_declaration(text):
                    last = add(text, "decl", statement_doc)
                statement, statement_doc = "", []
            elif c == "{":
                words = text.split()
                if words[:1] == ["namespace"] or text.startswith('extern "C"'):
                    # xproc's own insides: detail, and the shm and rpc layers behind the
                    # public headers (STYLE.md's layout).
                    hidden = any(w in ("detail", "shm", "rpc") or w.endswith("::detail") for w in words[1:2])
                    stack.append(Scope("namespace", hidden=hidden))
                elif re.match(r"(template\s*<.*>\s*)?(class|struct|union)\b[^(]*$", text):
                    # An explicit specialization without a comment of its own is the primary
                    # template's business (DTypeOf<T>, std::hash): left out.
                    plain_specialization = text.startswith("template <>") and not statement_doc
                    decl = None if plain_specialization else add(text, "class", statement_doc)
                    access = "private" if re.match(r"(template\s*<.*>\s*)?class\b", text) else "public"
                    stack.append(Scope("class", hidden=decl is None, access=access, decl=decl))
                elif re.match(r"enum\b", text):
                    decl = add(text, "enum", statement_doc)
                    stack.append(Scope("enum", hidden=decl is None, decl=decl))
                else:  # a function's body, or a braced initializer: its declaration is the statement
                    if text.endswith("requires"):  # a concept's requirements
                        text += " { ... }"
                    if text and not text.startswith("="):
                        last = add(text, "decl", statement_doc)
                    stack.append(Scope("body", hidden=True))
                statement, statement_doc = "", []
            elif c == "}":
                if text and scope.kind == "enum":
                    add(text, "decl", statement_doc)
                statement, statement_doc = "", []
                if len(stack) > 1:
                    stack.pop()
        if statement.strip():
            statement += " "
        elif trailing and last is not None and trailing not in last.doc:
            last.doc.append(trailing)
    return intro, top


def paragraphs(lines: list[str]) -> str:
    """Comment lines as Markdown: blank-separated paragraphs, indented lines kept as code."""
    out: list[str] = []
    code = False
    for line in lines:
        is_code = line.startswith("  ") and line.strip() != ""
        if is_code and not code:
            out += ["", "```cpp"]
        elif code and not is_code:
            out += ["```", ""]
        code = is_code
        out.append(line[2:] if is_code else line)
    if code:
        out.append("```")
    return "\n".join(out).strip()


def render_cpp_decls(decls: list[Decl], level: int, out: list[str]) -> None:
    for decl in decls:
        if decl.kind == "note":
            out += [paragraphs(decl.doc), ""]
        elif decl.kind in ("class", "enum"):
            out += [f"{'#' * level} `{decl.signatures[0]}`", ""]
            if decl.doc:
                out += [paragraphs(decl.doc), ""]
            if decl.kind == "enum":
                for member in decl.members:
                    for sig in member.signatures:
                        text = f"- `{sig}`"
                        out.append(text + (f": {' '.join(member.doc)}" if member.doc else ""))
                out.append("")
            else:
                render_cpp_decls(decl.members, min(level + 1, 6), out)
        else:  # as the header has it: the comment, then the declarations it precedes
            if decl.doc:
                out += [paragraphs(decl.doc), ""]
            out += ["```cpp", *decl.signatures, "```", ""]


def cpp_reference() -> str:
    out = [
        "# C++ reference",
        "",
        "Generated by `docs/reference/generate.py` (`./dev.sh docs`) from the comments of the",
        "installed headers; edit those, not this page. Every header is included as",
        "`<xproc/NAME.h>`: `<xproc/xproc.h>` brings xproc::core (queues, pipes, connections),",
        "the Manager's headers need xproc::manager. `<xproc/version.h>`, generated at build",
        "time, defines `XPROC_VERSION_MAJOR`, `_MINOR`, `_PATCH` and `XPROC_VERSION_STRING`.",
        "Errors are the classes of `<xproc/errors.h>`; the guide (`docs/guide.md`) shows the",
        "same API at work.",
        "",
        "Headers: " + ", ".join(f"[`{h}`](#{h.replace('.', '')})" for h in public_headers()),
        "",
    ]
    for header in public_headers():
        intro, decls = parse_header(ROOT / "src" / "xproc" / header)
        out += [f"## {header}", "", f"`#include <xproc/{header}>`", ""]
        if intro:
            out += [paragraphs(intro), ""]
        render_cpp_decls(decls, 3, out)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out).rstrip() + "\n")


def audit_cpp() -> list[str]:
    missing = []

    def walk(header: str, decls: list[Decl], where: str) -> None:
        for decl in decls:
            if decl.kind != "note" and not decl.doc:
                missing.append(f"{header}: {where}{decl.signatures[0]}")
            if decl.kind == "class":
                walk(header, decl.members, where + decl.signatures[0].split("{")[0] + " :: ")

    for header in public_headers():
        walk(header, parse_header(ROOT / "src" / "xproc" / header)[1], "")
    return missing


# ---- Python: the package as introspection sees it ------------------------------------------


def public_modules() -> list[Any]:
    import xproc

    modules = [xproc]
    for info in pkgutil.iter_modules(xproc.__path__):
        if not info.name.startswith("_"):
            modules.append(importlib.import_module(f"xproc.{info.name}"))
    return modules


def public_names(module: Any) -> list[str]:
    """A module's __all__, then the other public names it defines itself (classes such as
    the proxies, which programs meet as the results of calls)."""
    names = list(getattr(module, "__all__", []))
    names += [name for name, value in vars(module).items()
              if not name.startswith("_") and name not in names and not inspect.ismodule(value)
              and (inspect.isclass(value) or inspect.isfunction(value))
              and getattr(value, "__module__", None) == module.__name__]
    return names


def in_package(value: Any) -> bool:
    return (getattr(value, "__module__", "") or "").startswith("xproc")


def class_members(cls: type) -> list[tuple[str, Any]]:
    """The public methods and properties a class defines itself, in definition order."""
    members = []
    for name, value in vars(cls).items():
        if name.startswith("_"):  # private, or a protocol's method (__enter__, __aiter__ ...)
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property) or callable(value) or inspect.isdatadescriptor(value):
            members.append((name, value))
    return members


def public_objects() -> Iterator[tuple[str, Any]]:
    """Every public module, and every class, function, method and property of the package
    (each once, under the first name it is reached by), with its qualified name."""
    seen: set[int] = set()
    for module in public_modules():
        yield module.__name__, module
        for name in public_names(module):
            value = getattr(module, name)
            if inspect.ismodule(value) or id(value) in seen or not in_package(value):
                continue
            seen.add(id(value))
            yield f"{module.__name__}.{name}", value
            if inspect.isclass(value) and not issubclass(value, BaseException):
                for member_name, member in class_members(value):
                    yield f"{module.__name__}.{name}.{member_name}", member


class _Annotation:
    """An annotation shown as written: the package's annotations are strings
    (``from __future__ import annotations``), which a signature would print quoted."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text.strip("'\"")  # a forward reference written "Queue"


def python_signature(name: str, value: Any) -> str:
    """`name(parameters) -> result` as the reader calls it: no self, no quotes around
    annotations, a class by its constructor's parameters."""
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):  # an extension's object that states no signature
        doc = getattr(value, "__doc__", "") or ""
        first = doc.strip().splitlines()[0] if doc.strip() else ""
        return first.replace("(self, ", "(").replace("(self)", "()") if first.startswith(name + "(") else name
    parameters = list(signature.parameters.values())
    if parameters and parameters[0].name in ("self", "cls"):
        parameters = parameters[1:]
    parameters = [p.replace(annotation=_Annotation(p.annotation)) if isinstance(p.annotation, str) else p
                  for p in parameters]
    result = signature.return_annotation
    if inspect.isclass(value) or result is inspect.Signature.empty:
        result = inspect.Signature.empty
    elif isinstance(result, str):
        result = _Annotation(result)
    text = f"{name}{signature.replace(parameters=parameters, return_annotation=result)}"
    text = re.sub(r" at 0x[0-9a-f]+", "", text)  # sentinels' reprs
    return re.sub(r"<(\w+(\.\w+)*) object>", r"\1", text)


def python_doc(value: Any) -> str:
    """The docstring help() shows (a base class's when the object has none of its own),
    without the signature line nanobind puts first in an extension object's: what is
    left is what its author wrote, empty when nothing."""
    doc = inspect.getdoc(value.fget if isinstance(value, property) and not value.__doc__ else value) or ""
    lines = doc.splitlines()
    name = getattr(value, "__name__", "")
    while lines and (lines[0].startswith("(self") or (name and lines[0].startswith(name + "("))):
        lines = lines[1:]
    return "\n".join(lines).strip()


def render_python() -> str:
    out = [
        "# Python reference",
        "",
        "Generated by `docs/reference/generate.py` (`./dev.sh docs`) from the `xproc` package's",
        "docstrings and signatures; edit those, not this page. `help(xproc.Queue)` shows the",
        "same text. The guide's Python chapter (`docs/guide.md`) shows the package at work and",
        "lists every difference from `multiprocessing`.",
        "",
    ]
    modules: dict[str, list[tuple[str, Any]]] = {}
    for qualified, value in public_objects():
        if inspect.ismodule(value):
            modules[qualified] = []
        else:
            module = next(m for m in sorted(modules, key=len, reverse=True) if qualified.startswith(m + "."))
            modules[module].append((qualified[len(module) + 1:], value))
    out.append("Modules: " + ", ".join(f"[`{m}`](#{m.replace('.', '')})" for m in modules))
    out.append("")
    for module_name, members in modules.items():
        module = sys.modules[module_name]
        out += [f"## {module_name}", ""]
        if module.__doc__:
            out += [inspect.cleandoc(module.__doc__), ""]
        for name, value in members:
            if "." in name:  # a member of the class just written
                owner, member = name.rsplit(".", 1)
                kind = "property" if isinstance(value, property) else "method"
                out += [f"#### `{owner}.{python_signature(member, value)}`" if kind == "method"
                        else f"#### `{owner}.{member}` (property)", ""]
            elif inspect.isclass(value):
                bases = [b.__name__ for b in value.__bases__ if b is not object]
                heading = f"class {name}" if issubclass(value, BaseException) else \
                    f"class {python_signature(name, value)}"
                out += [f"### `{heading}`", ""]
                if bases:
                    out += ["Bases: " + ", ".join(f"`{b}`" for b in bases), ""]
            else:
                out += [f"### `{python_signature(name, value)}`", ""]
            doc = python_doc(value)
            if doc:
                out += [doc, ""]
    text = "\n".join(out).rstrip() + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)


# ---- the pages -----------------------------------------------------------------------------


def pages() -> dict[pathlib.Path, str]:
    return {HERE / "cpp.md": cpp_reference(), HERE / "python.md": render_python()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--audit", action="store_true")
    args = parser.parse_args()
    if args.audit:
        print("\n".join(audit_cpp()))
        return 0
    stale = []
    for path, text in pages().items():
        current = path.read_text() if path.exists() else ""
        if current == text:
            continue
        if args.check:
            stale.append(path)
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                                       str(path.relative_to(ROOT)), "generated", n=1))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("\nstale: " + ", ".join(str(p.relative_to(ROOT)) for p in stale)
              + "; regenerate them with ./dev.sh docs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
