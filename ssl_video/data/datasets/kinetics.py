"""Kinetics-400/600/700: annotation CSVs ``label,youtube_id,time_start,time_end,split`` and the videos.

The CSVs are looked up as ``<splits or root>/{train,validate,val,test}.csv`` (also under ``annotations/``).
Videos are found anywhere under the videos directory (``<split>/<label>/`` or flat), named
``<youtube_id>_<start:06d>_<end:06d>.<ext>`` or just ``<youtube_id>.<ext>``. Rows without a file are
reported as missing (a few percent is normal). Classes are the sorted labels of all CSVs.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ssl_video.data.datasets.base import (
    DatasetLayout,
    VideoRecord,
    find_videos,
    given_half,
    location_hint,
    require_dir,
)
from ssl_video.errors import UserError

_CSV_NAMES = {"train": ("train.csv",), "val": ("validate.csv", "val.csv", "valid.csv"), "test": ("test.csv",)}
_REQUIRED = {"label", "youtube_id", "time_start", "time_end"}


def _find_csvs(splits_dir: Path) -> dict[str, Path]:
    found = {}
    for subset, names in _CSV_NAMES.items():
        for base in (splits_dir, splits_dir / "annotations"):
            hits = [base / n for n in names if (base / n).is_file()]
            if hits:
                found[subset] = hits[0]
                break
    return found


def _read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = {h.strip() for h in (reader.fieldnames or [])}
        if not _REQUIRED <= header:
            raise UserError(f"kinetics: {path} must have columns {sorted(_REQUIRED)}, found {sorted(header)}")
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]


def _segment_name(row: dict) -> str:
    return f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"


def load(root: str | None = None, videos: str | None = None, splits: str | None = None,
         names: dict[str, str] | None = None) -> DatasetLayout:
    if root is None and (videos is None or splits is None):
        raise UserError(location_hint("kinetics", names, "CSV files and videos",
                                      given=given_half(videos, splits)))
    videos_dir = require_dir(videos or root, "kinetics videos directory")
    splits_dir = require_dir(splits or root, "kinetics annotation directory")
    csvs = _find_csvs(splits_dir)
    if not csvs:
        raise UserError(f"kinetics: no train.csv/validate.csv/test.csv in {splits_dir} (or its annotations/)")
    rows = {subset: _read_rows(path) for subset, path in csvs.items()}
    classes = sorted({r["label"] for subset in rows.values() for r in subset if r["label"]})
    class_to_idx = {name: i for i, name in enumerate(classes)}
    by_stem: dict[str, str] = {}
    for path in find_videos(videos_dir):
        stem = os.path.splitext(os.path.basename(path))[0]
        by_stem.setdefault(stem, path)
    subsets: dict[str, list[VideoRecord]] = {}
    missing = []
    for subset, subset_rows in rows.items():
        records = []
        for row in subset_rows:
            name = _segment_name(row)
            path = by_stem.get(name) or by_stem.get(row["youtube_id"])
            if path is None:
                label_dir = row["label"] or "unlabeled"
                path = str(Path(videos_dir) / subset / label_dir / f"{name}.mp4")
                missing.append(path)
            records.append(VideoRecord(path=path, label=class_to_idx.get(row["label"], -1), video_id=name,
                                       start=float(row["time_start"]), end=float(row["time_end"])))
        subsets[subset] = records
    return DatasetLayout("kinetics", classes, {"1": subsets}, str(videos_dir), missing=missing)
