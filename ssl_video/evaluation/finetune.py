"""The fine-tuning protocol: train the ``finetune`` method on each split, then test with view averaging.

Per split ``s`` the encoder (an exported directory, or a zoo name with random initialisation) gets a linear
classifier and is trained end to end on the split's training list through the shared training loop
(:func:`ssl_video.engine.trainer.train`) in its own run directory ``OUT/split_<s>/``. An interrupted eval
rerun with the same command resumes inside the split where it stopped; a split whose test scores are
already stored (``OUT/split_<s>/test.json``, same recipe and test settings) is neither trained nor tested
again.

Test: every test video gives ``clips`` uniformly spaced clips x ``crops`` spatial crops (each crop a square
of side ``crop`` along the long side of the frame decoded at short side ``resize``: start, centre, end for
3 crops; the centre one for 1), the model in eval mode scores every view, and the video's score is the
mean of the views' softmax probabilities (or of their raw logits, ``average="logits"``). The last epoch's
weights are tested: nothing is selected on the test split.

Training follows a recipe (:mod:`ssl_video.evaluation.finetune_recipe`): the shipped STiCA/GDT fragment
<- the settings' ``recipe`` file <- their dotted ``overrides``, with the per-split keys of
:func:`~ssl_video.evaluation.finetune_recipe.split_fields`. Videos that cannot be read are found once, before
training (the same probe as ``ssl-video data check``), and are counted and named in the report; training
replaces a bad video with another one whenever it draws it, testing leaves it out.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ssl_video.data.datasets.base import VideoRecord
from ssl_video.errors import UserError
from ssl_video.evaluation.finetune_recipe import DEFAULT_RECIPE, check_recipe, load_recipe, split_fields
from ssl_video.evaluation.settings import FinetuneSettings

__all__ = ["FinetuneSettings", "DEFAULT_RECIPE", "spatial_crop_boxes", "ViewDataset", "average_view_scores",
           "split_fields", "split_recipe", "check_recipe", "score_videos", "run_finetune"]

FINETUNE_FLAGS = {"run_dir": "--out"}  # the option a refused resume names (eval finetune has no --run-dir)


# ---------------------------------------------------------------------------------------------- test views


def spatial_crop_boxes(height: int, width: int, size: int, count: int) -> list[tuple[int, int, int, int]]:
    """``count`` square boxes ``(top, left, h, w)`` of side ``min(size, H, W)``: evenly spaced along the long
    side from one end to the other, centred on the short side (one box: the centre crop)."""
    side = min(size, height, width)
    if count == 1:
        return [((height - side) // 2, (width - side) // 2, side, side)]
    offsets = np.linspace(0, max(height, width) - side, count).round().astype(int).tolist()
    if width >= height:
        return [((height - side) // 2, off, side, side) for off in offsets]
    return [(off, (width - side) // 2, side, side) for off in offsets]


class ViewDataset(Dataset):
    """Test views of each record: ``video`` is ``(clips x crops) x C x T x H x W``, clip-major.

    A file that fails to decode gives ``{"skipped": ["path<TAB>reason"]}`` (dropped by ``collate_clips``).
    """

    def __init__(self, records: list[VideoRecord], frames: int, fps: float, resize: int, crop: int,
                 clips: int, crops: int, mean, std):
        self.records = list(records)
        self.frames, self.fps, self.resize, self.crop = frames, fps, resize, crop
        self.clips, self.crops, self.mean, self.std = clips, crops, tuple(mean), tuple(std)

    def __len__(self) -> int:
        return len(self.records)

    def views(self, path: str) -> torch.Tensor:
        from ssl_video.data.media import read_clips
        from ssl_video.data.sampling import clip_span, uniform_starts
        from ssl_video.data.transforms import crop_resize, normalize

        span = clip_span(self.frames, self.fps)
        decoded = read_clips(path, lambda duration: uniform_starts(duration, span, self.clips), self.frames,
                             self.fps, size=self.resize, audio_rate=None)
        out = []
        for clip in decoded:
            for box in spatial_crop_boxes(*clip.video.shape[-2:], self.crop, self.crops):
                out.append(normalize(crop_resize(clip.video, box, self.crop), self.mean, self.std))
        return torch.stack(out)

    def __getitem__(self, index: int) -> dict:
        from ssl_video.data.media import MediaError

        record = self.records[index]
        try:
            video = self.views(record.path)
        except MediaError as exc:
            return {"skipped": [f"{exc.path}\t{exc.reason}"]}
        return {"video": video, "label": torch.tensor(record.label, dtype=torch.long),
                "index": torch.tensor(index, dtype=torch.long), "skipped": []}


def average_view_scores(logits: torch.Tensor, average: str = "softmax") -> torch.Tensor:
    """``(B, V, C)`` view logits -> ``(B, C)`` video scores: the mean softmax (or mean logits) over views."""
    if average == "softmax":
        return logits.float().softmax(-1).mean(1)
    if average == "logits":
        return logits.float().mean(1)
    raise ValueError(f"average must be 'softmax' or 'logits', got {average!r}")


def score_videos(model, dataset: ViewDataset, *, device: torch.device, batch_size: int, workers: int,
                 average: str, mixed_precision: str = "no", chunk: int = 64, progress: bool = False):
    """Video scores ``(V, C)`` for the readable records of ``dataset`` with their record indices, plus the
    skipped files ``{path: reason}``. ``model.logits`` is applied to at most ``chunk`` views at a time."""
    from contextlib import nullcontext

    from ssl_video.data.bad_files import BadFiles
    from ssl_video.features.extraction import clip_loader, run_batches

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)
    use_autocast = torch.device(device).type == "cuda" and dtype is not None

    def video_scores(video: torch.Tensor) -> torch.Tensor:
        b, v = video.shape[:2]
        flat = video.flatten(0, 1)
        parts = []
        for i in range(0, flat.shape[0], chunk):
            with torch.autocast("cuda", dtype=dtype) if use_autocast else nullcontext():
                parts.append(model.logits(flat[i:i + chunk]).float())
        return average_view_scores(torch.cat(parts).view(b, v, -1), average)

    bad = BadFiles()
    scores, indices = [], []
    for batch, out in run_batches(model, clip_loader(dataset, batch_size, workers), device, bad, progress=progress,
                                  desc="testing", forward=video_scores):
        scores.append(out.numpy())
        indices.append(batch["index"].numpy())
    if not scores:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), bad.as_dict()
    return np.concatenate(scores), np.concatenate(indices), bad.as_dict()


# ---------------------------------------------------------------------------------------------- training


def split_recipe(inputs, settings: FinetuneSettings, split: str, protocol, encoder, num_classes: int):
    """The training recipe of one split: defaults <- ``settings.recipe`` <- overrides, with :func:`split_fields`."""
    recipe = load_recipe(settings, split_fields(inputs, split, protocol, encoder, num_classes))
    if inputs.progress is False:
        recipe.trainer.progress = False
    return recipe


def _trained_model(recipe, run_dir: Path):
    from ssl_video.engine.checkpoint import load_checkpoint
    from ssl_video.engine.run_dir import RunDir
    from ssl_video.methods.finetune import Finetune, build_encoder

    cfg = recipe.finetune
    state = load_checkpoint(RunDir(run_dir).last)
    model = Finetune(build_encoder(cfg), cfg.num_classes, cfg.dropout, cfg.label_smoothing, cfg.backbone_lr_scale,
                     cfg.freeze_backbone)
    model.load_state_dict(state["model"], strict=True)
    return model


def _save_predictions(path: Path, video_ids: list[str], labels: np.ndarray, scores: np.ndarray) -> None:
    from ssl_video.files import write_atomic

    write_atomic(path, lambda tmp: np.savez(tmp, video_ids=np.array(video_ids, dtype=str), labels=labels,
                                            scores=scores))


def _run_split(inputs, settings, split, recipe, layout, protocol, unreadable: dict) -> dict:
    """Train (or resume) and test one split; returns its stored result (``status`` "completed" or not)."""
    from ssl_video.config import to_dict
    from ssl_video.device import resolve_device
    from ssl_video.engine.run_dir import write_json
    from ssl_video.engine.trainer import train
    from ssl_video.evaluation.metrics import confusion_matrix, topk_accuracy

    run_dir = Path(inputs.out) / f"split_{split}"
    test_settings = {"clips": protocol.clips, "crops": settings.crops, "average": settings.average,
                     "frames": protocol.frames, "fps": protocol.fps, "resize": protocol.resize, "crop": protocol.crop}
    stored = run_dir / "test.json"
    if stored.is_file():
        saved = json.loads(stored.read_text())
        if saved.get("recipe") == to_dict(recipe) and saved.get("test") == test_settings:
            return {**saved["result"], "status": "completed", "reused": True}
    summary = train(recipe, run_dir, flags=FINETUNE_FLAGS)
    if summary["status"] != "completed":
        return {"status": summary["status"], "step": summary["step"], "total_steps": summary["total_steps"]}

    records = [r for r in layout.splits[split]["test"] if r.path not in unreadable]
    dataset = ViewDataset(records, protocol.frames, protocol.fps, protocol.resize, protocol.crop, protocol.clips,
                          settings.crops, protocol.mean, protocol.std)
    device = resolve_device(inputs.device)
    scores, rows, skipped = score_videos(
        _trained_model(recipe, run_dir), dataset, device=device, batch_size=inputs.batch_size,
        workers=inputs.workers, average=settings.average, mixed_precision=recipe.trainer.mixed_precision,
        progress=inputs.progress)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the next split starts with the memory this one held
    if len(rows) == 0:
        raise UserError(f"split {split}: no test video could be decoded")
    labels = np.array([records[i].label for i in rows], dtype=np.int64)
    classes = len(layout.classes)
    _save_predictions(run_dir / "predictions.npz", [records[i].video_id for i in rows], labels, scores)
    result = {
        "top1": topk_accuracy(scores, labels, 1),
        "top5": topk_accuracy(scores, labels, min(5, classes)),
        "train_videos": len(layout.records(split, "train")),
        "test_videos": int(len(rows)),
        "train_steps": summary["total_steps"],
        "train_seconds": round(summary["train_seconds"], 2),
        "train_bad_files_drawn": summary["bad_files"],
        "final_train_loss": summary["metrics"].get("loss"),
        "test_skipped": skipped,
        "run_dir": str(run_dir),
        "confusion": confusion_matrix(labels, scores.argmax(1), classes).tolist(),
    }
    write_json(stored, {"recipe": to_dict(recipe), "test": test_settings, "result": result})
    return {**result, "status": "completed", "reused": False}


def run_finetune(inputs, settings: FinetuneSettings | None = None) -> dict:
    """Fine-tune and test on every requested split; writes ``OUT/report.{json,md}`` and plots.

    ``inputs`` is an :class:`~ssl_video.evaluation.runner.EvalInputs` (``clips``: test clips per video,
    ``batch_size``: test videos per batch). Returns the report, or ``{"status": "stopped", ...}`` when a
    signal stopped training (rerun the same call to resume).
    """
    from ssl_video.config import to_dict
    from ssl_video.data.check import check_dataset
    from ssl_video.engine.trainer import check_run_dir
    from ssl_video.evaluation.runner import resolve_inputs, split_summary, write_split_report

    settings = settings or FinetuneSettings()
    settings.check()
    started = time.time()
    layout, splits, encoder, protocol = resolve_inputs(inputs)
    # every split's recipe first: a bad override fails before any video is opened
    recipes = {s: split_recipe(inputs, settings, s, protocol, encoder, len(layout.classes)) for s in splits}
    for s, recipe in recipes.items():  # ... and an OUT that holds runs of other settings, too
        check_run_dir(recipe, Path(inputs.out) / f"split_{s}", flags=FINETUNE_FLAGS)
    check = check_dataset(inputs.dataset, root=inputs.root, videos=inputs.videos, splits=inputs.split_dir,
                          progress=inputs.progress)
    bad = {p: "missing file" for p in check["missing"]}
    bad.update({u["path"]: u["reason"] for u in check["unreadable_reasons"]})
    per_split, confusion = {}, None
    for s in splits:
        result = _run_split(inputs, settings, s, recipes[s], layout, protocol, bad)
        if result["status"] != "completed":
            return {"status": result["status"], "split": s, "run_dir": str(Path(inputs.out) / f"split_{s}"),
                    "step": result["step"], "total_steps": result["total_steps"]}
        bad.update(result.pop("test_skipped"))
        matrix = np.asarray(result.pop("confusion"), dtype=np.int64)
        confusion = matrix if confusion is None else confusion + matrix
        result.pop("status")
        per_split[s] = result
    mean, std = split_summary(per_split, ["top1", "top5"])
    listed = layout.listed()
    skipped = sorted(bad)
    first = recipes[splits[0]]
    report = {
        "protocol": {
            "name": "finetune", "dataset": inputs.dataset, "splits": splits, "clip": asdict(protocol),
            "training": {"defaults": str(DEFAULT_RECIPE.name), "recipe": settings.recipe,
                         "overrides": list(settings.overrides),
                         "epoch": "one pass over the training videos, one random clip per video",
                         "epochs": first.trainer.epochs, "augmentation": "random resized crop (data.clip.video.scale), horizontal flip, colour "
                                         "jitter, at the clip protocol's frames/fps/resize/crop"},
            "test": {"clips": protocol.clips, "crops": settings.crops, "average": settings.average,
                     "views": "uniformly spaced clips x square crops along the long side (start, centre, end "
                              "for 3), decoded at short side resize", "model": "eval mode"},
            "selection": "last epoch (nothing selected on the test split)",
            "recipe": {**to_dict(first), "name": f"finetune_{inputs.dataset}_split<s>",
                       "data": {**to_dict(first.data), "split": "<s>"}},
            "seed": inputs.seed,
        },
        "encoder": encoder.provenance,
        "encoder_weights_sha256": encoder.weights_hash,
        "videos_listed": len(listed),
        "videos_evaluated": len(listed) - len(skipped),
        "skipped": skipped,
        "skipped_reasons": {p: bad[p] for p in skipped},
        "classes": layout.classes,
        "splits": per_split,
        "mean": mean,
        "std": std,
        "status": "completed",
        "seconds": round(time.time() - started, 2),
    }
    write_split_report(inputs.out, report, per_split, ["top1", "top5"], "Fine-tuning", confusion, layout.classes)
    return report
