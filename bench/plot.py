"""Draws the rows of a comparison's JSON (bench/run.sh writes build/bench/TOPIC.json) as an
SVG bar chart: one bar per row with a target, the ratio xproc / peer on a log scale, the
target marked, met rows green and missed rows red. Standard library only.

usage: python3 bench/plot.py build/bench/pipe.json docs/img/pipe.svg [--title TEXT]
"""

from __future__ import annotations

import argparse
import html
import json
import math
import re
from pathlib import Path

WIDTH, ROW, LEFT, RIGHT, TOP = 1040, 26, 470, 130, 40


def target_value(target: str) -> tuple[str, float] | None:
    match = re.match(r"\s*(<=|>=)\s*([0-9.]+)", target or "")
    return (match.group(1), float(match.group(2))) if match else None


def charted(rows: list[dict]) -> list[dict]:
    """The rows a chart draws: those with a target and a ratio a log scale can place."""
    return [r for r in rows if target_value(r.get("target", "")) and r.get("ratio", 0) > 0]


def draw(rows: list[dict], title: str) -> str:
    """The SVG of the charted rows; at least one row must be charted."""
    rows = charted(rows)
    values = [r["ratio"] for r in rows] + [target_value(r["target"])[1] for r in rows]
    low = 10 ** math.floor(math.log10(min(values)))
    high = 10 ** math.ceil(math.log10(max(values)))
    span = math.log10(high) - math.log10(low)
    plot = WIDTH - LEFT - RIGHT

    def x(value: float) -> float:
        return LEFT + plot * (math.log10(value) - math.log10(low)) / span

    height = TOP + ROW * len(rows) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="14">{html.escape(title)}</text>']
    decade = low
    while decade <= high * 1.0001:
        out.append(f'<line x1="{x(decade):.1f}" y1="{TOP - 6}" x2="{x(decade):.1f}" y2="{height - 34}" '
                   f'stroke="#ddd"/><text x="{x(decade):.1f}" y="{height - 20}" text-anchor="middle">'
                   f'{decade:g}×</text>')
        decade *= 10
    out.append(f'<line x1="{x(1):.1f}" y1="{TOP - 6}" x2="{x(1):.1f}" y2="{height - 34}" stroke="#888"/>')
    for i, row in enumerate(rows):
        y = TOP + i * ROW
        sense, goal = target_value(row["target"])
        met = row["ratio"] >= goal if sense == ">=" else row["ratio"] <= goal
        label = f'{row["workload"]} ({row["metric"]}) vs {row["peer"]}'
        out.append(f'<text x="{LEFT - 8}" y="{y + 15}" text-anchor="end">{html.escape(label[:72])}</text>')
        start, end = sorted((x(1), x(row["ratio"])))
        out.append(f'<rect x="{start:.1f}" y="{y + 4}" width="{max(end - start, 1):.1f}" height="{ROW - 8}" '
                   f'fill="{"#3a9a4a" if met else "#c0392b"}"/>')
        out.append(f'<line x1="{x(goal):.1f}" y1="{y + 1}" x2="{x(goal):.1f}" y2="{y + ROW - 1}" '
                   f'stroke="black" stroke-width="2"/>')
        out.append(f'<text x="{max(end, x(goal)) + 6:.1f}" y="{y + 15}">{row["ratio"]:.3g}× '
                   f'({html.escape(row["target"])})</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json")
    parser.add_argument("svg")
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    rows = json.loads(Path(args.json).read_text())
    title = args.title or f"{Path(args.json).stem}: xproc / peer (bar), target (black line)"
    Path(args.svg).parent.mkdir(parents=True, exist_ok=True)
    Path(args.svg).write_text(draw(rows, title))


if __name__ == "__main__":
    main()
