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

from ssl_video.models.pooling import (
    MaskedBatchNorm1d,
    cluster_kwargs,
    create_pooling_head,
    use_batch_norm_numerics,
)

__all__ = ["ProjectionHead", "ContextGating", "MixtureOfExperts", "TanhMLPClassifier", "PooledClassifier",
           "TwoStreamClassifier", "CLASSIFIERS"]


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
    """``Y = sigmoid(W X + b) * X`` (element-wise); ``batch_norm=True``: ``Y = sigmoid(BN(W X)) * X`` without a
    bias, as the official code does whenever batch norm is on (LOUPE ``loupe.py`` ``context_gating``)."""

    def __init__(self, dim: int, batch_norm: bool = False):
        super().__init__()
        self.fc = nn.Linear(dim, dim, bias=not batch_norm)
        self.norm = MaskedBatchNorm1d(dim) if batch_norm else None

    def official_init(self) -> None:
        """LOUPE ``context_gating`` (and WILLOW ``gating_prob_weights`` of the MoE output gating): weights
        N(0, 1/sqrt(dim)); the bias (no BN) N(0, 1/sqrt(dim))."""
        std = self.fc.in_features ** -0.5
        nn.init.normal_(self.fc.weight, std=std)
        if self.fc.bias is not None:
            nn.init.normal_(self.fc.bias, std=std)

    def forward(self, x: Tensor) -> Tensor:
        gates = self.fc(x)
        if self.norm is not None:
            gates = self.norm(gates)
        return torch.sigmoid(gates) * x


class MixtureOfExperts(nn.Module):
    """Per-class mixture of logistic experts; returns probabilities ``(B, C)`` in [0, 1].

    ``p(c | x) = sum_e g_e(c, x) sigmoid(u_e(c) . x)`` where the gate is a softmax over
    ``experts + 1`` choices, the extra one a dummy expert that always says 0. ``gate_bias=False``: the gate
    projection has no bias (official WILLOW ``video_level_models.py`` ``MoeModel``).
    """

    def __init__(self, in_dim: int, num_classes: int, experts: int = 2, gate_bias: bool = True):
        super().__init__()
        self.num_classes, self.experts = num_classes, experts
        self.gates = nn.Linear(in_dim, num_classes * (experts + 1), bias=gate_bias)
        self.experts_fc = nn.Linear(in_dim, num_classes * experts)

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.softmax(self.gates(x).unflatten(-1, (self.num_classes, self.experts + 1)), dim=-1)
        expert = torch.sigmoid(self.experts_fc(x).unflatten(-1, (self.num_classes, self.experts)))
        return (gate[..., : self.experts] * expert).sum(dim=-1)

    def official_init(self) -> None:
        """TF-slim ``fully_connected`` defaults (WILLOW ``MoeModel``): Glorot-uniform weights,
        ``U(-b, b)`` with ``b = sqrt(6 / (fan_in + fan_out))``, zero biases."""
        for fc in (self.gates, self.experts_fc):
            nn.init.xavier_uniform_(fc.weight)
            if fc.bias is not None:
                nn.init.zeros_(fc.bias)

    def l2_penalty(self) -> Tensor:
        """``(|W_gates|^2 + |W_experts|^2) / 2`` (TF-slim ``l2_regularizer`` on the weights, biases excluded)."""
        return 0.5 * (self.gates.weight.square().sum() + self.experts_fc.weight.square().sum())


def _probabilities_to_logits(p: Tensor, eps: float = 1e-6) -> Tensor:
    p = p.clamp(eps, 1.0 - eps)
    return torch.log(p) - torch.log1p(-p)


