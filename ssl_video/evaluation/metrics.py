"""Evaluation metrics as pure numpy functions (no torch, no state).

Conventions shared by every function here:

* ``scores`` is ``(V, C)`` (higher = more confident); ``labels`` is either ``(V,)`` integer class indices
  or a ``(V, C)`` 0/1 indicator matrix (any value > 0 counts as positive).
* Ties in score never help a prediction by accident of ordering. Average precision ranks tied items
  as one group: every positive inside a group of equal scores gets the precision measured at the end of
  the group (the convention of scikit-learn's ``average_precision_score``), so the value does not depend
  on the order of the inputs. Top-k accuracy counts ties against the prediction (a tied negative
  ranks above the positive).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "l2_normalize",
    "average_precision",
    "global_average_precision",
    "mean_average_precision",
    "topk_accuracy",
    "recall_at_k",
    "confusion_matrix",
    "one_hot",
]


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``(V,)`` class indices -> ``(V, C)`` 0/1 int matrix."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError("one_hot expects a 1-D array of class indices")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"class index out of range [0, {num_classes})")
    out = np.zeros((labels.shape[0], num_classes), dtype=np.int64)
    out[np.arange(labels.shape[0]), labels.astype(np.int64)] = 1
    return out


def _indicator(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (videos, classes), got shape {scores.shape}")
    labels = np.asarray(labels)
    if labels.ndim == 1:
        labels = one_hot(labels, scores.shape[1])
    if labels.shape != scores.shape:
        raise ValueError(f"labels shape {labels.shape} does not match scores shape {scores.shape}")
    return scores, (labels > 0)


def average_precision(scores: np.ndarray, positives: np.ndarray, num_positives: int | None = None) -> float:
    """Average precision of one ranked list: ``sum_i precision(i) * delta_recall(i)``.

    ``scores`` and ``positives`` are 1-D. ``num_positives`` is the recall denominator; it defaults to the
    positives in the list and may be larger (positives that never made it into the list count as
    missed). Tied scores form one group (see the module notes). Returns 0.0 when there are no positives.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positives = np.asarray(positives).ravel() > 0
    if scores.shape != positives.shape:
        raise ValueError("scores and positives must have the same length")
    total = int(positives.sum()) if num_positives is None else int(num_positives)
    if total < int(positives.sum()):
        raise ValueError("num_positives is smaller than the positives in the list")
    if total == 0 or scores.size == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positives[order]
    hits = np.cumsum(p)
    # the last index of every group of equal scores: where the next score differs, plus the end
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    hits_at_end = hits[ends]
    new_hits = np.diff(np.r_[0, hits_at_end])
    precision = hits_at_end / (ends + 1.0)
    return float(np.sum(precision * new_hits) / total)


def global_average_precision(scores: np.ndarray, labels: np.ndarray, top_k: int = 20) -> float:
    """YouTube-8M Global Average Precision (GAP@k).

    Each video keeps its ``top_k`` highest-scoring (class, score) predictions; the predictions of all
    videos are pooled and ranked by score, and ``GAP = sum_i precision(i) * delta_recall(i)``, where
    recall's denominator is the total number of positive (video, class) labels over all videos,
    including positives that fell outside a video's top k (so a video with more than k labels cannot
    reach recall 1) and contributing nothing for videos without positives (their predictions are
    pooled too, as negatives). Returns 0.0 when there are no positives at all.

    Ties: inside a video, when several classes tie at the k-th place the lower class index is kept;
    in the pooled ranking tied scores form one group (see the module notes). The official YouTube-8M
    code instead breaks pooled ties by a seeded shuffle, i.e. one random order; without ties the two
    are identical.
    """
    scores, positives = _indicator(scores, labels)
    if top_k < 1:
        raise ValueError("top_k must be a positive integer")
    k = min(top_k, scores.shape[1])
    # per-video top k; the stable sort keeps the lower class index first among equal scores
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    pooled_scores = np.take_along_axis(scores, top, axis=1).ravel()
    pooled_positives = np.take_along_axis(positives, top, axis=1).ravel()
    return average_precision(pooled_scores, pooled_positives, num_positives=int(positives.sum()))


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes of the average precision of ranking all videos by that class's score.

    Classes without any positive video are left out of the mean (their AP is undefined); returns 0.0
    when no class has a positive.
    """
    scores, positives = _indicator(scores, labels)
    aps = [
        average_precision(scores[:, c], positives[:, c])
        for c in range(scores.shape[1])
        if positives[:, c].any()
    ]
    return float(np.mean(aps)) if aps else 0.0


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of videos with a true class among their ``k`` highest scores.

    ``labels``: class indices ``(V,)`` or a 0/1 matrix (hit = any positive in the top k). Among equal
    scores negatives rank first, so a constant prediction never scores by luck.
    """
    scores, positives = _indicator(scores, labels)
    if k < 1:
        raise ValueError("k must be a positive integer")
    if scores.shape[0] == 0:
        return 0.0
    # np.lexsort sorts by the last key first: descending score, then negatives before positives
    order = np.lexsort((positives.astype(np.int8), -scores), axis=-1)[:, : min(k, scores.shape[1])]
    return float(np.take_along_axis(positives, order, axis=1).any(axis=1).mean())


def l2_normalize(x: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero)."""
    x = np.asarray(x, dtype=dtype)
    if x.ndim != 2:
        raise ValueError(f"features must be (items, dim), got shape {x.shape}")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def recall_at_k(
    query_feats: np.ndarray,
    query_labels: Sequence,
    gallery_feats: np.ndarray,
    gallery_labels: Sequence,
    ks: Sequence[int] = (1, 5, 10, 20, 50),
    chunk: int = 1024,
) -> dict[int, float]:
    """Retrieval recall@k with cosine similarity (brute force).

    A query is a hit at k when any of its k most similar gallery items shares its label; ties in
    similarity are broken by gallery order (lower index first). ``k`` larger than the gallery means
    the whole gallery. Returns ``{k: fraction of queries that hit}``.
    """
    q = l2_normalize(query_feats)
    g = l2_normalize(gallery_feats)
    if q.shape[1] != g.shape[1]:
        raise ValueError("query and gallery features have different dimensions")
    ql, gl = np.asarray(query_labels), np.asarray(gallery_labels)
    if ql.shape[0] != q.shape[0] or gl.shape[0] != g.shape[0]:
        raise ValueError("one label per query and per gallery item is needed")
    ks = [int(k) for k in ks]
    if any(k < 1 for k in ks):
        raise ValueError("every k must be a positive integer")
    if q.shape[0] == 0 or g.shape[0] == 0:
        return {k: 0.0 for k in ks}
    # rank of the first gallery item sharing the query's class (inf when none does)
    first_hit = np.full(q.shape[0], np.inf)
    for start in range(0, q.shape[0], chunk):
        sim = q[start : start + chunk] @ g.T
        order = np.argsort(-sim, axis=1, kind="stable")
        same = gl[order] == ql[start : start + chunk, None]
        any_hit = same.any(axis=1)
        first_hit[start : start + chunk][any_hit] = same.argmax(axis=1)[any_hit]
    return {k: float(np.mean(first_hit < k)) for k in ks}


def confusion_matrix(
    y_true: Sequence[int], y_pred: Sequence[int], num_classes: int | None = None
) -> np.ndarray:
    """``(C, C)`` counts: row = true class, column = predicted class."""
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError("y_true and y_pred must have the same length")
    if num_classes is None:
        num_classes = int(max(t.max(initial=-1), p.max(initial=-1)) + 1)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise ValueError(f"class index out of range [0, {num_classes})")
    out = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(out, (t, p), 1)
    return out
