"""Prints the tables of a benchmark run: one Markdown table per OUT_DIR/TOPIC.json that
bench/run.sh wrote, under the description of the run that produced it (TOPIC.meta.json).
With --docs DIR it also rewrites the current-run section of DIR/benchmarks.md (between its
marker comments) and draws each topic's chart to DIR/img/TOPIC.svg with bench/plot.py; with
--readme FILE, the headline rows (HEADLINES) between FILE's own markers. Standard library
only.

usage: python3 bench/report.py build/bench [--docs docs] [--readme README.md]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import plot  # bench/plot.py: the script's own directory is first on sys.path

TOPIC_ORDER = ("queue", "pipe", "manager", "python", "nats")
TITLES = {"queue": "Queues", "pipe": "Pipes", "manager": "Manager", "python": "Python package",
          "nats": "Past one machine (NATS JetStream)"}
BEGIN, END = "<!-- current-run:begin -->", "<!-- current-run:end -->"
HEADLINE_BEGIN, HEADLINE_END = "<!-- headline:begin -->", "<!-- headline:end -->"

# The rows the README quotes: (topic, workload, peer), each the first row that matches.
HEADLINES = (
    ("queue", "1P->1C 64 B bytes", "iceoryx2 publish-subscribe"),
    ("queue", "1P->1C 64 B bytes", "cached-index SPSC ring"),
    ("queue", "1P->1C 8 MiB written and read in place", "iceoryx2 loan-write-send, receive in place"),
    ("queue", "ping-pong 64 B", "iceoryx2 publish-subscribe"),
    ("queue", "1P->1C 64 B typed struct", "multiprocessing.Queue small dict"),
    ("pipe", "1P->1C 64 B send_bytes", "multiprocessing.Pipe send_bytes"),
    ("manager", "dict set, 4 client processes", "multiprocessing.Manager"),
    ("python", "Queue, small dict, 1 producer -> 1 consumer", "pyzmq PUSH/PULL (ipc)"),
    ("python", "Queue, small dict, 1 producer -> 1 consumer", "faster-fifo"),
    ("python", "Queue ping-pong, small dict", "iceoryx2 publish-subscribe"),
    ("python", "Manager dict set+get, 1 client", "UltraDict"),
    ("python", "Manager dict set+get, 4 client processes", "UltraDict"),
)

# Other spellings under which a peer's name appears in the rows (compared without case or
# punctuation), for the peers whose rows do not carry the name meta.py records.
PEER_ALIASES = {"pyzmq": ("zmq",)}


def load_topics(out_dir: Path) -> dict[str, tuple[list[dict], dict | None]]:
    """topic → (its rows, the description of its run or None), the known topics in their order."""
    paths = [p for p in out_dir.glob("*.json") if not p.name.endswith(".meta.json")]
    order = {topic: i for i, topic in enumerate(TOPIC_ORDER)}
    paths.sort(key=lambda p: (order.get(p.stem, len(order)), p.stem))
    topics = {}
    for path in paths:
        meta_path = path.with_name(path.stem + ".meta.json")
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
        topics[path.stem] = (json.loads(path.read_text()), meta)
    return topics


def number(value: float) -> str:
    """Three significant digits, with k/M/G from 10,000 up: 30.8 M, 53.4 k, 2300, 95.2, 0.671."""
    value = float(f"{value:.3g}")  # rounded first, so that 999,999 becomes 1 M, not 1e+03 k
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if abs(value) >= scale:
            return f"{value / (1e3 if suffix == 'k' else scale):g} {suffix}"
    return f"{value:g}"


def ratio(value: float) -> str:
    return (f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}") + "×"


def target(text: str) -> str:
    return text.replace(">=", "≥").replace("<=", "≤")


def cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("->", "→")


def table(rows: list[dict]) -> list[str]:
    lines = ["| workload | metric | xproc | peer | peer value | ratio | target | met |",
             "|---|---|---:|---|---:|---:|---|---|"]
    for row in rows:
        verdict = ("met" if row["met"] else "**missed**") if row.get("target") else ""
        lines.append("| " + " | ".join([
            cell(row["workload"]), cell(row["metric"]), number(row["xproc"]), cell(row["peer"]),
            number(row["peer_value"]), ratio(row["ratio"]), target(row.get("target", "")), verdict,
        ]) + " |")
    return lines


def squeezed(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def peers_in_rows(topic: str, rows: list[dict], meta: dict) -> dict[str, str]:
    """The recorded peers whose names appear in the topic's rows: a topic lists only its own.
    The python topic's peers are Python packages; the others' are native programs (meta.py
    keeps the two apart because iceoryx2 is both)."""
    recorded = meta.get("python_peers" if topic == "python" else "peers", {})
    named = " ".join(squeezed(row["peer"]) for row in rows)
    return {name: version for name, version in recorded.items()
            if any(squeezed(alias) in named for alias in (name, *PEER_ALIASES.get(name, ())))}


def machine_text(machine: dict) -> str:
    text = f'{machine.get("cpu", "?")}, {machine.get("cores", "?")} cores'
    if machine.get("virtual_machine"):
        text += " (virtual machine)"
    if "memory_gib" in machine:
        text += f', {machine["memory_gib"]} GiB'
    text += f', Linux {machine.get("kernel", "?")}'
    return text + (f', {machine["os"]}' if "os" in machine else "")


def build_text(topic: str, meta: dict) -> str:
    # The python topic runs xproc itself on Python, so its version leads that topic's line.
    runtime = f'Python {meta.get("python", "?")}' if topic == "python" else None
    capnp = meta.get("capnproto") and f'Cap\'n Proto {meta["capnproto"]}'
    return ", ".join(filter(None, [runtime, meta.get("compiler"), meta.get("build_type"), capnp]))


def peers_text(topic: str, rows: list[dict], meta: dict) -> str:
    names = []
    for name, version in peers_in_rows(topic, rows, meta).items():
        if name != "multiprocessing":
            names.append(f"{name} {version}")
        elif topic == "python":  # its version is Python's, which this topic's line gives already
            names.append("multiprocessing")
        else:
            names.append(f"Python {version} (multiprocessing)")
    return ", ".join(names)


def run_line(topic: str, rows: list[dict], meta: dict | None) -> str:
    """Date · commit · machine · compiler · flags · peers' versions, as one line."""
    if meta is None:
        return (f"Run not described: no {topic}.meta.json beside {topic}.json "
                "(a run from before bench/meta.py).")
    flags = meta.get("python_flags" if topic == "python" else "flags")
    peers = peers_text(topic, rows, meta)
    parts = [meta.get("date", "?")[:10], f'commit {meta.get("commit", "?")}',
             machine_text(meta.get("machine", {})), build_text(topic, meta),
             flags and f"flags `{flags}`", peers and f"peers: {peers}"]
    return " · ".join(filter(None, parts))


