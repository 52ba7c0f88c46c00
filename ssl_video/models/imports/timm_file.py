"""``timm``: a checkpoint of a timm model for the ``timm:<name>`` encoders (``--arch <name>``).

The file must fit ``timm.create_model(name)`` (its own key layout; ``state_dict`` / ``model`` /
``state_dict_ema`` entries and ``module.`` prefixes unwrapped); the classifier (the model's
``pretrained_cfg["classifier"]``) is dropped. The encoder is timm's ``features_only`` network of the same
model, whose parameters are the full model's under flattened names (``blocks.0`` -> ``blocks_0``, or under
``model.``): each is matched by name with dots and underscores equated. With ``--modality audio`` a
3-channel first conv (``pretrained_cfg["first_conv"]``) is summed over its input channels, as timm does
when it loads RGB weights into a 1-channel model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssl_video.errors import UserError
from ssl_video.models.imports import Imported, ImportOptions, load_mapped, state_dict_of
from ssl_video.models.registry import TIMM_PREFIX


def _flat(key: str) -> str:
    return key.replace(".", "_")


def convert(checkpoint: Any, source: Path, options: ImportOptions) -> Imported:
    import timm

    from ssl_video.models.io import check_state_dict
    from ssl_video.models.registry import create_encoder

    name = (options.arch or "").removeprefix(TIMM_PREFIX)
    if not name:
        raise UserError("--arch must name the timm model the checkpoint belongs to (e.g. --arch resnet50)")
    encoder = create_encoder(f"{TIMM_PREFIX}{name}", modality=options.modality)
    full = timm.create_model(name, pretrained=False, in_chans=1 if options.modality == "audio" else 3)
    state = state_dict_of(checkpoint, str(source))
    head = tuple(f"{c}." for c in _as_tuple(full.pretrained_cfg.get("classifier")))
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    first = f"{full.pretrained_cfg.get('first_conv') or ''}.weight"
    if options.modality == "audio" and first in state and state[first].ndim == 4 and state[first].shape[1] == 3:
        state[first] = state[first].sum(dim=1, keepdim=True)
    own_head = {k: v for k, v in full.state_dict().items() if k.startswith(head)} if head else {}
    check_state_dict(full, {**state, **own_head}, f"{source} (timm {name})")
    by_flat = {_flat(k): k for k in state}
    if len(by_flat) != len(state):
        raise UserError(f"timm {name}: parameter names collide once dots and underscores are equated")
    mapping, missing = {}, []
    for key in encoder.net.state_dict():
        file_key = by_flat.get(_flat(key)) or by_flat.get(_flat(key.removeprefix("model.")))
        if file_key is None:
            missing.append(key)
        else:
            mapping[file_key] = key
    if missing:
        raise UserError(f"timm {name}: encoder parameters with no counterpart in the file: {', '.join(missing[:5])}")
    dropped = load_mapped(encoder.net, state, mapping.get, f"{source} (timm {name})")
    return Imported(encoder, {"layout": f"timm {name} (timm {timm.__version__})", "dropped": dropped[:20]})


def _as_tuple(value) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)
