"""UCF101: ``UCF-101/<Class>/v_<Class>_gXX_cYY.avi`` + ``ucfTrainTestlist/`` (classInd, train/testlist0k).

Labels come from the class folder named in the split file, mapped through ``classInd.txt``, never
from the file name: the class ``HandstandPushups`` has files named ``v_HandStandPushups_...``.
``trainlist`` lines carry a 1-based label that must agree with the folder; ``testlist`` lines have none.
"""

from __future__ import annotations

import os
from pathlib import Path

from ssl_video.data.datasets.base import (
    DatasetLayout,
    VideoRecord,
    mark_missing,
    official_dirs,
    read_list_file,
)
from ssl_video.errors import UserError

SPLITS = ("1", "2", "3")


def resolve_dirs(root: str | None, videos: str | None, splits: str | None, names: dict[str, str] | None = None,
                 dataset: str = "ucf101") -> tuple[Path, Path]:
    return official_dirs(dataset, root, videos, splits, ("UCF-101", "ucfTrainTestlist"), names)


def read_class_index(splits_dir: Path) -> list[str]:
    path = splits_dir / "classInd.txt"
    if not path.is_file():
        raise UserError(f"ucf101: split file missing: {path}")
    numbered = []
    for line in read_list_file(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise UserError(f"ucf101: bad line in {path}: {line!r}")
        numbered.append((int(parts[0]), parts[1]))
    numbered.sort()
    if [n for n, _ in numbered] != list(range(1, len(numbered) + 1)):
        raise UserError(f"ucf101: {path} must number classes 1..N")
    return [name for _, name in numbered]


def _locate(videos_dir: Path, rel: str) -> str:
    """Path of a listed video; tolerates a case difference in the file name (seen in re-packaged copies)."""
    path = videos_dir / rel
    if path.is_file():
        return str(path)
    folder = path.parent
    if folder.is_dir():
        lower = path.name.lower()
        for name in os.listdir(folder):
            if name.lower() == lower:
                return str(folder / name)
    return str(path)


def parse_split_file(path: Path, videos_dir: Path, class_to_idx: dict[str, int], with_labels: bool) -> list[VideoRecord]:
    records = []
    for line in read_list_file(path):
        parts = line.split()
        rel = parts[0].replace("\\", "/")
        folder = rel.split("/")[0]
        if folder not in class_to_idx:
            raise UserError(f"ucf101: {path.name} names unknown class folder {folder!r}: {line!r}")
        label = class_to_idx[folder]
        if with_labels and len(parts) > 1 and int(parts[1]) - 1 != label:
            raise UserError(f"ucf101: {path.name}: label {parts[1]} disagrees with class folder {folder!r}")
        records.append(VideoRecord(path=_locate(videos_dir, rel), label=label, video_id=rel))
    return records


def load(root: str | None = None, videos: str | None = None, splits: str | None = None,
         names: dict[str, str] | None = None, dataset: str = "ucf101") -> DatasetLayout:
    videos_dir, splits_dir = resolve_dirs(root, videos, splits, names, dataset)
    classes = read_class_index(splits_dir)
    class_to_idx = {name: i for i, name in enumerate(classes)}
    layout_splits = {}
    for k in SPLITS:
        train, test = splits_dir / f"trainlist0{k}.txt", splits_dir / f"testlist0{k}.txt"
        if not train.is_file() and not test.is_file():
            continue
        for f in (train, test):
            if not f.is_file():
                raise UserError(f"ucf101: split file missing: {f}")
        layout_splits[k] = {
            "train": parse_split_file(train, videos_dir, class_to_idx, with_labels=True),
            "test": parse_split_file(test, videos_dir, class_to_idx, with_labels=False),
        }
    if not layout_splits:
        raise UserError(f"ucf101: no trainlist0k.txt/testlist0k.txt in {splits_dir}")
    return mark_missing(DatasetLayout("ucf101", classes, layout_splits, str(videos_dir)))
