"""Metrics against brute-force references (python loops over the definitions)."""

from __future__ import annotations

import numpy as np
import pytest

from ssl_video.evaluation.metrics import (
    average_precision,
    confusion_matrix,
    global_average_precision,
    mean_average_precision,
    recall_at_k,
    topk_accuracy,
)


def brute_ap(items, total_positives):
    """items: (score, is_positive). Each positive gets precision over every item scoring >= its score."""
    if total_positives == 0:
        return 0.0
    ap = 0.0
    for score, positive in items:
        if positive:
            at_or_above = [p for s, p in items if s >= score]
            ap += sum(at_or_above) / len(at_or_above)
    return ap / total_positives


def brute_gap(scores, labels, top_k):
    pooled = []
    total = 0
    for v in range(scores.shape[0]):
        ranked = sorted(range(scores.shape[1]), key=lambda c: (-scores[v, c], c))
        pooled += [(scores[v, c], bool(labels[v, c])) for c in ranked[:top_k]]
        total += int(labels[v].sum())
    return brute_ap(pooled, total)


def youtube8m_gap_without_ties(scores, labels, top_k):
    """The published recipe, step by step (valid when no two pooled scores are equal)."""
    pooled = []
    for v in range(scores.shape[0]):
        top = np.argsort(-scores[v])[:top_k]
        pooled += [(scores[v, c], labels[v, c]) for c in top]
    pooled.sort(key=lambda t: -t[0])
    total = labels.sum()
    ap, hits = 0.0, 0
    for i, (_, positive) in enumerate(pooled):
        if positive:
            hits += 1
            ap += hits / (i + 1) / total
    return ap


@pytest.mark.parametrize("seed", range(8))
def test_gap_matches_brute_force_with_ties_and_empty_videos(seed):
    rng = np.random.default_rng(seed)
    videos, classes = rng.integers(1, 12), rng.integers(1, 9)
    scores = rng.integers(0, 4, size=(videos, classes)) / 4.0  # coarse: many ties
    labels = (rng.random((videos, classes)) < 0.3).astype(int)
    labels[0] = 0  # a video without positives
    for top_k in (1, 3, 20):
        expected = brute_gap(scores, labels, top_k)
        assert global_average_precision(scores, labels, top_k=top_k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_gap_equals_youtube8m_recipe_without_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.random((30, 25))
    labels = (rng.random((30, 25)) < 0.1).astype(int)
    labels[3] = 0
    labels[4, :22] = 1  # more positives than top_k: their recall is capped
    for top_k in (5, 20):
        expected = youtube8m_gap_without_ties(scores, labels, top_k)
        assert global_average_precision(scores, labels, top_k) == pytest.approx(expected, abs=1e-12)
        assert brute_gap(scores, labels, top_k) == pytest.approx(expected, abs=1e-12)


def test_gap_small_cases():
    perfect = np.array([[0.9, 0.1, 0.2], [0.1, 0.8, 0.7]])
    labels = np.array([[1, 0, 0], [0, 1, 1]])
    assert global_average_precision(perfect, labels) == pytest.approx(1.0)
    assert global_average_precision(perfect, np.zeros_like(labels)) == 0.0
    # pooled ranking: 0.9(+) 0.8(+) 0.7(-) ; the positive at 0.05 is outside top-2 of video 1
    scores = np.array([[0.9, 0.1, 0.2], [0.05, 0.8, 0.7]])
    labels = np.array([[1, 0, 0], [1, 1, 0]])
    assert global_average_precision(scores, labels, top_k=2) == pytest.approx((1 + 1) / 3)
    # a tie between a negative and a positive: the positive gets precision 1/2
    assert global_average_precision(np.array([[0.5, 0.5]]), np.array([[0, 1]])) == pytest.approx(0.5)
    # class indices as labels are accepted too
    assert global_average_precision(perfect, np.array([0, 1]), top_k=1) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(4))
def test_map_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=(15, 6)) / 5.0
    labels = (rng.random((15, 6)) < 0.3).astype(int)
    labels[:, 2] = 0  # a class without positives is left out
    expected = np.mean(
        [
            brute_ap(list(zip(scores[:, c], labels[:, c] > 0)), labels[:, c].sum())
            for c in range(6)
            if labels[:, c].any()
        ]
    )
    assert mean_average_precision(scores, labels) == pytest.approx(expected, abs=1e-12)


def test_average_precision_does_not_depend_on_input_order():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, 40).astype(float)
    positives = rng.random(40) < 0.4
    perm = rng.permutation(40)
    assert average_precision(scores, positives) == pytest.approx(
        average_precision(scores[perm], positives[perm])
    )


def test_topk_accuracy():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.3, 0.3, 0.3]])
    labels = np.array([1, 2, 0])
    assert topk_accuracy(scores, labels, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(scores, labels, 2) == pytest.approx(1 / 3)  # row 3 ties: counted as a miss
    assert topk_accuracy(scores, labels, 3) == pytest.approx(1.0)
    multi = np.array([[0, 1, 1], [0, 0, 1], [1, 0, 0]])
    assert topk_accuracy(scores, multi, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(scores, multi, 10) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(4))
def test_recall_at_k_matches_loops(seed):
    rng = np.random.default_rng(seed)
    q, g = rng.normal(size=(9, 5)), rng.normal(size=(20, 5))
    ql, gl = rng.integers(0, 4, 9), rng.integers(0, 4, 20)
    ks = (1, 3, 5, 50)
    got = recall_at_k(q, ql, g, gl, ks, chunk=4)
    for k in ks:
        hits = 0
        for i in range(len(q)):
            sims = [float(q[i] @ g[j] / (np.linalg.norm(q[i]) * np.linalg.norm(g[j]))) for j in range(len(g))]
            nearest = sorted(range(len(g)), key=lambda j: -sims[j])[:k]
            hits += any(gl[j] == ql[i] for j in nearest)
        assert got[k] == pytest.approx(hits / len(q))


def test_recall_at_k_string_labels_and_scale_invariance():
    g = np.array([[1.0, 0.0], [0.0, 1.0]])
    q = np.array([[10.0, 1.0], [0.1, 3.0]])
    assert recall_at_k(q, ["a", "b"], g, ["a", "b"], ks=(1,)) == {1: 1.0}
    assert recall_at_k(q, ["b", "a"], g, ["a", "b"], ks=(1, 2)) == {1: 0.0, 2: 1.0}


def test_confusion_matrix():
    cm = confusion_matrix([0, 1, 2, 2], [0, 2, 2, 1], num_classes=4)
    assert cm.shape == (4, 4)
    assert cm[0, 0] == 1 and cm[1, 2] == 1 and cm[2, 2] == 1 and cm[2, 1] == 1 and cm.sum() == 4
    assert confusion_matrix([1], [0]).shape == (2, 2)
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 0], num_classes=3)
