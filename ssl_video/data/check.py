"""``ssl-video data check``: open every video of a dataset once (in parallel) and report what is usable."""

from __future__ import annotations

import os
import statistics
from concurrent.futures import ThreadPoolExecutor

from ssl_video.console import track
from ssl_video.data.datasets import CHECK_FLAGS, load_layout
from ssl_video.data.media import MediaError, probe

__all__ = ["check_dataset", "format_check"]


def _probe(path: str):
    try:
        return path, probe(path, decode=True), None
    except MediaError as exc:
        return path, None, exc.reason


def _stats(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"min": min(values), "mean": statistics.fmean(values), "median": statistics.median(values),
            "max": max(values)}


def check_dataset(name: str, root: str | None = None, videos: str | None = None, splits: str | None = None,
                  workers: int | None = None, progress: bool = True) -> dict:
    """Parse the dataset, probe every listed file that exists, and summarise (see the CLI help)."""
    layout = load_layout(name, root=root, videos=videos, splits=splits, names=CHECK_FLAGS)
    listed = layout.listed()
    missing_set = set(layout.missing)
    missing = sorted(missing_set)
    present = [r.path for r in listed if r.path not in missing_set]
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    results = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(track(pool.map(_probe, present), total=len(present), desc="checking videos", unit="video",
                             enabled=progress))
    infos = [info for _, info, _ in results if info is not None]
    unreadable = [{"path": path, "reason": reason} for path, info, reason in results if info is None]
    per_split = {
        split: {subset: len(records) for subset, records in subsets.items()}
        for split, subsets in layout.splits.items()
    }
    return {
        "dataset": name,
        "videos_dir": layout.videos_dir,
        "classes": len(layout.classes),
        "splits": per_split,
        "videos_listed": len(listed),
        "videos_found": len(present),
        "videos_readable": len(infos),
        "missing": missing,
        "unreadable": [u["path"] for u in unreadable],
        "unreadable_reasons": unreadable,
        "no_audio": sorted(info.path for info in infos if not info.has_audio),
        "duration_s": _stats([info.duration for info in infos]),
        "fps": _stats([info.fps for info in infos]),
        "resolution": _resolutions(infos),
        "usable": len(infos) > 0,
    }


def _resolutions(infos) -> dict[str, int]:
    counts: dict[str, int] = {}
    for info in infos:
        key = f"{info.width}x{info.height}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:5])


def format_check(report: dict, max_names: int = 10) -> str:
    """The human-readable table printed by ``ssl-video data check``."""
    lines = [f"dataset {report['dataset']}  ({report['videos_dir']})", ""]
    rows = [("classes", report["classes"]), ("videos listed", report["videos_listed"]),
            ("videos found", report["videos_found"]), ("videos readable", report["videos_readable"]),
            ("missing files", len(report["missing"])), ("unreadable files", len(report["unreadable"])),
            ("videos without audio", len(report["no_audio"]))]
    width = max(len(k) for k, _ in rows)
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    lines.append("")
    lines.append("  split  " + "  ".join(f"{s:>8}" for s in _subset_names(report)))
    for split, subsets in report["splits"].items():
        lines.append(f"  {split:<5}  " + "  ".join(f"{subsets.get(s, 0):>8}" for s in _subset_names(report)))
    for key, label, unit in (("duration_s", "duration", "s"), ("fps", "fps", "")):
        s = report[key]
        if s:
            lines.append(f"  {label}: min {s['min']:.2f}{unit}  median {s['median']:.2f}{unit}  "
                         f"mean {s['mean']:.2f}{unit}  max {s['max']:.2f}{unit}")
    if report["resolution"]:
        lines.append("  sizes: " + ", ".join(f"{k} ({v})" for k, v in report["resolution"].items()))
    for key, label in (("missing", "missing"), ("unreadable_reasons", "unreadable")):
        items = report[key]
        if items:
            lines.append(f"\n  {label} ({len(items)}):")
            for item in items[:max_names]:
                lines.append(f"    {item['path']}: {item['reason']}" if isinstance(item, dict) else f"    {item}")
            if len(items) > max_names:
                lines.append(f"    ... and {len(items) - max_names} more (--json lists all)")
    lines.append("")
    lines.append("usable: yes" if report["usable"] else "usable: NO (no readable video)")
    return "\n".join(lines)


def _subset_names(report: dict) -> list[str]:
    names: list[str] = []
    for subsets in report["splits"].values():
        names += [s for s in subsets if s not in names]
    return names
