"""Linear probe: multinomial logistic regression on frozen, L2-normalised video features.

Per split: the L2 penalty is chosen on a held-out part of that split's training set (a quarter by
default; whole UCF101 groups ``gXX`` are held out together so clips of one source video never sit on both
sides), the classifier is refitted on the whole training set with the chosen penalty, and the test set
is scored once. Fitting is full-batch L-BFGS, deterministic for given inputs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from ssl_video.evaluation.metrics import confusion_matrix, l2_normalize, topk_accuracy
from ssl_video.evaluation.settings import ProbeSettings

__all__ = ["ProbeSettings", "fit_logistic_regression", "predict_scores", "holdout_split", "select_l2",
           "probe_split"]

_GROUP = re.compile(r"_g(\d+)_c\d+")


def fit_logistic_regression(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float,
                            max_iter: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Minimise mean cross-entropy + ``l2 * ||W||^2`` (bias unpenalised); returns ``(W (D x C), b (C))``."""
    xt = torch.as_tensor(x, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.long)
    weight = torch.zeros(xt.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ weight + bias, yt) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach().numpy(), bias.detach().numpy()


def predict_scores(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64) @ weight + bias


def holdout_split(video_ids: Sequence[str], labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the held-out part: per class, about ``fraction`` of its groups (UCF101-style
    ``_gXX_`` ids) or of its videos, at least one kept on each side when the class has two or more."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    groups = np.array([(m.group(1) if (m := _GROUP.search(v)) else v) for v in video_ids])
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        keys = np.unique(groups[members])
        if len(keys) < 2:
            keys = np.array([str(i) for i in members])
            member_keys = keys
        else:
            member_keys = groups[members]
        count = min(len(keys) - 1, max(1, int(round(fraction * len(keys)))))
        if count < 1:
            continue
        chosen = set(rng.choice(keys, size=count, replace=False).tolist())
        held[members[[k in chosen for k in member_keys]]] = True
    return held


def select_l2(x: np.ndarray, y: np.ndarray, video_ids: Sequence[str], num_classes: int,
              settings: ProbeSettings) -> tuple[float, dict[float, float]]:
    """The penalty with the best held-out top-1 (ties: the stronger penalty); and every grid score."""
    held = holdout_split(video_ids, y, settings.holdout_fraction, settings.seed)
    if held.all() or not held.any():
        return settings.l2_grid[len(settings.l2_grid) // 2], {}
    scores = {}
    for l2 in settings.l2_grid:
        w, b = fit_logistic_regression(x[~held], y[~held], num_classes, l2, settings.max_iter)
        scores[l2] = topk_accuracy(predict_scores(x[held], w, b), y[held], 1)
    best = max(scores.values())
    return max(l2 for l2, s in scores.items() if s == best), scores


def probe_split(train_x: np.ndarray, train_y: np.ndarray, train_ids: Sequence[str], test_x: np.ndarray,
                test_y: np.ndarray, num_classes: int, settings: ProbeSettings) -> dict:
    """Fit on one split's training set (penalty chosen on its held-out part) and score its test set."""
    train_x, test_x = l2_normalize(train_x, np.float32), l2_normalize(test_x, np.float32)
    l2, grid = select_l2(train_x, train_y, train_ids, num_classes, settings)
    w, b = fit_logistic_regression(train_x, train_y, num_classes, l2, settings.max_iter)
    scores = predict_scores(test_x, w, b)
    return {
        "top1": topk_accuracy(scores, test_y, 1),
        "top5": topk_accuracy(scores, test_y, min(5, num_classes)),
        "l2": l2,
        "holdout_top1": {str(k): v for k, v in grid.items()},
        "train_videos": int(len(train_y)),
        "test_videos": int(len(test_y)),
        "confusion": confusion_matrix(test_y, scores.argmax(1), num_classes),
    }
