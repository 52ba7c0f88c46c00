"""ssl_video: pretrain video and audio encoders (STiCA, TSP) and measure how good they are.

The public API, for scripts and notebooks (torch loads on first use, not on ``import ssl_video``)::

    import ssl_video

    ssl_video.list_encoders("r2*")                       # ['r2plus1d_10', 'r2plus1d_18', 'r2plus1d_34']
    encoder = ssl_video.create_encoder("r2plus1d_18", width=0.25)   # random init, from the zoo
    encoder = ssl_video.load_encoder("encoders/x")       # an exported (or imported) encoder directory
    clips = ssl_video.read_clips("video.mp4", encoder)   # N x 3 x T x H x W, per its input contract
    features = encoder(clips)                            # N x feature_dim
    recipe = ssl_video.load_recipe("recipes/stica_tiny_synthetic.yaml", ["data.root=data/synth"])
    ssl_video.train(recipe, "runs/x")                    # the training loop of `ssl-video pretrain`
"""

from ssl_video.version import __version__ as __version__

__all__ = [
    "__version__",
    "list_encoders",
    "create_encoder",
    "load_encoder",
    "EncoderSpec",
    "read_clips",
    "load_recipe",
    "Recipe",
    "train",
    "export_encoder",
    "UserError",
    "ConfigError",
]

_LAZY = {
    "create_encoder": "ssl_video.models.registry",
    "list_encoders": "ssl_video.models.registry",
    "EncoderSpec": "ssl_video.models.registry",
    "load_encoder": "ssl_video.models.io",
    "read_clips": "ssl_video.features.clips",
    "load_recipe": "ssl_video.recipe",
    "Recipe": "ssl_video.recipe",
    "train": "ssl_video.engine",
    "export_encoder": "ssl_video.export",
    "UserError": "ssl_video.errors",
    "ConfigError": "ssl_video.errors",
}


def __getattr__(name: str):
    # Keep `import ssl_video` (and `ssl-video --help`) fast: torch loads on first use.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ssl_video' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
