"""What every dataset format produces: a :class:`DatasetLayout` of :class:`VideoRecord` per split.

Formats only parse their files (split lists, CSVs, folder trees); decoding and sampling are shared
by :class:`ssl_video.data.datasets.clips.ClipDataset`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ssl_video.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".ogv", ".3gp")

__all__ = ["VideoRecord", "DatasetLayout", "read_list_file", "find_videos", "require_dir", "VIDEO_EXTENSIONS",
           "RECIPE_NAMES", "CHECK_FLAGS", "EVAL_FLAGS", "location_hint", "given_half", "official_dirs"]

# how each caller names a dataset's three locations (root, or videos + splits) in its hints
RECIPE_NAMES = {"root": "data.root=DIR", "videos": "data.videos=DIR", "splits": "data.splits=DIR"}
CHECK_FLAGS = {"root": "--root DIR", "videos": "--videos DIR", "splits": "--split-dir DIR"}
EVAL_FLAGS = {"root": "--root DIR", "videos": "--videos DIR", "splits": "--split-dir DIR"}


def location_hint(dataset: str, names: dict[str, str] | None, holding: str, splits: bool = True,
                  given: str | None = None) -> str:
    """``"<dataset>: give --root DIR (holding ...) or --videos DIR and --split-dir DIR"`` in the caller's words;
    ``given`` ("videos" or "splits") names the one of the pair the caller gave without the other."""
    n = {**RECIPE_NAMES, **(names or {})}
    alternative = f"{n['videos']} and {n['splits']}" if splits else n["videos"]
    if given in ("videos", "splits") and splits:
        missing = "splits" if given == "videos" else "videos"
        return (f"{dataset}: {n[given].split()[0]} was given without {n[missing].split()[0]}: give both "
                f"({alternative}), or {n['root']} ({holding})")
    return f"{dataset}: no location given: give {n['root']} ({holding}) or {alternative}"


def given_half(videos: str | None, splits: str | None) -> str | None:
    """Which of the (videos, splits) pair was given alone, if one was."""
    return "videos" if videos is not None else "splits" if splits is not None else None


@dataclass(frozen=True)
class VideoRecord:
    path: str  # absolute or root-relative path to the file
    label: int  # class index (0-based); -1 when unlabeled
    video_id: str  # stable name, e.g. "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"
    start: float | None = None  # trimmed datasets (Kinetics CSV): segment bounds, informational
    end: float | None = None


@dataclass
class DatasetLayout:
    """Parsed dataset: class names and, per split name, per subset name, the records it lists."""

    name: str
    classes: list[str]
    splits: dict[str, dict[str, list[VideoRecord]]]
    videos_dir: str
    missing: list[str] = field(default_factory=list)  # listed by a split file, not on disk
    # one list of every video (the folder format): any split and subset name selects all of it
    unsplit: bool = False

    def records(self, split: str | int | None = None, subset: str | None = None) -> list[VideoRecord]:
        """Records of one split's subset (missing files excluded). ``split=None``: the first split;
        ``subset=None``: all subsets of that split."""
        if self.unsplit:
            split, subset = None, None
        key = str(split) if split is not None else next(iter(self.splits))
        if key not in self.splits:
            raise UserError(f"{self.name}: no split '{key}' (available: {', '.join(self.splits)})")
        subsets = self.splits[key]
        if subset is None:
            names = list(subsets)
        elif subset not in subsets:
            raise UserError(f"{self.name}: split {key} has no subset '{subset}' (available: {', '.join(subsets)})")
        else:
            names = [subset]
        missing = set(self.missing)
        return [r for name in names for r in subsets[name] if r.path not in missing]

    def listed(self) -> list[VideoRecord]:
        """Distinct videos named by any split (missing ones included), in first-seen order."""
        seen: dict[str, VideoRecord] = {}
        for subsets in self.splits.values():
            for recs in subsets.values():
                for r in recs:
                    seen.setdefault(r.path, r)
        return list(seen.values())


def read_list_file(path: str | Path) -> list[str]:
    """Non-empty lines of a split file, tolerant of CRLF endings, a BOM and trailing blanks."""
    text = Path(path).read_text(encoding="utf-8-sig", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip()]


def official_dirs(dataset: str, root: str | None, videos: str | None, splits: str | None,
                  layout: tuple[str, str], names: dict[str, str] | None = None) -> tuple[Path, Path]:
    """The videos and split directories: given explicitly, or ``layout``'s two folders under ``root``."""
    if root is None and (videos is None or splits is None):
        raise UserError(location_hint(dataset, names, f"holding {layout[0]}/ and {layout[1]}/",
                                      given=given_half(videos, splits)))
    return (require_dir(videos or Path(root) / layout[0], f"{dataset} videos directory"),
            require_dir(splits or Path(root) / layout[1], f"{dataset} split directory"))


def require_dir(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UserError(f"{what} not found: {path}")
    return path


def find_videos(root: str | Path) -> list[str]:
    """Every video file under ``root`` (sorted, walked without shell globbing: any file name works)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(VIDEO_EXTENSIONS) and not name.startswith("."):
                found.append(os.path.join(dirpath, name))
    return found


def mark_missing(layout: DatasetLayout) -> DatasetLayout:
    """Fill ``layout.missing`` with listed paths that are not files."""
    layout.missing = [r.path for r in layout.listed() if not os.path.isfile(r.path)]
    return layout
