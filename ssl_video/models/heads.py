"""Heads on top of encoders and of pooled features.

* :class:`ProjectionHead` — the STiCA/GDT projection MLP: Dropout, Linear (no bias), BatchNorm, ReLU,
  Dropout, Linear, L2-normalise (published: dropout 0.3, 512 -> 512 -> 256).
* classifiers on pooled clip features (LOUPE, Attention Clusters): ``ContextGating``
  (``Y = sigmoid(W X + b) * X``), ``MixtureOfExperts``, ``PooledClassifier`` (a pooling head of
  :mod:`ssl_video.models.pooling` -> FC -> gating -> classifier -> gating) and ``TwoStreamClassifier``
  (one pooling per stream, late fusion by concatenation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_video.models.pooling import cluster_kwargs, create_pooling_head

__all__ = ["ProjectionHead", "ContextGating", "MixtureOfExperts", "PooledClassifier", "TwoStreamClassifier"]


class ProjectionHead(nn.Module):
    """``Dropout -> Linear(in, hidden, bias=False) -> BatchNorm1d -> ReLU -> Dropout -> Linear(hidden, out)``,
    then L2 normalisation (``normalize=True``). ``hidden=None`` uses ``in_dim``."""

    def __init__(self, in_dim: int = 512, hidden: int | None = 512, out_dim: int = 256, dropout: float = 0.3,
                 normalize: bool = True):
        super().__init__()
        hidden = hidden or in_dim
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(in_dim, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, out_dim),
        )
        self.normalize = normalize
        self.output_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        z = self.net(x)
        return F.normalize(z, dim=1) if self.normalize else z


# ----------------------------------------------------------------------------------------------------
# classifiers on pooled features


class ContextGating(nn.Module):
    """``Y = sigmoid(W X + b) * X`` (element-wise)."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.fc(x)) * x


class MixtureOfExperts(nn.Module):
    """Per-class mixture of logistic experts; returns probabilities ``(B, C)`` in [0, 1].

    ``p(c | x) = sum_e g_e(c, x) sigmoid(u_e(c) . x)`` where the gate is a softmax over
    ``experts + 1`` choices, the extra one a dummy expert that always says 0.
    """

    def __init__(self, in_dim: int, num_classes: int, experts: int = 2):
        super().__init__()
        self.num_classes, self.experts = num_classes, experts
        self.gates = nn.Linear(in_dim, num_classes * (experts + 1))
        self.experts_fc = nn.Linear(in_dim, num_classes * experts)

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.softmax(self.gates(x).unflatten(-1, (self.num_classes, self.experts + 1)), dim=-1)
        expert = torch.sigmoid(self.experts_fc(x).unflatten(-1, (self.num_classes, self.experts)))
        return (gate[..., : self.experts] * expert).sum(dim=-1)


def _probabilities_to_logits(p: Tensor, eps: float = 1e-6) -> Tensor:
    p = p.clamp(eps, 1.0 - eps)
    return torch.log(p) - torch.log1p(-p)


class _Classifier(nn.Module):
    """FC -> BN -> [ReLU] -> [gating] -> linear or MoE -> [gating]; returns logits."""

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        hidden: int,
        gating: bool,
        classifier: str,
        experts: int,
        dropout: float,
        relu: bool,
    ):
        super().__init__()
        if classifier not in ("linear", "moe"):
            raise ValueError(f"classifier must be 'linear' or 'moe', got {classifier!r}")
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, hidden, bias=False)
        self.norm = nn.BatchNorm1d(hidden)
        self.relu = relu
        self.gate = ContextGating(hidden) if gating else None
        self.kind = classifier
        self.classifier = (
            nn.Linear(hidden, num_classes)
            if classifier == "linear"
            else MixtureOfExperts(hidden, num_classes, experts)
        )
        self.output_gate = ContextGating(num_classes) if gating else None

    def forward(self, z: Tensor) -> Tensor:
        z = self.norm(self.fc(self.dropout(z)))
        if self.relu:
            z = F.relu(z)
        if self.gate is not None:
            z = self.gate(z)
        out = self.classifier(z)
        if self.output_gate is not None:
            out = self.output_gate(out)  # on probabilities for MoE, on logits for a linear classifier
        return _probabilities_to_logits(out) if self.kind == "moe" else out


class PooledClassifier(nn.Module):
    """One stream: ``pool -> FC(hidden) -> BN -> [gating] -> classifier -> [gating]``.

    ``classifier="moe"`` uses :class:`MixtureOfExperts` (its probabilities, gated as in the paper, are
    returned as logits ``log(p / (1 - p))`` so that every model trains with the same losses).
    ``forward(x, mask)`` returns logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        pool: nn.Module,
        num_classes: int,
        hidden: int = 1024,
        gating: bool = True,
        classifier: str = "linear",
        experts: int = 2,
        dropout: float = 0.0,
        relu: bool = False,
    ):
        super().__init__()
        self.pool = pool
        self.head = _Classifier(
            pool.output_dim, num_classes, hidden, gating, classifier, experts, dropout, relu
        )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.head(self.pool(x, mask))


class TwoStreamClassifier(nn.Module):
    """Video + audio: one pooling per stream, late fusion by concatenation, then as :class:`PooledClassifier`.

    Gating sits after the fused FC and after the classifier. Cluster-based heads use ``clusters`` for the
    video stream and ``audio_clusters`` (default ``clusters // 2``) for the audio stream.
    """

    def __init__(
        self,
        video_dim: int,
        audio_dim: int,
        num_classes: int,
        head: str = "netvlad",
        clusters: int = 64,
        audio_clusters: int | None = None,
        hidden: int = 1024,
        gating: bool = True,
        classifier: str = "moe",
        experts: int = 2,
        dropout: float = 0.0,
        relu: bool = False,
        **head_kwargs,
    ):
        super().__init__()
        audio_clusters = audio_clusters or max(1, clusters // 2)
        self.video_pool = create_pooling_head(
            head, video_dim, **cluster_kwargs(head, clusters), **head_kwargs
        )
        self.audio_pool = create_pooling_head(
            head, audio_dim, **cluster_kwargs(head, audio_clusters), **head_kwargs
        )
        fused = self.video_pool.output_dim + self.audio_pool.output_dim
        self.head = _Classifier(fused, num_classes, hidden, gating, classifier, experts, dropout, relu)

    def forward(
        self, video: Tensor, audio: Tensor, video_mask: Tensor | None = None, audio_mask: Tensor | None = None
    ) -> Tensor:
        fused = torch.cat([self.video_pool(video, video_mask), self.audio_pool(audio, audio_mask)], dim=1)
        return self.head(fused)