class TanhMLPClassifier(nn.Module):
    """The Attention Clusters reference head after concatenation: dropout -> FC 1024 tanh -> FC 4096 tanh ->
    FC to the classes (logits; the reference's logistic output is their sigmoid)."""

    def __init__(self, in_dim: int, num_classes: int, widths: tuple[int, ...] = (1024, 4096), dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        for width in widths:
            layers += [nn.Linear(in_dim, width), nn.Tanh()]
            in_dim = width
        layers.append(nn.Linear(in_dim, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


CLASSIFIERS = ("linear", "moe", "tanh_mlp")


class _Classifier(nn.Module):
    """FC -> [BN] -> [ReLU] -> [gating] -> linear or MoE -> [gating]; returns logits.

    ``hidden_bn``: the FC has no bias and is followed by BatchNorm (ours); ``False``: an FC with a bias and no
    BN (the published runs, ``netvlad_relu=False``). ``gating_bn``: Context Gating with BN and no bias.
    ``output_gating="ours"`` gates the classifier's output (MoE probabilities, or a linear classifier's
    logits) with :class:`ContextGating`; ``"official"`` gates only MoE probabilities, ``p * sigmoid(BN(p W))``
    (WILLOW ``moe_prob_gating``), and a linear classifier not at all. ``classifier="tanh_mlp"`` is the
    Attention Clusters reference head alone (no FC, BN or gating before it). ``init="official"``: the official
    initial values (:meth:`official_init`; ``clusters`` is the K of the hidden FC's).
    """

    def __init__(self, in_dim: int, num_classes: int, hidden: int, gating: bool, classifier: str, experts: int,
                 dropout: float, relu: bool, hidden_bn: bool = True, gating_bn: bool = False,
                 output_gating: str = "ours", moe_gate_bias: bool = True, init: str = "ours",
                 clusters: int | None = None):
        super().__init__()
        if classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {', '.join(CLASSIFIERS)}, got {classifier!r}")
        if output_gating not in ("ours", "official"):
            raise ValueError(f"output_gating must be 'ours' or 'official', got {output_gating!r}")
        if init not in ("ours", "official"):
            raise ValueError(f"classifier init must be 'ours' or 'official', got {init!r}")
        self.kind = classifier
        if classifier == "tanh_mlp":
            self.mlp = TanhMLPClassifier(in_dim, num_classes)
            return
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, hidden, bias=not hidden_bn)
        self.norm = MaskedBatchNorm1d(hidden) if hidden_bn else None
        self.relu = relu
        self.gate = ContextGating(hidden, batch_norm=gating_bn) if gating else None
        self.classifier = (
            nn.Linear(hidden, num_classes)
            if classifier == "linear"
            else MixtureOfExperts(hidden, num_classes, experts, gate_bias=moe_gate_bias)
        )
        if not gating or (output_gating == "official" and classifier != "moe"):
            self.output_gate = None
        else:
            self.output_gate = ContextGating(num_classes, batch_norm=gating_bn or output_gating == "official")
        if init == "official":
            self.official_init(clusters)

    def official_init(self, clusters: int | None) -> None:
        """WILLOW ``frame_level_models.py``: hidden FC weights N(0, 1/sqrt(K)) with K the video head's clusters
        (``hidden1_weights``; without ``clusters`` PyTorch's stay), its bias N(0, 0.01) (``hidden1_biases``); Context
        Gating, the MoE and the output gating as their ``official_init``. A linear classifier has no official one."""
        if clusters is not None:
            nn.init.normal_(self.fc.weight, std=clusters ** -0.5)
        if self.fc.bias is not None:
            nn.init.normal_(self.fc.bias, std=0.01)
        for module in (self.gate, self.classifier, self.output_gate):
            if hasattr(module, "official_init"):
                module.official_init()

    def forward(self, z: Tensor, probabilities: bool = False) -> Tensor:
        """Logits; ``probabilities=True``: the probabilities themselves (a MoE's as it computes them, before the
        clamp of the logit transform; otherwise the sigmoid of the logits)."""
        out = self.mlp(z) if self.kind == "tanh_mlp" else self._scores(z)
        if self.kind == "moe":
            return out if probabilities else _probabilities_to_logits(out)
        return torch.sigmoid(out) if probabilities else out

    def _scores(self, z: Tensor) -> Tensor:
        """MoE probabilities, or a linear classifier's logits."""
        z = self.fc(self.dropout(z))
        if self.norm is not None:
            z = self.norm(z)
        if self.relu:
            z = F.relu(z)
        if self.gate is not None:
            z = self.gate(z)
        out = self.classifier(z)
        if self.output_gate is not None:
            out = self.output_gate(out)  # on probabilities for MoE, on logits for a linear classifier
        return out

    def l2_penalty(self) -> Tensor | None:
        return self.classifier.l2_penalty() if self.kind == "moe" else None


def _input_norm(dim: int | None, enabled: bool) -> MaskedBatchNorm1d | None:
    if enabled and dim is None:
        raise ValueError("input_bn needs the feature dimension (input_dim)")
    return MaskedBatchNorm1d(dim) if enabled else None


class PooledClassifier(nn.Module):
    """One stream: ``[input BN] -> pool -> FC(hidden) -> [BN] -> [gating] -> classifier -> [gating]``.

    ``classifier="moe"`` uses :class:`MixtureOfExperts` (its probabilities, gated as in the paper, are
    returned as logits ``log(p / (1 - p))`` so that every model trains with the same losses).
    ``input_bn``: BatchNorm over the clip features (valid positions only) before pooling, as the official
    models do before the video/audio split. ``batch_norm_numerics="official"``: every BatchNorm of the model
    (pooling head's included) computes as TF-slim ``batch_norm`` (:func:`~ssl_video.models.pooling.
    use_batch_norm_numerics`). ``classifier_init="official"``: the official initial values of the block after
    pooling (``_Classifier.official_init``, K = the head's ``clusters``). The other options are those of
    ``_Classifier``. ``forward(x, mask)`` returns logits ``(B, num_classes)`` (``probabilities=True``: see
    ``_Classifier.forward``).
    """

    def __init__(self, pool: nn.Module, num_classes: int, hidden: int = 1024, gating: bool = True,
                 classifier: str = "linear", experts: int = 2, dropout: float = 0.0, relu: bool = False,
                 input_bn: bool = False, hidden_bn: bool = True, gating_bn: bool = False, output_gating: str = "ours",
                 moe_gate_bias: bool = True, input_dim: int | None = None, batch_norm_numerics: str = "ours",
                 classifier_init: str = "ours"):
        super().__init__()
        self.input_norm = _input_norm(input_dim or getattr(pool, "dim", None), input_bn)
        self.pool = pool
        self.head = _Classifier(pool.output_dim, num_classes, hidden, gating, classifier, experts, dropout, relu,
                                hidden_bn, gating_bn, output_gating, moe_gate_bias, init=classifier_init,
                                clusters=getattr(pool, "clusters", None))
        use_batch_norm_numerics(self, batch_norm_numerics)

    def forward(self, x: Tensor, mask: Tensor | None = None, probabilities: bool = False) -> Tensor:
        return self.head(self.pool(_normalise(self.input_norm, x, mask), mask), probabilities)

    def l2_penalty(self) -> Tensor | None:
        return self.head.l2_penalty()


class TwoStreamClassifier(nn.Module):
    """Video + audio: one pooling per stream, late fusion by concatenation, then as :class:`PooledClassifier`.

    Gating sits after the fused FC and after the classifier. Cluster-based heads use ``clusters`` for the
    video stream and ``audio_clusters`` (default ``clusters // 2``) for the audio stream. ``input_bn``
    normalises each stream's features (per channel: the same as the official BN over the concatenated
    frame features before the split). ``batch_norm_numerics`` and ``classifier_init`` as in
    :class:`PooledClassifier` (K of the hidden FC's official initialisation: the video head's clusters).
    """

    def __init__(self, video_dim: int, audio_dim: int, num_classes: int, head: str = "netvlad", clusters: int = 64,
                 audio_clusters: int | None = None, hidden: int = 1024, gating: bool = True, classifier: str = "moe",
                 experts: int = 2, dropout: float = 0.0, relu: bool = False, input_bn: bool = False,
                 hidden_bn: bool = True, gating_bn: bool = False, output_gating: str = "ours",
                 moe_gate_bias: bool = True, batch_norm_numerics: str = "ours", classifier_init: str = "ours",
                 **head_kwargs):
        super().__init__()
        audio_clusters = audio_clusters or max(1, clusters // 2)
        self.video_norm = _input_norm(video_dim, input_bn)
        self.audio_norm = _input_norm(audio_dim, input_bn)
        self.video_pool = create_pooling_head(head, video_dim, **cluster_kwargs(head, clusters), **head_kwargs)
        self.audio_pool = create_pooling_head(head, audio_dim, **cluster_kwargs(head, audio_clusters), **head_kwargs)
        fused = self.video_pool.output_dim + self.audio_pool.output_dim
        self.head = _Classifier(fused, num_classes, hidden, gating, classifier, experts, dropout, relu, hidden_bn,
                                gating_bn, output_gating, moe_gate_bias, init=classifier_init,
                                clusters=getattr(self.video_pool, "clusters", None))
        use_batch_norm_numerics(self, batch_norm_numerics)

    def forward(
        self, video: Tensor, audio: Tensor, video_mask: Tensor | None = None, audio_mask: Tensor | None = None,
        probabilities: bool = False,
    ) -> Tensor:
        video = self.video_pool(_normalise(self.video_norm, video, video_mask), video_mask)
        audio = self.audio_pool(_normalise(self.audio_norm, audio, audio_mask), audio_mask)
        return self.head(torch.cat([video, audio], dim=1), probabilities)

    def l2_penalty(self) -> Tensor | None:
        return self.head.l2_penalty()


def _normalise(norm: MaskedBatchNorm1d | None, x: Tensor, mask: Tensor | None) -> Tensor:
    return x if norm is None else norm(x, mask)
