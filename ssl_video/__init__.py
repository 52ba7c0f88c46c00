"""ssl_video: pretrain video and audio encoders (STiCA, TSP) and measure how good they are."""

from __future__ import annotations

from ssl_video.version import __version__

_LAZY = {
    "create_encoder": "ssl_video.models.registry",
    "list_encoders": "ssl_video.models.registry",
    "EncoderSpec": "ssl_video.models.registry",
    "load_encoder": "ssl_video.export",
}


def __getattr__(name: str):
    # Keep `import ssl_video` (and `ssl-video --help`) fast: torch loads on first use.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ssl_video' has no attribute {name!r}")
