"""Write an evaluation report: ``report.json``, ``report.md`` and PNG bar charts.

Every protocol hands :func:`write_report` the same two things: a ``report`` dict (protocol settings,
inputs, anything worth keeping; it must be JSON-serialisable after numpy scalars are converted) and a
``table`` (a list of rows, each a dict from column name to value). The Markdown file shows the title,
the settings and the table; one bar chart is drawn per requested numeric column.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["write_report", "markdown_table", "bar_chart", "to_jsonable", "format_value"]


def to_jsonable(value):
    """Recursively convert numpy scalars/arrays, paths and tuples into JSON-friendly values."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_value(value) -> str:
    """How a cell is written in Markdown: floats with 4 decimals, large ints with thousands separators."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if not math.isfinite(value):
            return "-"
        return f"{value:.3g}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    return str(value).replace("|", "\\|")


def _columns(table: Sequence[Mapping], columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        return list(columns)
    out: list[str] = []
    for row in table:
        out.extend(k for k in row if k not in out)
    return out


def markdown_table(table: Sequence[Mapping], columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table of ``table`` (missing cells show as ``-``)."""
    cols = _columns(table, columns)
    if not cols:
        return ""
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in table:
        lines.append("| " + " | ".join(format_value(row.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def bar_chart(
    path: str | Path,
    labels: Sequence[str],
    values: Sequence[float],
    ylabel: str,
    title: str = "",
) -> Path:
    """Save a bar chart (matplotlib, Agg backend) with the value written on each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    values = [float("nan") if v is None else float(v) for v in values]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(labels) + 1.5), 3.5))
    bars = ax.bar(range(len(labels)), values, color="#4c72b0")
    ax.set_xticks(range(len(labels)), [str(label) for label in labels], rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    for bar, value in zip(bars, values):
        if math.isfinite(value):
            ax.annotate(
                f"{value:.3g}",
                (bar.get_x() + bar.get_width() / 2, value),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    ax.margins(y=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(
    out_dir: str | Path,
    report: Mapping,
    table: Sequence[Mapping],
    *,
    title: str,
    columns: Sequence[str] | None = None,
    label_column: str | None = None,
    plot_columns: Sequence[str] = (),
    notes: Sequence[str] = (),
    stem: str = "report",
) -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>_<column>.png`` per entry of ``plot_columns``.

    ``label_column`` names the column used for the bar labels (default: the first column). ``notes``
    are Markdown paragraphs written under the title (protocol details). Returns the written paths by kind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = _columns(table, columns)
    label_column = label_column or (cols[0] if cols else None)
    written: dict[str, Path] = {}

    payload = dict(to_jsonable(report))
    payload["table"] = to_jsonable([dict(row) for row in table])
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    written["json"] = json_path

    for column in plot_columns:
        values = [row.get(column) for row in table]
        if not any(isinstance(v, (int, float, np.number)) for v in values):
            continue
        labels = [str(row.get(label_column, i)) for i, row in enumerate(table)]
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in column)
        written[f"plot:{column}"] = bar_chart(
            out / f"{stem}_{safe}.png", labels, values, ylabel=column, title=title
        )

    md = [f"# {title}", ""]
    for note in notes:
        md += [note, ""]
    settings = {k: v for k, v in payload.items() if k != "table" and not isinstance(v, (dict, list))}
    if settings:
        md += ["| setting | value |", "|---|---|"]
        md += [f"| {k} | {format_value(v)} |" for k, v in settings.items()]
        md.append("")
    if table:
        md += [markdown_table(table, cols), ""]
    for key, path in written.items():
        if key.startswith("plot:"):
            md += [f"![{key[5:]}]({path.name})", ""]
    md_path = out / f"{stem}.md"
    md_path.write_text("\n".join(md))
    written["markdown"] = md_path
    return written
