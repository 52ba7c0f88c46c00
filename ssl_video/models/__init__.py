"""Encoders (the zoo), heads and pooling layers.

Create encoders by name with :func:`ssl_video.models.registry.create_encoder`; importing this package
imports nothing heavy, so submodules can be used on their own.
"""
