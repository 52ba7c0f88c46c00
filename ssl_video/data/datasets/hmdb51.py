"""HMDB51: ``hmdb51_org/<class>/<video>.avi`` + ``testTrainMulti_7030_splits/<class>_test_split<k>.txt``.

Split lines are ``<video file name> <id>`` with id 1 = train, 2 = test, 0 = unused. Video names contain
spaces and ``#!&()'``: a line is split on its LAST run of whitespace, and paths are joined, never globbed.
Classes are the sorted class names found in the split files.
"""

from __future__ import annotations

import re
from pathlib import Path

from ssl_video.data.datasets.base import (
    DatasetLayout,
    VideoRecord,
    mark_missing,
    official_dirs,
    read_list_file,
)
from ssl_video.errors import UserError

_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<k>\d+)\.txt$")
_SUBSETS = {"1": "train", "2": "test"}


def load(root: str | None = None, videos: str | None = None, splits: str | None = None,
         names: dict[str, str] | None = None) -> DatasetLayout:
    videos_dir, splits_dir = official_dirs("hmdb51", root, videos, splits,
                                           ("hmdb51_org", "testTrainMulti_7030_splits"), names)
    files: dict[str, dict[str, Path]] = {}
    for path in sorted(splits_dir.iterdir()):
        match = _SPLIT_FILE.match(path.name)
        if match:
            files.setdefault(match["k"], {})[match["cls"]] = path
    if not files:
        raise UserError(f"hmdb51: no <class>_test_split<k>.txt files in {splits_dir}")
    classes = sorted({cls for per_split in files.values() for cls in per_split})
    class_to_idx = {name: i for i, name in enumerate(classes)}
    layout_splits: dict[str, dict[str, list[VideoRecord]]] = {}
    for k in sorted(files):
        subsets: dict[str, list[VideoRecord]] = {"train": [], "test": []}
        for cls, path in sorted(files[k].items()):
            for line in read_list_file(path):
                parts = line.rsplit(None, 1)
                if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                    raise UserError(f"hmdb51: bad line in {path.name}: {line!r}")
                name, code = parts
                if code == "0":
                    continue
                rel = f"{cls}/{name}"
                subsets[_SUBSETS[code]].append(
                    VideoRecord(path=str(videos_dir / cls / name), label=class_to_idx[cls], video_id=rel))
        layout_splits[k] = subsets
    return mark_missing(DatasetLayout("hmdb51", classes, layout_splits, str(videos_dir)))
