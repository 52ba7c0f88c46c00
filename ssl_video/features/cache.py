"""The dataset feature cache: one entry per (encoder weights, file list, clip protocol).

An entry is ``<key>.npz`` (video-level features, the paths, the ok mask, the skipped files) next to
``<key>.clips.npy`` (every clip feature, float16, memory-mapped on a hit, so protocols that only need
video-level features never read it). The clip file is written first, then the ``.npz``, each atomically:
an ``.npz`` that exists marks a complete entry. A damaged or incomplete entry is a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ssl_video.files import write_atomic

__all__ = ["FeatureTable", "default_cache_dir", "cache_path", "save_table", "load_table"]

FORMAT = 2


@dataclass
class FeatureTable:
    """Video-level features of a dataset: row ``i`` belongs to ``paths[i]`` when ``ok[i]``."""

    paths: list[str]
    mean: np.ndarray  # V x D, mean of clip features
    mean_l2: np.ndarray  # V x D, mean of L2-normalised clip features
    ok: np.ndarray  # V bools: decoded (False: missing or unreadable, see skipped)
    skipped: dict[str, str]  # path -> reason
    clips: np.ndarray  # V x N x D float16, every clip feature in time order (memory-mapped on a cache hit)
    cache_hit: bool = False
    seconds: float = 0.0
    clips_decoded: int = 0

    def __post_init__(self):
        self._index = {p: i for i, p in enumerate(self.paths)}

    def rows(self, paths: list[str]) -> np.ndarray:
        """Row numbers of ``paths``."""
        return np.array([self._index[p] for p in paths], dtype=np.int64)


def default_cache_dir() -> Path:
    root = os.environ.get("SSL_VIDEO_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "ssl_video")
    return Path(root).expanduser() / "features"


def _file_list_key(paths: list[str]) -> list:
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append([p, st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([p, None, None])
    return out


def cache_path(weights_hash: str, paths: list[str], protocol, cache_dir: str | Path | None = None) -> Path:
    """The entry of these encoder weights, files (with sizes and modification times) and clip protocol."""
    key_data = {"weights": weights_hash, "files": _file_list_key(paths), "protocol": asdict(protocol),
                "format": FORMAT}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:32]
    return Path(cache_dir or default_cache_dir()) / f"{key}.npz"


def _clips_path(path: Path) -> Path:
    return path.with_name(path.name[: -len(".npz")] + ".clips.npy")


def save_table(path: Path, table: FeatureTable, meta: dict) -> None:
    """Clip features first, then the ``.npz`` (its presence marks a complete entry); each written atomically."""
    write_atomic(_clips_path(path), lambda tmp: np.save(tmp, table.clips))
    write_atomic(path, lambda tmp: np.savez(
        tmp, mean=table.mean, mean_l2=table.mean_l2, ok=table.ok,
        paths=np.array(table.paths, dtype=object).astype(str),
        meta=np.array(json.dumps({**meta, "skipped": table.skipped}))))


def load_table(path: Path) -> FeatureTable | None:
    """The entry at ``path`` (clip features memory-mapped), or ``None`` when it is damaged or incomplete."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            table = FeatureTable(paths=[str(p) for p in data["paths"]], mean=data["mean"], mean_l2=data["mean_l2"],
                                 ok=data["ok"], skipped=meta.get("skipped", {}),
                                 clips=np.load(_clips_path(path), mmap_mode="r", allow_pickle=False), cache_hit=True)
    except (OSError, ValueError, KeyError):
        return None  # damaged or incomplete cache entry: extract again
    return table if table.clips.shape[:1] == table.mean.shape[:1] else None
