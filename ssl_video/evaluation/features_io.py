"""Read per-video feature sequences and label tables from disk.

Feature layouts (what ``ssl-video extract`` writes):

* one HDF5 file: one dataset per video, keyed by the video name (a name with ``/`` lives in nested
  groups and is read back with its full path), shape ``[num_clips, F]`` float32. Clip start times (s)
  are an attribute ``start_times`` of that dataset, or a sibling dataset ``<name>.times``. Attributes of
  the file itself are returned as metadata.
* a directory of ``<video>.npy`` arrays ``[num_clips, F]`` (searched recursively; the name is the path
  relative to the directory without ``.npy``), start times optionally in ``<video>.times.npy``.

Labels CSV: rows ``video,label[,label...]``. A first row whose first cell is ``video`` is a header; with a
header, a column named ``split`` (values ``train``/``test``) assigns the split, and every other column
after ``video`` holds labels. Empty cells are ignored; labels are strings.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssl_video.errors import UserError

__all__ = ["FeatureSet", "LabelTable", "read_features", "read_labels_csv", "TIMES_SUFFIX"]

TIMES_SUFFIX = ".times"


@dataclass
class FeatureSet:
    """Per-video feature sequences ``[num_clips, F]`` (float32) with optional clip start times."""

    features: dict[str, np.ndarray]
    start_times: dict[str, np.ndarray | None] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return next(iter(self.features.values())).shape[1]

    def __len__(self) -> int:
        return len(self.features)


@dataclass
class LabelTable:
    """``videos[i]`` has labels ``labels[i]`` (strings) and, when the CSV says so, ``splits[i]``."""

    videos: list[str]
    labels: list[list[str]]
    splits: list[str] | None = None

    @property
    def classes(self) -> list[str]:
        return sorted({label for labels in self.labels for label in labels})


def _as_sequence(array: np.ndarray, name: str, source: Path) -> np.ndarray:
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] == 0:
        raise UserError(
            f"{source}: features of '{name}' must be [num_clips, F] with at least one clip, got {array.shape}"
        )
    if not np.isfinite(array).all():
        raise UserError(f"{source}: features of '{name}' contain NaN or infinite values")
    return array


def _read_h5(path: Path) -> FeatureSet:
    import h5py

    features: dict[str, np.ndarray] = {}
    times: dict[str, np.ndarray | None] = {}
    try:
        with h5py.File(path, "r") as f:
            metadata = {k: _plain(v) for k, v in f.attrs.items()}
            datasets: dict[str, object] = {}
            f.visititems(
                lambda name, obj: datasets.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None
            )
            for name, ds in datasets.items():
                if name.endswith(TIMES_SUFFIX) and name[: -len(TIMES_SUFFIX)] in datasets:
                    continue
                features[name] = _as_sequence(ds[()], name, path)
                if "start_times" in ds.attrs:
                    times[name] = np.asarray(ds.attrs["start_times"], dtype=np.float64)
                elif name + TIMES_SUFFIX in datasets:
                    times[name] = np.asarray(datasets[name + TIMES_SUFFIX][()], dtype=np.float64)
                else:
                    times[name] = None
    except OSError as exc:
        raise UserError(f"cannot read features file {path}: {exc}") from None
    return FeatureSet(features, times, metadata)


def _read_npy_dir(path: Path) -> FeatureSet:
    features: dict[str, np.ndarray] = {}
    times: dict[str, np.ndarray | None] = {}
    for file in sorted(path.rglob("*.npy")):
        rel = file.relative_to(path).as_posix()[: -len(".npy")]
        if rel.endswith(TIMES_SUFFIX):
            continue
        try:
            features[rel] = _as_sequence(np.load(file, allow_pickle=False), rel, path)
            times_file = file.with_name(file.name[: -len(".npy")] + TIMES_SUFFIX + ".npy")
            times[rel] = (
                np.load(times_file, allow_pickle=False).astype(np.float64) if times_file.exists() else None
            )
        except ValueError as exc:
            raise UserError(f"cannot read {file}: {exc}") from None
    return FeatureSet(features, times, {})


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def read_features(path: str | Path) -> FeatureSet:
    """Read an HDF5 feature file or a directory of ``.npy`` arrays (see the module notes)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"features not found: {path}")
    if path.is_dir():
        fs = _read_npy_dir(path)
    elif path.suffix.lower() in (".h5", ".hdf5", ".hdf"):
        fs = _read_h5(path)
    else:
        raise UserError(f"features must be an .h5 file or a directory of .npy files, got {path}")
    if not fs.features:
        raise UserError(f"no video features found in {path}")
    dims = {a.shape[1] for a in fs.features.values()}
    if len(dims) != 1:
        raise UserError(f"{path}: videos have different feature sizes {sorted(dims)}")
    for name, t in fs.start_times.items():
        if t is not None and t.shape != (fs.features[name].shape[0],):
            raise UserError(
                f"{path}: '{name}' has {fs.features[name].shape[0]} clips but {t.size} start times"
            )
    return fs


def read_labels_csv(path: str | Path) -> LabelTable:
    """Read ``video,label[,label...]`` (optional header, optional ``split`` column); see the module notes."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"labels CSV not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [[cell.strip() for cell in row] for row in csv.reader(f)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path} is not a readable CSV: {exc}") from None
    numbered = [(i + 1, row) for i, row in enumerate(rows) if any(row)]
    if not numbered:
        raise UserError(f"labels CSV {path} is empty")
    split_col = None
    if numbered[0][1][0].lower() == "video":
        header = [cell.lower() for cell in numbered[0][1]]
        numbered = numbered[1:]
        if "split" in header:
            split_col = header.index("split")
    videos: list[str] = []
    labels: list[list[str]] = []
    splits: list[str] = []
    seen: set[str] = set()
    for line, row in numbered:
        video = row[0]
        if not video:
            raise UserError(f"{path} line {line}: the first column (video) is empty")
        if video in seen:
            raise UserError(f"{path} line {line}: video '{video}' is listed twice")
        seen.add(video)
        row_labels = [cell for j, cell in enumerate(row[1:], start=1) if cell and j != split_col]
        if not row_labels:
            raise UserError(f"{path} line {line}: video '{video}' has no label")
        if split_col is not None:
            split = row[split_col].lower() if split_col < len(row) else ""
            if split not in ("train", "test"):
                raise UserError(f"{path} line {line}: split must be 'train' or 'test', got '{split}'")
            splits.append(split)
        videos.append(video)
        labels.append(row_labels)
    if not videos:
        raise UserError(f"labels CSV {path} has a header but no rows")
    return LabelTable(videos, labels, splits if split_col is not None else None)
