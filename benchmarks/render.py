"""Markdown for benchmark results: one code path for the terminal and docs/benchmarks.md.

No imports beyond the standard library, so ``scripts/make_benchmarks_doc.py`` and its test
stay fast.
"""

from __future__ import annotations

import math


def machine_line(info: dict) -> str:
    """``<cores>-core <cpu>, <memory>, <GPUs>, load <x> at start; <versions>`` in one line."""
    gpus = ", ".join(info.get("gpus") or []) or "no GPU"
    parts = [f"{info.get('cores')}-core {info.get('arch')} CPU ({info.get('cpu')})"]
    if info.get("memory_gib"):
        parts.append(f"{info['memory_gib']} GiB memory")
    parts.append(gpus)
    if info.get("load_average"):
        parts.append(f"load average {info['load_average'][0]:.2f} at start")
    versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
    git = info.get("git")
    if git:
        dirty = ", uncommitted changes" if git["dirty"] else ""
        dirty += ", written with --allow-dirty" if git.get("allow_dirty") else ""
        versions += f" (commit {git['commit']}{dirty})"
    return f"{', '.join(parts)}; {versions}"


def cell(value) -> str:
    """A table cell: floats to 3 significant figures (whole from 100), NaN as n/a, None blank."""
    if isinstance(value, bool) or not isinstance(value, float):
        return "" if value is None else str(value).replace("|", "\\|")
    if math.isnan(value):
        return "n/a"
    return f"{value:.0f}" if abs(value) >= 99.95 else f"{value:#.3g}".rstrip(".")


def markdown_table(table: dict) -> str:
    """``{"title", "columns", "rows"}`` as a Markdown table (numeric columns right-aligned)."""
    cols, rows = table["columns"], table["rows"]
    numeric = [
        all(isinstance(r[i], (int, float)) or r[i] is None for r in rows)
        and not all(r[i] is None for r in rows)
        for i in range(len(cols))
    ]
    lines = [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join("---:" if n else "---" for n in numeric) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def ratios_table(ratios: list[dict]) -> dict:
    """The ratios as a table: name, value, then any other keys they carry."""
    extra = [k for r in ratios for k in r if k not in ("name", "value")]
    extra = list(dict.fromkeys(extra))
    rows = [[r["name"], r["value"], *(r.get(k) for k in extra)] for r in ratios]
    return {"title": "Ratios", "columns": ["ratio", "value", *extra], "rows": rows}
