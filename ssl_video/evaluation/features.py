"""Frozen-encoder features for every video of a dataset, extracted once and cached on disk.

Protocol: ``clips`` uniformly spaced clips per video (``frames`` at ``fps``), decoded with the short side
at ``resize``, centre-cropped to ``crop``, normalised with the encoder's mean/std, the encoder in eval
mode (BatchNorm uses its running statistics; it never drifts during extraction). Per video we keep the
mean of the clip features (``mean``), the mean of the L2-normalised clip features (``mean_l2``) and every
clip feature in time order (``clips``, ``[num_clips, F]`` per video, float16) for the pooling heads.
The clip features live in their own ``<key>.clips.npy`` next to ``<key>.npz`` and are memory-mapped on
a cache hit, so protocols that only need the video-level features never read them.

The cache key is (hash of the encoder's weights and architecture, the dataset's file list with sizes
and modification times, the clip protocol), so any protocol that uses the same clips — every split of
a linear probe, retrieval, a later run — reuses the features without decoding a single video.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ssl_video.errors import UserError
from ssl_video.recipe import VideoAugment

__all__ = ["ClipProtocol", "EncoderRef", "resolve_encoder", "weights_hash", "extract_features", "FeatureTable",
           "default_cache_dir", "torch_device", "decoded_batches"]


@dataclass(frozen=True)
class ClipProtocol:
    clips: int = 10
    frames: int = 16
    fps: float = 15.0
    resize: int = 128
    crop: int = 112
    mean: tuple[float, ...] = VideoAugment.mean
    std: tuple[float, ...] = VideoAugment.std

    @classmethod
    def for_encoder(cls, spec, **overrides) -> ClipProtocol:
        """The encoder's input contract (frames, fps, crop, resize, mean/std), then explicit overrides."""
        resize = spec.resize_size
        if isinstance(resize, (tuple, list)):
            resize = min(resize)
        base = cls(frames=spec.frames or 16, fps=float(spec.fps or 15.0), crop=spec.crop_size or 112,
                   resize=int(resize or round((spec.crop_size or 112) * 8 / 7)),
                   mean=tuple(spec.mean or cls.mean), std=tuple(spec.std or cls.std))
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class EncoderRef:
    model: torch.nn.Module
    provenance: dict
    weights_hash: str


def weights_hash(model: torch.nn.Module, architecture: str = "") -> str:
    """sha256 of the architecture name and every parameter and buffer (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(architecture.encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def resolve_encoder(ref: str, encoder_args: dict | None = None, seed: int = 0) -> EncoderRef:
    """An exported encoder directory (``config.json`` + weights), or a zoo name (random init with ``seed``)."""
    from ssl_video.export import CONFIG_FILE, load_encoder, read_encoder_config
    from ssl_video.models.registry import create_encoder

    path = Path(ref)
    if path.is_dir() or (path.exists() and path.name == CONFIG_FILE):
        if encoder_args:
            raise UserError("--encoder-args applies to zoo names only (an exported encoder carries its own)")
        _, config = read_encoder_config(path)
        model = load_encoder(path)
        provenance = {"source": str(path), "init": "exported", **config}
        name = config["architecture"]
    else:
        if "/" in ref or ref.endswith(".json"):
            raise UserError(f"encoder not found: {ref} (give an exported encoder directory or a zoo name)")
        torch.manual_seed(seed)
        model = create_encoder(ref, **(encoder_args or {}))
        provenance = {"architecture": ref, "args": dict(encoder_args or {}), "init": "random", "seed": seed,
                      "spec": model.spec.to_dict() if model.spec else None}
        name = ref
    model.eval()
    return EncoderRef(model=model, provenance=provenance, weights_hash=weights_hash(model, name))


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


def _clips_path(path: Path) -> Path:
    return path.with_name(path.name[: -len(".npz")] + ".clips.npy")


def _save(path: Path, table: FeatureTable, meta: dict) -> None:
    """Clip features first, then the ``.npz`` (its presence marks a complete entry); each written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clips = _clips_path(path)
    tmp_clips = clips.with_name(f"{clips.stem}.tmp{os.getpid()}.npy")
    np.save(tmp_clips, table.clips)
    os.replace(tmp_clips, clips)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, mean=table.mean, mean_l2=table.mean_l2, ok=table.ok,
             paths=np.array(table.paths, dtype=object).astype(str),
             meta=np.array(json.dumps({**meta, "skipped": table.skipped})))
    os.replace(tmp, path)


