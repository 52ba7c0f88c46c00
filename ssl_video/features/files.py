"""The feature files of ``ssl-video extract`` and ``ssl-video tsp gvf``: how they are written and read.

Layouts:

* one HDF5 file: one dataset per video, keyed by the video name (a name with ``/`` lives in nested
  groups and is read back with its full path), shape ``[num_clips, F]`` float32. Clip start times (s)
  are an attribute ``start_times`` of that dataset, or a sibling dataset ``<name>.times``. Attributes of
  the file itself are returned as metadata. Written at once to a temporary name, then renamed.
* a directory of ``<video>.npy`` arrays ``[num_clips, F]`` (searched recursively; the name is the path
  relative to the directory without ``.npy``), start times optionally in ``<video>.times.npy``; written
  per video (times first, each atomically) with a manifest ``extract.json`` (:class:`NpyStore`).

Features of one output must come from one encoder and clip protocol: :func:`signature` is stored with them
and checked whenever more are added.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ssl_video.errors import UserError
from ssl_video.files import write_atomic, write_json

__all__ = ["FeatureSet", "read_features", "TIMES_SUFFIX", "MANIFEST", "signature", "check_signature", "NpyStore",
           "H5Sources", "write_h5"]

MANIFEST = "extract.json"
TIMES_SUFFIX = ".times"


@dataclass
class FeatureSet:
    """Per-video feature sequences ``[num_clips, F]`` (float32) with optional clip start times."""

    features: dict[str, np.ndarray]
    start_times: dict[str, np.ndarray | None] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return next(iter(self.features.values())).shape[1]

    def __len__(self) -> int:
        return len(self.features)



def _as_sequence(array: np.ndarray, name: str, source: Path) -> np.ndarray:
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] == 0:
        raise UserError(
            f"{source}: features of '{name}' must be [num_clips, F] with at least one clip, got {array.shape}"
        )
    if not np.isfinite(array).all():
        raise UserError(f"{source}: features of '{name}' contain NaN or infinite values")
    return array


def _read_h5(path: Path) -> FeatureSet:
    import h5py

    features: dict[str, np.ndarray] = {}
    times: dict[str, np.ndarray | None] = {}
    try:
        with h5py.File(path, "r") as f:
            metadata = {k: _plain(v) for k, v in f.attrs.items()}
            datasets: dict[str, object] = {}
            f.visititems(
                lambda name, obj: datasets.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None
            )
            for name, ds in datasets.items():
                if name.endswith(TIMES_SUFFIX) and name[: -len(TIMES_SUFFIX)] in datasets:
                    continue
                features[name] = _as_sequence(ds[()], name, path)
                if "start_times" in ds.attrs:
                    times[name] = np.asarray(ds.attrs["start_times"], dtype=np.float64)
                elif name + TIMES_SUFFIX in datasets:
                    times[name] = np.asarray(datasets[name + TIMES_SUFFIX][()], dtype=np.float64)
                else:
                    times[name] = None
    except OSError as exc:
        raise UserError(f"cannot read features file {path}: {exc}") from None
    return FeatureSet(features, times, metadata)


def _read_npy_dir(path: Path) -> FeatureSet:
    features: dict[str, np.ndarray] = {}
    times: dict[str, np.ndarray | None] = {}
    for file in sorted(path.rglob("*.npy")):
        rel = file.relative_to(path).as_posix()[: -len(".npy")]
        if rel.endswith(TIMES_SUFFIX):
            continue
        try:
            features[rel] = _as_sequence(np.load(file, allow_pickle=False), rel, path)
            times_file = file.with_name(file.name[: -len(".npy")] + TIMES_SUFFIX + ".npy")
            times[rel] = (
                np.load(times_file, allow_pickle=False).astype(np.float64) if times_file.exists() else None
            )
        except ValueError as exc:
            raise UserError(f"cannot read {file}: {exc}") from None
    return FeatureSet(features, times, {})


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def read_features(path: str | Path) -> FeatureSet:
    """Read an HDF5 feature file or a directory of ``.npy`` arrays (see the module notes)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"features not found: {path}")
    if path.is_dir():
        fs = _read_npy_dir(path)
    elif path.suffix.lower() in (".h5", ".hdf5", ".hdf"):
        fs = _read_h5(path)
    else:
        raise UserError(f"features must be an .h5 file or a directory of .npy files, got {path}")
    if not fs.features:
        raise UserError(f"no video features found in {path}")
    dims = {a.shape[1] for a in fs.features.values()}
    if len(dims) != 1:
        raise UserError(f"{path}: videos have different feature sizes {sorted(dims)}")
    for name, t in fs.start_times.items():
        if t is not None and t.shape != (fs.features[name].shape[0],):
            raise UserError(
                f"{path}: '{name}' has {fs.features[name].shape[0]} clips but {t.size} start times"
            )
    return fs


