"""Global video features (TSP): the max over time of each video's clip features, one ``[F]`` vector per
video keyed by name, in one HDF5 file (:mod:`ssl_video.features.files` layout, one clip per video)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ssl_video.errors import UserError
from ssl_video.features.protocol import ClipProtocol
from ssl_video.features.videos import VideoItem

__all__ = ["compute_gvf", "read_gvf"]


def compute_gvf(encoder, videos: list[VideoItem], out: str | Path, *, protocol: ClipProtocol, stride: int = 16,
                device: str = "auto", batch_size: int = 32, workers: int = 2, progress: bool = True) -> dict:
    """Write the global video features of ``videos`` to ``out`` (atomically); returns a summary.

    ``encoder`` is a :class:`~ssl_video.models.io.ResolvedEncoder`."""
    from ssl_video.data.bad_files import BadFiles
    from ssl_video.features.files import signature, write_h5
    from ssl_video.features.sliding import iter_clip_features

    out = Path(out)
    vectors: dict[str, np.ndarray] = {}
    bad = BadFiles()
    for key, features, _ in iter_clip_features(encoder.model, videos, protocol, stride / protocol.fps, bad,
                                               device=device, batch_size=batch_size, workers=workers,
                                               progress=progress, desc="global video features"):
        vectors[key] = features.max(axis=0)
    if not vectors:
        raise UserError("no video could be decoded: nothing written")
    attrs = {**signature(encoder, protocol, stride), "encoder": json.dumps(encoder.provenance, default=str),
             "pooling": "max over clips"}
    write_h5(out, sorted(vectors), lambda k: (vectors[k], None), attrs)
    return {"out": str(out), "videos": len(videos), "written": len(vectors), "skipped": len(bad),
            "skipped_videos": bad.as_dict(), "dim": int(next(iter(vectors.values())).shape[0])}


def read_gvf(path: str | Path) -> dict[str, np.ndarray]:
    """A GVF file as ``key -> [F]`` float32 vectors, read once into memory."""
    from ssl_video.features.files import read_features

    return {key: array[0] for key, array in read_features(path).features.items()}