def _load(path: Path) -> FeatureTable | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            table = FeatureTable(paths=[str(p) for p in data["paths"]], mean=data["mean"], mean_l2=data["mean_l2"],
                                 ok=data["ok"], skipped=meta.get("skipped", {}),
                                 clips=np.load(_clips_path(path), mmap_mode="r", allow_pickle=False), cache_hit=True)
    except (OSError, ValueError, KeyError):
        return None  # damaged or incomplete cache entry: extract again
    return table if table.clips.shape[:1] == table.mean.shape[:1] else None


def extract_features(encoder: EncoderRef, paths: list[str], protocol: ClipProtocol, *, device: str = "auto",
                     batch_size: int = 8, num_workers: int = 2, cache_dir: str | Path | None = None,
                     use_cache: bool = True, progress: bool = True) -> FeatureTable:
    """Features of every video in ``paths`` (order kept); bad or missing files are skipped and named."""
    key_data = {"weights": encoder.weights_hash, "files": _file_list_key(paths), "protocol": asdict(protocol),
                "format": 2}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:32]
    cache_path = Path(cache_dir or default_cache_dir()) / f"{key}.npz"
    if use_cache and cache_path.is_file():
        table = _load(cache_path)
        if table is not None and table.paths == list(paths):
            return table
    started = time.time()
    table = _extract(encoder.model, paths, protocol, device, batch_size, num_workers, progress)
    table.seconds = time.time() - started
    if use_cache:
        _save(cache_path, table, {"protocol": asdict(protocol), "weights": encoder.weights_hash})
    return table


def torch_device(name: str) -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N``; asking for CUDA without it is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


def decoded_batches(loader, skipped: dict[str, str], desc: str, progress: bool):
    """The batches of a :func:`~ssl_video.data.clip_dataset.collate_clips` loader that hold videos (with a
    progress bar); every bad file met is recorded in ``skipped`` (path -> reason)."""
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, total=len(loader), desc=desc, unit="batch", leave=False)
    for batch in loader:
        for entry in batch["skipped"]:
            path, _, reason = entry.partition("\t")
            skipped[path] = reason
        if "video" in batch:
            yield batch


@torch.no_grad()
def _extract(model, paths, protocol: ClipProtocol, device: str, batch_size: int, num_workers: int,
             progress: bool) -> FeatureTable:
    from torch.utils.data import DataLoader

    from ssl_video.data.clip_dataset import ClipDataset, collate_clips
    from ssl_video.data.datasets.base import VideoRecord
    from ssl_video.recipe import ClipConfig, ClipSampling

    dev = torch_device(device)
    model = model.to(dev).eval()
    present = [p for p in paths if os.path.isfile(p)]
    skipped = {p: "missing file" for p in paths if not os.path.isfile(p)}
    records = [VideoRecord(path=p, label=-1, video_id=p) for p in present]
    cfg = ClipConfig(frames=protocol.frames, fps=protocol.fps, resize=protocol.resize,
                     sampling=ClipSampling(mode="uniform", num_clips=protocol.clips),
                     video=VideoAugment(crop=protocol.crop, mean=protocol.mean, std=protocol.std), audio=None)
    dataset = ClipDataset(records, cfg, train=False, on_error="skip")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_clips, persistent_workers=False)
    dim = None
    index = {p: i for i, p in enumerate(paths)}
    mean = mean_l2 = clips = None
    ok = np.zeros(len(paths), dtype=bool)
    decoded = 0
    for batch in decoded_batches(loader, skipped, "extracting features", progress):
        video = batch["video"]
        if video.dim() == 5:  # one clip per video
            video = video.unsqueeze(1)
        b, n = video.shape[:2]
        feats = model(video.flatten(0, 1).to(dev, non_blocking=True)).float().view(b, n, -1).cpu()
        decoded += b * n
        if dim is None:
            dim = feats.shape[-1]
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
    return FeatureTable(paths=list(paths), mean=mean, mean_l2=mean_l2, ok=ok, skipped=skipped, clips=clips,
                        clips_decoded=decoded)