# ---------------------------------------------------------------------------------------------- writing


def signature(encoder, protocol, stride: int) -> dict:
    """What must match for features to be mixed in one output (encoder weights, clip protocol, stride)."""
    p = asdict(protocol)
    p.pop("clips", None)
    return {"weights_sha256": encoder.weights_hash, "protocol": json.dumps(p, sort_keys=True), "stride": int(stride)}


def check_signature(found: dict, wanted: dict, where: Path) -> None:
    diff = [k for k in wanted if str(found.get(k)) != str(wanted[k])]
    if diff:
        raise UserError(f"{where} holds features of another encoder or clip protocol ({', '.join(diff)} "
                        "differ): choose another --out or remove it")


def _save_npy(path: Path, array: np.ndarray) -> None:
    write_atomic(path, lambda tmp: np.save(tmp, array))


class NpyStore:
    """``<key>.npy`` + ``<key>.times.npy`` per video under ``root``, with a manifest.

    An existing manifest is checked when the store is opened; a new one is written with the first video,
    so that opening a store (and refusing the output for another reason) writes nothing."""

    def __init__(self, root: Path, signature: dict, meta: dict):
        self.root = root
        self._manifest = {**signature, **meta}
        manifest = root / MANIFEST
        self._written = manifest.is_file()
        if self._written:
            check_signature(json.loads(manifest.read_text()), signature, root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npy"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def write(self, key: str, features: np.ndarray, times: np.ndarray) -> None:
        if not self._written:
            write_json(self.root / MANIFEST, self._manifest)
            self._written = True
        _save_npy(self.root / f"{key}{TIMES_SUFFIX}.npy", times)
        _save_npy(self.path(key), features)

    def read(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        return np.load(self.path(key)), np.load(self.root / f"{key}{TIMES_SUFFIX}.npy")


class H5Sources:
    """Finished HDF5 files (this output, its shards) that already hold some videos."""

    def __init__(self, out: Path, signature: dict):
        import h5py

        self.opened: dict[Path, object] = {}
        candidates = [out, *sorted(out.parent.glob(f"{out.stem}.shard-*-of-*{out.suffix}"))]
        for path in candidates:
            if path.is_file():
                f = h5py.File(path, "r")
                self.opened[path] = f
                check_signature(dict(f.attrs), signature, path)

    def find(self, key: str):
        for f in self.opened.values():
            if key in f:
                return f[key]
        return None

    def close(self) -> None:
        for f in self.opened.values():
            f.close()


def write_h5(path: Path, keys: list[str], lookup, attrs: dict) -> None:
    """One HDF5 file of ``keys``: ``lookup(key) -> (features, start times or None)``; file attributes ``attrs``."""
    import h5py

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            for name, value in attrs.items():
                f.attrs[name] = value
            for key in keys:
                features, times = lookup(key)
                ds = f.create_dataset(key, data=np.asarray(features, dtype=np.float32))
                if times is not None:
                    ds.attrs["start_times"] = np.asarray(times, dtype=np.float64)

    write_atomic(path, write)