def tally(rows: list[dict]) -> str:
    targeted = [row for row in rows if row.get("target")]
    met = sum(1 for row in targeted if row["met"])
    return f"Targets met: {met} of {len(targeted)}." if targeted else "No row has a target."


def topic_section(topic: str, rows: list[dict], meta: dict | None, chart: str | None = None) -> list[str]:
    lines = [f"## {TITLES.get(topic, topic)} (`{topic}`)", "", run_line(topic, rows, meta), "",
             tally(rows), "", *table(rows)]
    if chart:
        lines += ["", f"![{topic}: xproc / peer for each row with a target]({chart})"]
    return lines + [""]


def chart_title(topic: str, meta: dict | None) -> str:
    when = f' — {meta.get("date", "?")[:10]}, commit {meta.get("commit", "?")}' if meta else ""
    return f"{topic}{when}: xproc / peer (bar), target (black line)"


def write_chart(topic: str, rows: list[dict], meta: dict | None, docs: Path) -> str | None:
    """Draws the topic's targeted rows to docs/img/TOPIC.svg; its link, or None when no row
    has a target."""
    if not plot.charted(rows):
        return None
    path = docs / "img" / f"{topic}.svg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(plot.draw(rows, chart_title(topic, meta)))
    return f"img/{topic}.svg"


