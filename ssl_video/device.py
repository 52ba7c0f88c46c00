"""The one place a ``--device`` name becomes a :class:`torch.device`."""

from __future__ import annotations

import re

from ssl_video.errors import UserError

__all__ = ["resolve_device", "DEVICE_NAMES"]

DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"
_PATTERN = re.compile(r"cpu|cuda(:\d+)?|mps")


def resolve_device(name):
    """``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Any other name, or a device this machine does not have, is a one-line :class:`UserError` naming
    ``--device``. A :class:`torch.device` is returned as it is.
    """
    import torch

    if isinstance(name, torch.device):
        return name
    text = str(name).strip()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not _PATTERN.fullmatch(text):
        raise UserError(f"--device {name}: unknown device (give {DEVICE_NAMES})")
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {name}: MPS is not available on this machine")
    return device
