"""Markdown summary of every benchmark result in a folder (bench/results/SUMMARY.md)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)


def _tables(obj: Any, prefix: str = "") -> list[tuple[str, list[dict[str, Any]]]]:
    """Every list of flat records inside a result, with a dotted name."""
    out = []
    if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
        out.append((prefix, obj))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(_tables(v, f"{prefix}.{k}" if prefix else k))
    return out


def _markdown(rows: list[dict[str, Any]]) -> str:
    cols = [c for c in rows[0] if all(not isinstance(r.get(c), (list, dict)) for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_summary(folder: Path, quick: bool = False) -> Path:
    folder = Path(folder)
    parts = [f"# Benchmark results{' (quick mode: checks only, numbers not meaningful)' if quick else ''}", ""]
    for f in sorted(folder.glob("*.json")):
        if f.stem.endswith("_quick") != quick:
            continue
        data = json.loads(f.read_text())
        parts.append(f"## {f.stem}")
        for key in ("target", "verdict"):
            if isinstance(data, dict) and data.get(key):
                parts.append(f"_{key}: {data[key]}_")
        for name, rows in _tables(data):
            parts += ["", f"**{name}**", "", _markdown(rows)]
        plots = sorted(p.name for p in folder.glob(f"{f.stem}*.png"))
        parts += [""] + [f"![{p}]({p})" for p in plots] + [""]
    out = folder / ("SUMMARY_quick.md" if quick else "SUMMARY.md")
    out.write_text("\n".join(parts) + "\n")
    return out
