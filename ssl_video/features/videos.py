"""Long videos to extract features from: their names (keys), listing, and shards.

A video's key is its path relative to the videos directory without the extension
(:func:`~ssl_video.data.datasets.tsp.video_key`). Shard ``i`` (0-based) of ``n`` takes videos ``i, i+n, i+2n ...``
of the sorted list, so the shards' union is the unsharded list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ssl_video.data.datasets.tsp import video_key
from ssl_video.errors import UserError

__all__ = ["VideoItem", "list_videos", "parse_shard", "shard_videos", "shard_path"]


@dataclass(frozen=True)
class VideoItem:
    key: str  # stored name
    path: str


def list_videos(videos: str | None = None, list_file: str | None = None) -> list[VideoItem]:
    """Videos under ``videos`` (recursively), or those named by ``list_file`` (one path per line, relative to
    ``videos`` when given); sorted by key. Keys must be unique."""
    from ssl_video.data.datasets.base import find_videos, read_list_file, require_dir

    if videos is None and list_file is None:
        raise UserError("give --videos DIR or --list FILE")
    root = require_dir(videos, "videos directory") if videos is not None else None
    if list_file is None:
        items = [VideoItem(video_key(os.path.relpath(p, root)), p) for p in find_videos(root)]
    else:
        if not Path(list_file).is_file():
            raise UserError(f"video list not found: {list_file}")
        items = []
        for line in read_list_file(list_file):
            path = os.path.join(root, line) if root is not None and not os.path.isabs(line) else line
            key = video_key(line if root is not None and not os.path.isabs(line) else os.path.basename(line))
            items.append(VideoItem(key, path))
    keys: dict[str, str] = {}
    for item in items:
        if item.key in keys:
            raise UserError(f"two videos share the name '{item.key}': {keys[item.key]} and {item.path}")
        keys[item.key] = item.path
    if not items:
        raise UserError(f"no videos found in {list_file or videos}")
    return sorted(items, key=lambda v: v.key)


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``; ``None`` -> ``(0, 1)``."""
    if text is None:
        return 0, 1
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise UserError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise UserError(f"--shard {text}: need 0 <= i < n (shards are numbered from 0)")
    return i, n


def shard_videos(items: list[VideoItem], shard: tuple[int, int]) -> list[VideoItem]:
    i, n = shard
    return items[i::n]


def shard_path(out: Path, shard: tuple[int, int]) -> Path:
    """The HDF5 file of a shard (``out`` itself when unsharded)."""
    i, n = shard
    return out if n == 1 else out.with_name(f"{out.stem}.shard-{i}-of-{n}{out.suffix}")
