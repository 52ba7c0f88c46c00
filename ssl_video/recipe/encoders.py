"""Encoder names a recipe may give, checked without importing torch.

The zoo (:mod:`ssl_video.models.registry`) registers its encoders when torch is loaded; the recipe schema must
stay torch-free (``ssl-video config show`` in a fraction of a second). So the zoo's built-in names are listed
here (a test checks that they equal ``list_encoders()``), and :func:`~ssl_video.models.registry.register_encoder`
adds every name registered later (plugins) through :func:`register_encoder_name`.

A recipe's encoder is a zoo name, ``timm:<model>`` (any timm model, checked when it is built), or an
exported encoder directory (its ``config.json`` also works), which must exist.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from ssl_video.errors import ConfigError

__all__ = ["ZOO_NAMES", "PREFIXES", "register_encoder_name", "known_encoders", "check_encoder_name"]

# the zoo's built-in encoders by modality (tests/test_zoo.py checks them against the registry)
ZOO_NAMES: dict[str, set[str]] = {
    "video": {"cost_r101", "cost_r18", "cost_r50", "mc3_18", "r2plus1d_10", "r2plus1d_18", "r2plus1d_34", "r3d_18", "s3d"},
    "audio": {"audio_resnet18", "audio_resnet9"},
}
PREFIXES = ["timm:"]  # families built on demand: <prefix><model>


def register_encoder_name(name: str, modality: str) -> None:
    """Make ``name`` a valid encoder of ``modality`` in recipes (the registry calls this)."""
    ZOO_NAMES.setdefault(modality, set()).add(name)


def known_encoders(modality: str | None = None) -> list[str]:
    return sorted(n for m, names in ZOO_NAMES.items() if modality in (None, m) for n in names)


def check_encoder_name(value: str | None, key: str, modality: str) -> None:
    """Raise :class:`ConfigError` on ``key`` unless ``value`` is a zoo encoder of ``modality``, ``timm:<model>``
    or an existing encoder directory; an unknown name gets the nearest valid ones."""
    if value is None:
        return
    for prefix in PREFIXES:
        if value.startswith(prefix):
            if len(value) == len(prefix):
                raise ConfigError(key, f"'{value}' names no model (e.g. {prefix}resnet18)")
            return
    if value in ZOO_NAMES.get(modality, ()):
        return
    path = Path(value).expanduser()
    if path.is_dir() or (path.is_file() and path.name == "config.json"):
        return
    if "/" in value or "\\" in value or value.endswith(".json") or value.startswith("."):
        raise ConfigError(key, f"encoder directory does not exist: {value}")
    others = [m for m, names in ZOO_NAMES.items() if m != modality and value in names]
    if others:
        raise ConfigError(key, f"'{value}' is {'an' if others[0][0] in 'aeiou' else 'a'} {others[0]} encoder; {modality} encoders: "
                          f"{', '.join(known_encoders(modality))}")
    known = known_encoders(modality)
    close = difflib.get_close_matches(value, known, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ConfigError(key, f"unknown {modality} encoder '{value}' ({hint}known: {', '.join(known)}; or timm:<model>, "
                      "or an exported encoder directory)")
