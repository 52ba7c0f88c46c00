"""Temporal sensitivity: how well a linear probe tells foreground (action) clips from background clips.

Clips come from the segments of TSP ground-truth CSVs (:mod:`ssl_video.data.datasets.tsp`): every segment at
least one clip long gives ``clips_per_segment`` evenly spaced clips, centre-cropped, through the frozen
encoder (eval mode). A two-class logistic regression (:mod:`ssl_video.evaluation.linear`, L2 penalty chosen
on held-out training videos) is fitted on the training clips and scored on the test clips: those of
``test_gt``, or, without it, of a seeded ``test_fraction`` of the videos of ``gt`` (whole videos on one side).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ssl_video.errors import UserError

__all__ = ["TemporalInputs", "run_temporal", "split_videos"]


@dataclass
class TemporalInputs:
    encoder: str
    gt: str
    videos: str
    test_gt: str | None = None
    test_fraction: float = 0.3
    clips_per_segment: int = 5
    encoder_args: dict | None = None
    frames: int | None = None
    fps: float | None = None
    resize: int | None = None
    crop: int | None = None
    device: str = "auto"
    batch_size: int = 16
    workers: int = 2
    seed: int = 0
    out: str = "runs/eval/temporal"
    progress: bool = True


def split_videos(keys: list[str], test_fraction: float, seed: int) -> set[str]:
    """The test videos: a seeded ``test_fraction`` of the distinct ``keys`` (at least one, never all)."""
    distinct = sorted(set(keys))
    if len(distinct) < 2:
        raise UserError("a train/test split needs at least two videos (or give a separate test CSV)")
    count = min(len(distinct) - 1, max(1, round(test_fraction * len(distinct))))
    order = np.random.default_rng(seed).permutation(len(distinct))
    return {distinct[i] for i in order[:count]}


def _clip_features(model, dataset, device, batch_size: int, workers: int, progress: bool, bad_files):
    """``(features, regions, record indices)`` of every decodable clip of ``dataset``."""
    from ssl_video.features.extraction import clip_loader, run_batches

    feats, regions, rows = [], [], []
    for batch, out in run_batches(model, clip_loader(dataset, batch_size, workers), device, bad_files,
                                  progress=progress, desc="clip features"):
        feats.append(out)
        regions.append(batch["region"])
        rows.append(batch["index"])
    if not feats:
        raise UserError("no clip could be decoded")
    return torch.cat(feats).numpy(), torch.cat(regions).numpy(), torch.cat(rows).numpy()


def run_temporal(inputs: TemporalInputs) -> dict:
    """Extract clip features, fit the foreground/background probe, write ``OUT/report.{json,md}``."""
    from tqdm.auto import tqdm

    from ssl_video.data.bad_files import BadFiles
    from ssl_video.data.datasets.tsp import read_ground_truth_csv, video_key
    from ssl_video.data.segment_dataset import SegmentClipDataset
    from ssl_video.device import resolve_device
    from ssl_video.evaluation.linear import ProbeSettings, probe_split
    from ssl_video.evaluation.report import write_report
    from ssl_video.features.protocol import ClipProtocol
    from ssl_video.models.io import resolve_encoder
    from ssl_video.recipe import ClipConfig

    started = time.time()
    if not 0.0 < inputs.test_fraction < 1.0:
        raise UserError(f"--test-fraction must be in (0, 1), got {inputs.test_fraction}")
    encoder = resolve_encoder(inputs.encoder, inputs.encoder_args, seed=inputs.seed, modality="video",
                              key="--encoder")
    protocol = ClipProtocol.for_encoder(encoder.model.spec, clips=inputs.clips_per_segment, frames=inputs.frames,
                                        fps=inputs.fps, resize=inputs.resize, crop=inputs.crop)
    train_segments = read_ground_truth_csv(inputs.gt)
    if inputs.test_gt:
        test_segments = read_ground_truth_csv(inputs.test_gt)
        split = "test CSV"
    else:
        test_keys = split_videos([video_key(s.filename) for s in train_segments], inputs.test_fraction, inputs.seed)
        test_segments = [s for s in train_segments if video_key(s.filename) in test_keys]
        train_segments = [s for s in train_segments if video_key(s.filename) not in test_keys]
        split = f"{inputs.test_fraction:.0%} of the videos held out (seed {inputs.seed})"
    cfg = ClipConfig(frames=protocol.frames, fps=protocol.fps, **protocol.clip_resize(), audio=None,
                     video=protocol.augment())
    device = resolve_device(inputs.device)
    bad = BadFiles(log=lambda m: tqdm.write(f"[ssl-video] {m}"))
    sets = {}
    for name, segments in (("train", train_segments), ("test", test_segments)):
        # labels play no part here: every action label counts as one class
        labels = sorted({s.label for s in segments if s.action})
        dataset = SegmentClipDataset(segments, inputs.videos, cfg, labels, inputs.clips_per_segment, train=False,
                                     seed=inputs.seed, on_error="skip")
        if len(dataset) == 0:
            raise UserError(f"the {name} segments hold no clip of {protocol.frames} frames at {protocol.fps} fps")
        x, y, rows = _clip_features(encoder.model, dataset, device, inputs.batch_size, inputs.workers,
                                    inputs.progress, bad)
        ids = [dataset.records[int(i)].video_id for i in rows]
        sets[name] = (x, y, ids)
    skipped = bad.as_dict()
    for name, (_, y, _) in sets.items():
        if len(np.unique(y)) < 2:
            raise UserError(f"the {name} clips are all {'foreground' if y[0] else 'background'}: the probe needs both")
    settings = ProbeSettings(seed=inputs.seed)
    (train_x, train_y, train_ids), (test_x, test_y, _) = sets["train"], sets["test"]
    result = probe_split(train_x, train_y, train_ids, test_x, test_y, 2, settings)
    confusion = np.asarray(result.pop("confusion"))
    per_class = confusion.diagonal() / np.maximum(confusion.sum(1), 1)
    row = {"encoder": inputs.encoder, "fg_bg_top1": result["top1"], "balanced_accuracy": float(per_class.mean()),
           "background_recall": float(per_class[0]), "foreground_recall": float(per_class[1]),
           "train_clips": int(len(train_y)), "test_clips": int(len(test_y))}
    report = {
        "protocol": {"name": "temporal", "clip": asdict(protocol), "clips_per_segment": inputs.clips_per_segment,
                     "classifier": "logistic regression (L-BFGS) on L2-normalised clip features, foreground (1) "
                                   "vs background (0)", "split": split, "l2": result["l2"],
                     "l2_grid": list(settings.l2_grid)},
        "gt": inputs.gt, "test_gt": inputs.test_gt, "videos": inputs.videos,
        "encoder_provenance": encoder.provenance, "encoder_weights_sha256": encoder.weights_hash,
        "foreground_fraction_test": float(test_y.mean()), "confusion": confusion,
        "skipped": sorted(skipped), "skipped_reasons": skipped, "seconds": round(time.time() - started, 2),
        **{k: v for k, v in row.items() if k != "encoder"},
    }
    files = write_report(inputs.out, report, [row], title="Temporal sensitivity: foreground/background probe",
                         plot_columns=["fg_bg_top1"], notes=[
                             "Linear probe telling action clips from background clips; clips evenly spaced in "
                             "every segment at least one clip long, centre crop, frozen encoder."])
    report["files"] = {k: str(v) for k, v in files.items()}
    return report