def marker_bounds(page: Path, text: str, begin: str = BEGIN, end_marker: str = END) -> tuple[int, int]:
    """Where the section between `begin` and `end_marker` starts and ends in the page's text."""
    start, end = text.find(begin), text.find(end_marker)
    if start < 0 or end < start:
        sys.exit(f"{page}: no {begin} … {end_marker} markers to write between")
    return start + len(begin), end


def refresh_docs(docs: Path, topics: dict[str, tuple[list[dict], dict | None]]) -> None:
    """Rewrites docs/benchmarks.md between its markers and the charts it links to."""
    page = docs / "benchmarks.md"
    text = page.read_text()
    start, end = marker_bounds(page, text)  # before any chart is written
    section = []
    for topic, (rows, meta) in topics.items():
        section += topic_section(topic, rows, meta, write_chart(topic, rows, meta, docs))
    body = "\n".join(section).strip("\n")
    page.write_text(text[:start] + "\n\n" + body + "\n\n" + text[end:])
    missing = [topic for topic in TOPIC_ORDER if topic not in topics]
    if missing:
        print(f"\n{page}: no {', '.join(missing)} run to show", file=sys.stderr)


def headline_rows(topics: dict[str, tuple[list[dict], dict | None]]) -> list[tuple[str, dict, dict | None]]:
    """The HEADLINES rows this run has, each with its topic and its run's description."""
    found = []
    for topic, workload, peer in HEADLINES:
        rows, meta = topics.get(topic, ([], None))
        match = next((r for r in rows if r["workload"] == workload and r["peer"] == peer), None)
        if match is None:
            print(f"headline row not in this run: {topic} / {workload} / {peer}", file=sys.stderr)
        else:
            found.append((topic, match, meta))
    return found


def refresh_readme(readme: Path, topics: dict[str, tuple[list[dict], dict | None]]) -> None:
    """Rewrites the README's headline table between its markers: each row's figure, its
    peer's, the ratio and the target, with the run's date and commit."""
    text = readme.read_text()
    start, end = marker_bounds(readme, text, HEADLINE_BEGIN, HEADLINE_END)
    lines = ["| topic | workload | xproc | peer | ratio | target |", "|---|---|---:|---|---:|---|"]
    runs = set()
    for topic, row, meta in headline_rows(topics):
        runs.add(f'{meta.get("date", "?")[:10]}, commit {meta.get("commit", "?")}' if meta else "undescribed run")
        verdict = "" if row["met"] else " (missed)"
        lines.append("| " + " | ".join([
            TITLES.get(topic, topic), cell(row["workload"]), f'{number(row["xproc"])} {cell(row["metric"])}',
            f'{cell(row["peer"])} ({number(row["peer_value"])})', ratio(row["ratio"]),
            target(row.get("target", "")) + verdict]) + " |")
    lines += ["", f"Measured in one run ({'; '.join(sorted(runs))}); every topic's table, its chart and the "
              "method: [docs/benchmarks.md](docs/benchmarks.md)."]
    readme.write_text(text[:start] + "\n" + "\n".join(lines) + "\n" + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="where bench/run.sh wrote TOPIC.json")
    parser.add_argument("--docs", type=Path, metavar="DIR",
                        help="also rewrite DIR/benchmarks.md's current run and DIR/img/TOPIC.svg")
    parser.add_argument("--readme", type=Path, metavar="FILE",
                        help="also rewrite FILE's headline rows (between its headline markers)")
    args = parser.parse_args()
    topics = load_topics(args.out_dir)
    if not topics:
        sys.exit(f"no TOPIC.json in {args.out_dir}: run ./dev.sh bench first")
    printed = []
    for topic, (rows, meta) in topics.items():
        printed += topic_section(topic, rows, meta)
    print("\n".join(printed).rstrip("\n"))
    if args.docs:
        refresh_docs(args.docs, topics)
    if args.readme:
        refresh_readme(args.readme, topics)


if __name__ == "__main__":
    main()
