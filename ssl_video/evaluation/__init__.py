"""Evaluation protocols for pretrained encoders and their features.

``metrics`` (pure numpy metrics), ``pooling`` (pooling classifiers on feature sequences) and ``report`` (JSON + Markdown + PNG reports).
Importing this package loads neither torch nor matplotlib.
"""
