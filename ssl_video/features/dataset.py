"""Frozen-encoder features for every video of a dataset, extracted once and cached on disk.

Protocol: ``clips`` uniformly spaced clips per video (``frames`` at ``fps``), decoded with the short side
at ``resize``, centre-cropped to ``crop``, normalised with the encoder's mean/std, the encoder in eval
mode (BatchNorm uses its running statistics; it never drifts during extraction). Per video we keep the
mean of the clip features (``mean``), the mean of the L2-normalised clip features (``mean_l2``) and every
clip feature in time order (``clips``, ``[num_clips, F]`` per video, float16) for the pooling heads.

The cache key (:mod:`ssl_video.features.cache`) is (hash of the encoder's weights and architecture, the
dataset's file list with sizes and modification times, the clip protocol), so any protocol that uses the
same clips — every split of a linear probe, retrieval, a later run — reuses the features without decoding
a single video.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ssl_video.errors import UserError
from ssl_video.features.cache import FeatureTable, cache_path, load_table, save_table
from ssl_video.features.protocol import ClipProtocol

__all__ = ["extract_features"]


def extract_features(encoder, paths: list[str], protocol: ClipProtocol, *, device: str = "auto",
                     batch_size: int = 8, num_workers: int = 2, cache_dir: str | Path | None = None,
                     use_cache: bool = True, progress: bool = True) -> FeatureTable:
    """Features of every video in ``paths`` (order kept); bad or missing files are skipped and named.

    ``encoder`` is a :class:`~ssl_video.models.io.ResolvedEncoder` (its model and weights hash)."""
    path = cache_path(encoder.weights_hash, paths, protocol, cache_dir)
    if use_cache and path.is_file():
        table = load_table(path)
        if table is not None and table.paths == list(paths):
            return table
    started = time.time()
    table = _extract(encoder.model, paths, protocol, device, batch_size, num_workers, progress)
    table.seconds = time.time() - started
    if use_cache:
        save_table(path, table, {"protocol": asdict(protocol), "weights": encoder.weights_hash})
    return table


def _clip_major(model):
    """``B x N x C x T x H x W`` (or one clip per video, ``B x C x T x H x W``) -> ``B x N x F``."""

    def forward(video: torch.Tensor) -> torch.Tensor:
        if video.dim() == 5:
            video = video.unsqueeze(1)
        b, n = video.shape[:2]
        return model(video.flatten(0, 1)).view(b, n, -1)

    return forward


def _extract(model, paths, protocol: ClipProtocol, device: str, batch_size: int, num_workers: int,
             progress: bool) -> FeatureTable:
    from ssl_video.data.bad_files import BadFiles
    from ssl_video.data.clip_dataset import ClipDataset
    from ssl_video.data.datasets.base import VideoRecord
    from ssl_video.device import resolve_device
    from ssl_video.features.extraction import clip_loader, run_batches
    from ssl_video.recipe import ClipConfig, ClipSampling

    bad = BadFiles()
    for p in paths:
        if not os.path.isfile(p):
            bad.add(p, "missing file")
    records = [VideoRecord(path=p, label=-1, video_id=p) for p in paths if p not in bad]
    cfg = ClipConfig(frames=protocol.frames, fps=protocol.fps, **protocol.clip_resize(),
                     sampling=ClipSampling(mode="uniform", num_clips=protocol.clips), video=protocol.augment(),
                     audio=None)
    loader = clip_loader(ClipDataset(records, cfg, train=False, on_error="skip"), batch_size, num_workers)
    index = {p: i for i, p in enumerate(paths)}
    mean = mean_l2 = clips = None
    ok = np.zeros(len(paths), dtype=bool)
    decoded = 0
    for batch, feats in run_batches(model, loader, resolve_device(device), bad, progress=progress,
                                    desc="extracting features", forward=_clip_major(model)):
        b, n, dim = feats.shape
        decoded += b * n
        if mean is None:
            mean = np.zeros((len(paths), dim), np.float32)
            mean_l2 = np.zeros((len(paths), dim), np.float32)
            clips = np.zeros((len(paths), n, dim), np.float16)
        rows = [index[records[int(i)].path] for i in batch["index"]]
        mean[rows] = feats.mean(1).numpy()
        mean_l2[rows] = torch.nn.functional.normalize(feats, dim=-1).mean(1).numpy()
        clips[rows] = feats.numpy().astype(np.float16)
        ok[rows] = True
    if mean is None:
        raise UserError("no video of the dataset could be decoded (run `ssl-video data check` to see why)")
    return FeatureTable(paths=list(paths), mean=mean, mean_l2=mean_l2, ok=ok, skipped=bad.as_dict(), clips=clips,
                        clips_decoded=decoded)
