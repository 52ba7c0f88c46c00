"""PNG plots for evaluation reports (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["split_bars", "confused_pairs_chart", "loss_curves", "accuracy_comparison", "view_contributions_chart"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def split_bars(path: Path, per_split: dict[str, dict], keys: list[str], title: str) -> Path:
    """Grouped bars: one group per metric, one bar per split, plus the mean with a std error bar."""
    plt = _pyplot()
    splits = list(per_split)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(keys), 3.6))
    width = 0.8 / (len(splits) + 1)
    x = np.arange(len(keys))
    for i, s in enumerate(splits):
        ax.bar(x + i * width, [per_split[s][k] for k in keys], width, label=f"split {s}")
    means = [np.mean([per_split[s][k] for s in splits]) for k in keys]
    stds = [np.std([per_split[s][k] for s in splits]) for k in keys]
    ax.bar(x + len(splits) * width, means, width, yerr=stds, capsize=4, color="black", alpha=0.7, label="mean ± std")
    ax.set_xticks(x + width * len(splits) / 2, keys)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return _save(plt, fig, path)


def confused_pairs_chart(path: Path, confusion: np.ndarray, classes: list[str], n: int = 10) -> Path | None:
    """Horizontal bars of the ``n`` most frequent (true -> predicted) mistakes, summed over splits."""
    off = confusion.astype(float).copy()
    np.fill_diagonal(off, 0)
    order = [i for i in np.argsort(-off, axis=None, kind="stable")[:n] if off.flat[i] > 0]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 0.4 * max(len(order), 1) + 1.2))
    if order:
        labels = [f"{classes[t]} → {classes[p]}" for t, p in (np.unravel_index(i, off.shape) for i in order)]
        ax.barh(range(len(order))[::-1], [off.flat[i] for i in order])
        ax.set_yticks(range(len(order))[::-1], labels, fontsize=8)
        ax.set_xlabel("test videos (all splits)")
    else:
        ax.text(0.5, 0.5, "no mistakes", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title("Most confused class pairs (true → predicted)")
    return _save(plt, fig, path)


def loss_curves(path: Path, metrics: list[dict], keys: list[str], title: str) -> Path:
    """Training curves: each of ``keys`` found in the metric rows (``metrics.jsonl``) against the step."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for key in keys:
        points = [(row["step"], row[key]) for row in metrics if key in row and "step" in row]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    if ax.lines:
        ax.legend(fontsize=8)
    return _save(plt, fig, path)


def accuracy_comparison(path: Path, results: dict[str, dict[str, dict]], key: str, title: str) -> Path:
    """One group of bars per split plus the mean (with a std error bar); one bar per entry of ``results``."""
    plt = _pyplot()
    names = list(results)
    splits = list(next(iter(results.values())))
    groups = [f"split {s}" for s in splits] + ["mean"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(groups), 3.6))
    width = 0.8 / len(names)
    x = np.arange(len(groups))
    for i, name in enumerate(names):
        values = [results[name][s][key] for s in splits]
        heights = values + [float(np.mean(values))]
        errors = [0.0] * len(values) + [float(np.std(values))]
        bars = ax.bar(x + i * width, heights, width, yerr=errors, capsize=4, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x + width * (len(names) - 1) / 2, groups)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(key)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    return _save(plt, fig, path)


def view_contributions_chart(path: Path, contributions: dict, title: str = "") -> Path:
    """Stacked horizontal bars: the share of each view (H-W, T-W, T-H) in every CoST layer
    (``contributions``: layer name -> 3 mean softmax coefficients, from ``models.cost.view_contributions``)."""
    import torch

    from ssl_video.models.cost import VIEW_NAMES

    plt = _pyplot()
    names = list(contributions)
    shares = torch.stack([contributions[name].float().cpu() for name in names]).numpy()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.6))
    left = np.zeros(len(names))
    for view, colour in zip(range(3), ("tab:blue", "tab:orange", "tab:green"), strict=True):
        ax.barh(names, shares[:, view], left=left, color=colour, label=VIEW_NAMES[view])
        left = left + shares[:, view]
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("mean softmax coefficient (share of the layer's output)")
    ax.legend(ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    if title:
        fig.suptitle(title, fontsize=9, y=0.995)
    return _save(plt, fig, Path(path))
