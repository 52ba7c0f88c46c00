"""The training recipe of ``eval finetune``: the shipped STiCA/GDT fragment (``finetune_recipe.yaml``) <- the
settings' ``recipe`` file <- their dotted ``overrides``, loaded like ``ssl-video pretrain``'s, with the per-split
keys of :func:`split_fields`, which nothing else may set. ``settings`` is a
:class:`~ssl_video.evaluation.settings.FinetuneSettings`.
"""

from __future__ import annotations

from pathlib import Path

from ssl_video.errors import ConfigError

__all__ = ["DEFAULT_RECIPE", "split_fields", "load_recipe", "check_recipe"]

DEFAULT_RECIPE = Path(__file__).with_name("finetune_recipe.yaml")


def split_fields(inputs, split: str, protocol, encoder, num_classes: int) -> dict:
    """The recipe keys eval finetune sets for one split (a recipe fragment or override may not set them)."""
    if encoder.provenance.get("init") == "exported":
        source = Path(encoder.provenance["source"])
        model = {"encoder": None, "encoder_args": {}, "init": str(source.parent if source.is_file() else source)}
    else:
        model = {"encoder": encoder.provenance["architecture"], "encoder_args": dict(inputs.encoder_args),
                 "init": None}
    return {
        "name": f"finetune_{inputs.dataset}_split{split}",
        "seed": inputs.seed,
        "data": {"dataset": inputs.dataset, "root": inputs.root, "videos": inputs.videos, "splits": inputs.split_dir,
                 "split": split, "subset": "train", "num_workers": inputs.workers, "seed": inputs.seed,
                 "clip": {"frames": protocol.frames, "fps": protocol.fps,
                          **({"resize_mode": "fixed", "resize_hw": list(protocol.resize)}
                             if isinstance(protocol.resize, (tuple, list)) else {"resize": protocol.resize}),
                          "video": {"crop": protocol.crop, "mean": list(protocol.mean), "std": list(protocol.std)}}},
        "trainer": {"device": inputs.device.split(":")[0]},
        "finetune": {**model, "num_classes": num_classes},
    }


_HINTS = {"data.clip.frames": "--frames", "data.clip.fps": "--fps", "data.clip.resize": "--resize",
          "data.clip.video.crop": "--crop", "data.num_workers": "--workers", "trainer.device": "--device",
          "seed": "--seed", "data.seed": "--seed", "data.split": "--splits", "finetune.encoder": "--encoder",
          "finetune.encoder_args": "--encoder-args", "finetune.init": "--encoder"}


def _leaves(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        keys.extend(_leaves(value, dotted) if isinstance(value, dict) and value else [dotted])
    return keys


def _user_layers(settings) -> dict:
    from ssl_video.config import apply_overrides, parse_overrides, read_yaml

    fragment = read_yaml(settings.recipe) if settings.recipe else {}
    return apply_overrides(fragment, parse_overrides(settings.overrides))


def load_recipe(settings, fields: dict):
    from ssl_video.config import apply_overrides, load_config, read_yaml
    from ssl_video.recipe import Recipe

    reserved = set(_leaves(fields))
    for key in _leaves(_user_layers(settings)):
        if key in reserved or any(key.startswith(r + ".") or r.startswith(key + ".") for r in reserved):
            hint = f" (use {_HINTS[key]})" if key in _HINTS else ""
            raise ConfigError(key, f"eval finetune sets it per split{hint}")
    base = apply_overrides(read_yaml(DEFAULT_RECIPE), fields)
    return load_config(Recipe, settings.recipe, settings.overrides, base=base)


def check_recipe(settings) -> None:
    """Fail (one line naming the key) on a recipe fragment or override that cannot load, before any work."""
    from types import SimpleNamespace as Stub

    inputs = Stub(dataset="synthetic", root=None, videos=None, split_dir=None, workers=0, seed=0, device="auto",
                  encoder_args={})
    clip = Stub(frames=8, fps=8.0, resize=64, crop=64, mean=(0.5,) * 3, std=(0.25,) * 3)
    load_recipe(settings, split_fields(inputs, "1", clip, Stub(provenance={"architecture": "r3d_18"}), 0))
