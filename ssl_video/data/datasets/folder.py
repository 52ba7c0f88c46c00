"""Any tree of videos, unlabeled: the self-supervised pretraining format. Every video under the root.

There are no splits: whatever ``data.split`` and ``data.subset`` say (``"1"``/``"train"`` by default, or
``all``), the dataset is every video under the root.
"""

from __future__ import annotations

import os

from ssl_video.data.datasets.base import DatasetLayout, VideoRecord, find_videos, location_hint, require_dir
from ssl_video.errors import UserError


def load(root: str | None = None, videos: str | None = None, splits: str | None = None,
         names: dict[str, str] | None = None) -> DatasetLayout:
    if root is None and videos is None:
        raise UserError(location_hint("folder", names, "any tree of video files", splits=False))
    videos_dir = require_dir(videos or root, "folder dataset directory")
    records = [VideoRecord(path=p, label=-1, video_id=os.path.relpath(p, videos_dir)) for p in find_videos(videos_dir)]
    return DatasetLayout("folder", [], {"all": {"all": records}}, str(videos_dir), unsplit=True)
