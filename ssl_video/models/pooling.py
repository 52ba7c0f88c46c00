"""Pooling heads: aggregate a sequence of clip (or frame) features into one vector per video.

Every head takes ``x`` of shape ``(B, N, D)`` and an optional boolean ``mask`` of shape ``(B, N)``
(``True`` = a real clip, ``False`` = padding) and returns ``(B, head.output_dim)``. Padded positions
never influence the output, whatever values they hold: they are zeroed on entry, excluded from every
sum, softmax and maximum, and from the batch statistics of the BatchNorm inside the soft assignment.
Each video needs at least one valid position.

Heads (definitions from the papers, see REFERENCE §4):

* learnable pooling (Miech, Laptev, Sivic 2017): soft assignment ``a = softmax(BN(X W))`` over
  K clusters, then ``NetVLAD`` (assignment-weighted residuals to learned centres, intra-normalised per
  cluster, then L2-normalised), ``NetRVLAD`` (the same without centres), ``NetFV`` (first and second
  order statistics with learned per-cluster standard deviations ``sigma = w^2 + 1e-6``) and ``NetBoW``
  (soft bag of words: summed assignments, L2-normalised);
* ``AttentionClusters`` (Long et al. 2018): K attention units, each a softmax-weighted average over the
  unordered features, optionally followed by the shifting operation
  ``o_k = (alpha_k v_k + beta_k) / (||alpha_k v_k + beta_k||_2 sqrt(K))``;
* ``TransformerPool`` (STiCA): post-LayerNorm self-attention layers over the time tokens, queries and
  keys projected, values and output identity, token 0 (the first valid one) is the output;
* ``AvgPool``, ``MaxPool``, ``LSTMPool``, ``GRUPool`` (final hidden state of a packed sequence).

Heads are created by name with :func:`create_pooling_head`. :class:`CropPooling` pools a crop of a video
feature map (``B x C x T x H x W``) into one vector for STiCA (average, or :class:`TransformerPool` over
its tokens; see the class). The classifiers built on these heads live in :mod:`ssl_video.models.heads`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "MaskedBatchNorm1d",
    "use_batch_norm_numerics",
    "l2_normalize",
    "SoftAssignment",
    "NetVLAD",
    "NetRVLAD",
    "NetFV",
    "NetBoW",
    "AttentionClusters",
    "TransformerPool",
    "AvgPool",
    "MaxPool",
    "LSTMPool",
    "GRUPool",
    "CropPooling",
    "register_pooling_head",
    "create_pooling_head",
    "list_pooling_heads",
    "pooling_head_options",
    "count_parameters",
]


# ----------------------------------------------------------------------------------------------------
# masks


def full_mask(x: Tensor, mask: Tensor | None) -> Tensor:
    """The boolean mask ``(B, N)`` of ``x`` (all ``True`` when ``mask`` is ``None``)."""
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if mask.shape != x.shape[:2]:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match features {tuple(x.shape[:2])}")
    return mask.to(device=x.device, dtype=torch.bool)


def zero_padding(x: Tensor, mask: Tensor) -> Tensor:
    """``x`` with padded positions set to 0 (so NaN or huge padding values cannot leak)."""
    return x.masked_fill(~mask.unsqueeze(-1), 0.0)


def masked_softmax(scores: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Softmax of ``scores`` over ``dim`` where positions with ``mask == False`` get weight 0."""
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=dim)


def prefix_compact(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Move the valid positions of each row to the front (order kept); returns ``(x, lengths)``."""
    lengths = mask.sum(dim=1)
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
    x = torch.gather(x, 1, order.unsqueeze(-1).expand_as(x))
    return x, lengths


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over the channel axis of ``(B, N, C)`` (or ``(B, C)``) whose statistics use valid positions only.

    In training mode the mean and variance are taken over the valid rows (padding excluded), and the
    running statistics are updated from those rows; padded outputs are 0.

    :meth:`use_official_numerics` switches to TF-slim ``batch_norm`` as the official LOUPE/WILLOW code calls it:
    epsilon 1e-3, moving averages with decay 0.999 (momentum 1e-3), the moving variance following the biased
    batch variance (the non-fused TF 1.x kernel) where PyTorch uses the unbiased one.
    """

    biased_running_var = False

    def use_official_numerics(self) -> None:
        self.eps, self.momentum, self.biased_running_var = 1e-3, 1e-3, True

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        if mask is None:
            return self._rows(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        out = x.new_zeros(x.shape)
        out[mask] = self._rows(x[mask])
        return out

    def _rows(self, x: Tensor) -> Tensor:
        """BatchNorm of ``(M, C)`` rows."""
        if not (self.training and self.biased_running_var):
            return super().forward(x)
        with torch.no_grad():
            stats = x.detach().to(self.running_mean.dtype)
            self.running_mean.lerp_(stats.mean(dim=0), self.momentum)
            self.running_var.lerp_(stats.var(dim=0, unbiased=False), self.momentum)
            self.num_batches_tracked.add_(1)
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


def use_batch_norm_numerics(module: nn.Module, numerics: Literal["ours", "official"]) -> None:
    """``"official"``: every :class:`MaskedBatchNorm1d` inside ``module`` computes as TF-slim ``batch_norm``
    (see :meth:`MaskedBatchNorm1d.use_official_numerics`); ``"ours"`` leaves PyTorch's (eps 1e-5, momentum 0.1)."""
    if numerics not in ("ours", "official"):
        raise ValueError(f"batch norm numerics must be 'ours' or 'official', got {numerics!r}")
    if numerics == "official":
        for m in module.modules():
            if isinstance(m, MaskedBatchNorm1d):
                m.use_official_numerics()


def l2_normalize(x: Tensor, dim: int, eps: Literal["ours", "official"] = "ours") -> Tensor:
    """L2 normalisation along ``dim``: ``"ours"`` is ``F.normalize`` (the norm floored at 1e-12), ``"official"``
    TF's ``tf.nn.l2_normalize``, ``x * rsqrt(max(sum(x^2), 1e-12))`` (the norm floored at 1e-6)."""
    if eps == "official":
        return x * torch.rsqrt(x.square().sum(dim=dim, keepdim=True).clamp_min(1e-12))
    if eps != "ours":
        raise ValueError(f"l2_eps must be 'ours' or 'official', got {eps!r}")
    return F.normalize(x, dim=dim)


# ----------------------------------------------------------------------------------------------------
# learnable pooling: the NetVLAD family


class SoftAssignment(nn.Module):
    """``a = softmax(BN(X W))`` over ``clusters``; rows of padded positions are 0.

    Without batch norm the projection has a bias instead.
    """

    def __init__(self, dim: int, clusters: int, batch_norm: bool = True):
        super().__init__()
        self.proj = nn.Linear(dim, clusters, bias=not batch_norm)
        nn.init.normal_(self.proj.weight, std=1.0 / math.sqrt(dim))
        if self.proj.bias is not None:
            nn.init.normal_(self.proj.bias, std=1.0 / math.sqrt(dim))
        self.norm = MaskedBatchNorm1d(clusters) if batch_norm else None

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        z = self.proj(x)
        if self.norm is not None:
            z = self.norm(z, mask)
        a = torch.softmax(z, dim=-1)
        return a * mask.unsqueeze(-1).to(a.dtype)


class _ClusterPool(nn.Module):
    """Soft assignment shared by the NetVLAD family. ``l2_eps``: the floor of every L2 normalisation, ``"ours"``
    (``F.normalize``) or ``"official"`` (TF ``tf.nn.l2_normalize``, see :func:`l2_normalize`)."""

    def __init__(self, dim: int, clusters: int = 64, batch_norm: bool = True,
                 l2_eps: Literal["ours", "official"] = "ours"):
        super().__init__()
        if dim < 1 or clusters < 1:
            raise ValueError("dim and clusters must be positive")
        if l2_eps not in ("ours", "official"):
            raise ValueError(f"l2_eps must be 'ours' or 'official', got {l2_eps!r}")
        self.dim = dim
        self.clusters = clusters
        self.l2_eps = l2_eps
        self.assign = SoftAssignment(dim, clusters, batch_norm)

    def _prepare(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        mask = full_mask(x, mask)
        x = zero_padding(x, mask)
        return x, self.assign(x, mask)

    def _intra_then_global_l2(self, v: Tensor) -> Tensor:
        """``(B, K, D)`` -> L2 over D per cluster, flatten, L2 over everything."""
        return l2_normalize(l2_normalize(v, 2, self.l2_eps).flatten(1), 1, self.l2_eps)


class NetVLAD(_ClusterPool):
    """``v_k = sum_i a_ik (x_i - c_k)``; intra-normalised, flattened, L2-normalised. Output ``K * D``."""

    def __init__(self, dim: int, clusters: int = 64, batch_norm: bool = True,
                 l2_eps: Literal["ours", "official"] = "ours"):
        super().__init__(dim, clusters, batch_norm, l2_eps)
        self.centers = nn.Parameter(torch.randn(clusters, dim) / math.sqrt(dim))
        self.output_dim = clusters * dim

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x, a = self._prepare(x, mask)
        v = torch.einsum("bnk,bnd->bkd", a, x) - a.sum(dim=1).unsqueeze(-1) * self.centers
        return self._intra_then_global_l2(v)


class NetRVLAD(_ClusterPool):
    """Residual-less VLAD: ``v_k = sum_i a_ik x_i``; same normalisation as NetVLAD. Output ``K * D``."""

    def __init__(self, dim: int, clusters: int = 64, batch_norm: bool = True,
                 l2_eps: Literal["ours", "official"] = "ours"):
        super().__init__(dim, clusters, batch_norm, l2_eps)
        self.output_dim = clusters * dim

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x, a = self._prepare(x, mask)
        return self._intra_then_global_l2(torch.einsum("bnk,bnd->bkd", a, x))


class NetFV(_ClusterPool):
    """Learnable Fisher vector. Output ``2 * K * D``: ``[first order, second order]``.

    With ``sigma_k = w_k^2 + 1e-6`` (per cluster and dimension):
    ``f1_k = sum_i a_ik (x_i - c_k) / sigma_k`` and ``f2_k = sum_i a_ik ((x_i - c_k)^2 / sigma_k^2 - 1)``;
    the first order is intra-normalised per cluster, flattened and L2-normalised; the second order too with
    ``second_order="intra"`` (ours), or only flattened and L2-normalised with ``"global"`` (the official LOUPE
    ``loupe.py`` / WILLOW ``frame_level_models.py`` NetFV); then the two are concatenated.
    """

    def __init__(self, dim: int, clusters: int = 64, batch_norm: bool = True, eps: float = 1e-6,
                 second_order: Literal["intra", "global"] = "intra", l2_eps: Literal["ours", "official"] = "ours"):
        super().__init__(dim, clusters, batch_norm, l2_eps)
        if second_order not in ("intra", "global"):
            raise ValueError(f"second_order must be 'intra' or 'global', got {second_order!r}")
        self.second_order = second_order
        self.centers = nn.Parameter(torch.randn(clusters, dim) / math.sqrt(dim))
        self.covar = nn.Parameter(1.0 + torch.randn(clusters, dim) / math.sqrt(dim))
        self.eps = eps
        self.output_dim = 2 * clusters * dim

    def sigma(self) -> Tensor:
        return self.covar.square() + self.eps

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x, a = self._prepare(x, mask)
        sigma = self.sigma()
        mass = a.sum(dim=1).unsqueeze(-1)  # (B, K, 1)
        ax = torch.einsum("bnk,bnd->bkd", a, x)
        ax2 = torch.einsum("bnk,bnd->bkd", a, x.square())
        c = self.centers
        first = (ax - mass * c) / sigma
        # sum_i a_ik (x_i - c_k)^2 expanded so that no (B, N, K, D) tensor is built
        second = (ax2 - 2.0 * c * ax + mass * c.square()) / sigma.square() - mass
        if self.second_order == "intra":
            second = self._intra_then_global_l2(second)
        else:
            second = l2_normalize(second.flatten(1), 1, self.l2_eps)
        return torch.cat([self._intra_then_global_l2(first), second], dim=1)


class NetBoW(_ClusterPool):
    """Soft bag of visual words: ``sum_i a_ik``, L2-normalised. Output ``K``."""

    def __init__(self, dim: int, clusters: int = 64, batch_norm: bool = True,
                 l2_eps: Literal["ours", "official"] = "ours"):
        super().__init__(dim, clusters, batch_norm, l2_eps)
        self.output_dim = clusters

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        _, a = self._prepare(x, mask)
        return l2_normalize(a.sum(dim=1), 1, self.l2_eps)


# ----------------------------------------------------------------------------------------------------
# attention pooling


class AttentionClusters(nn.Module):
    """K attention units over unordered features, concatenated. Output ``K * D``.

    Unit k scores every position (``hidden == 0``: a learned query ``w_k . x_i``; ``hidden > 0``:
    ``w_k . tanh(W_k x_i + b_k)``), takes the masked softmax over positions and averages the features
    with those weights into ``v_k``. With ``shift`` each unit becomes
    ``(alpha_k v_k + beta_k) / (||alpha_k v_k + beta_k||_2 sqrt(K))`` with learnable scalars
    ``alpha_k`` and ``beta_k``: ``shift_init="ours"`` starts them at 1 and 0 (the identity before the
    normalisation), ``"official"`` draws both from N(0, K^(-1/4)) as the PaddlePaddle reference
    (``shifting_attention.py``: ``Normal(0.0, sqrt(1 / sqrt(n_att)))``, ``n_att`` the units of the stream).
    """

    def __init__(self, dim: int, clusters: int = 64, shift: bool = True, hidden: int = 0,
                 shift_init: Literal["ours", "official"] = "ours"):
        super().__init__()
        if shift_init not in ("ours", "official"):
            raise ValueError(f"shift_init must be 'ours' or 'official', got {shift_init!r}")
        self.dim, self.clusters, self.shift, self.hidden = dim, clusters, shift, hidden
        if hidden > 0:
            self.proj = nn.Linear(dim, clusters * hidden)
            self.query = nn.Parameter(torch.randn(clusters, hidden) / math.sqrt(hidden))
            self.query_bias = nn.Parameter(torch.zeros(clusters))
        else:
            self.proj = nn.Linear(dim, clusters)
        if shift:
            self.alpha = nn.Parameter(torch.ones(clusters))
            self.beta = nn.Parameter(torch.zeros(clusters))
            if shift_init == "official":
                nn.init.normal_(self.alpha, 0.0, clusters ** -0.25)
                nn.init.normal_(self.beta, 0.0, clusters ** -0.25)
        self.output_dim = clusters * dim

    def scores(self, x: Tensor) -> Tensor:
        """Attention logits ``(B, N, K)``."""
        if self.hidden > 0:
            h = torch.tanh(self.proj(x)).unflatten(-1, (self.clusters, self.hidden))
            return torch.einsum("bnkh,kh->bnk", h, self.query) + self.query_bias
        return self.proj(x)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        mask = full_mask(x, mask)
        x = zero_padding(x, mask)
        w = masked_softmax(self.scores(x), mask.unsqueeze(-1), dim=1)
        v = torch.einsum("bnk,bnd->bkd", w, x)
        if self.shift:
            v = self.alpha[:, None] * v + self.beta[:, None]
            v = F.normalize(v, dim=2) / math.sqrt(self.clusters)
        return v.flatten(1)


class _PostNormLayer(nn.Module):
    """Self-attention (q, k projected; v and output identity) + FFN, each followed by LayerNorm."""

    def __init__(self, width: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, width))
        self.dropout = nn.Dropout(dropout)
        self.attn_dropout = dropout

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, n, w = x.shape

        def split(t: Tensor) -> Tensor:
            return t.view(b, n, self.heads, w // self.heads).transpose(1, 2)

        attn = F.scaled_dot_product_attention(
            split(self.q(x)),
            split(self.k(x)),
            split(x),
            attn_mask=mask[:, None, None, :],
            dropout_p=self.attn_dropout if self.training else 0.0,
        )
        x = self.norm1(x + self.dropout(attn.transpose(1, 2).reshape(b, n, w)))
        return self.norm2(x + self.dropout(self.ffn(x)))


class TransformerPool(nn.Module):
    """STiCA transformer pooling over time tokens. Output ``width`` (``dim`` unless set).

    Defaults follow STiCA: 2 post-LayerNorm layers, 4 heads, FFN ``4 * width`` with GELU, dropout 0,
    no positional embedding, output = the first (valid) token. ``output="mean"`` averages the valid
    tokens instead. ``width != dim`` adds an input projection.
    """

    def __init__(
        self,
        dim: int,
        layers: int = 2,
        heads: int = 4,
        ffn: int | None = None,
        dropout: float = 0.0,
        width: int | None = None,
        positional: bool = False,
        max_len: int = 1024,
        output: str = "first",
    ):
        super().__init__()
        if output not in ("first", "mean"):
            raise ValueError(f"output must be 'first' or 'mean', got {output!r}")
        width = width or dim
        self.input = nn.Linear(dim, width) if width != dim else nn.Identity()
        self.pos = nn.Parameter(torch.zeros(max_len, width)) if positional else None
        if self.pos is not None:
            nn.init.trunc_normal_(self.pos, std=0.02)
        self.layers = nn.ModuleList(
            _PostNormLayer(width, heads, ffn or 4 * width, dropout) for _ in range(layers)
        )
        self.output = output
        self.output_dim = width

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        mask = full_mask(x, mask)
        x = self.input(zero_padding(x, mask))
        if self.pos is not None:
            if x.shape[1] > self.pos.shape[0]:
                raise ValueError(f"sequence of {x.shape[1]} tokens exceeds max_len {self.pos.shape[0]}")
            x = x + self.pos[: x.shape[1]]
        for layer in self.layers:
            x = layer(x, mask)
        if self.output == "mean":
            return _masked_mean(x, mask)
        first = mask.to(torch.int8).argmax(dim=1)
        return x[torch.arange(x.shape[0], device=x.device), first]


# ----------------------------------------------------------------------------------------------------
# simple and recurrent pooling


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    return (zero_padding(x, mask) * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


class AvgPool(nn.Module):
    """Mean over valid positions. Output ``D``."""

    def __init__(self, dim: int):
        super().__init__()
        self.output_dim = dim

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return _masked_mean(x, full_mask(x, mask))


class MaxPool(nn.Module):
    """Per-dimension maximum over valid positions. Output ``D``."""

    def __init__(self, dim: int):
        super().__init__()
        self.output_dim = dim

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        mask = full_mask(x, mask)
        return x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)


class _RecurrentPool(nn.Module):
    rnn_class: type[nn.RNNBase] = nn.GRU

    def __init__(self, dim: int, hidden: int = 512, layers: int = 1, bidirectional: bool = False):
        super().__init__()
        self.rnn = self.rnn_class(
            dim, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional
        )
        self.directions = 2 if bidirectional else 1
        self.output_dim = hidden * self.directions

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        mask = full_mask(x, mask)
        x, lengths = prefix_compact(zero_padding(x, mask), mask)
        if bool((lengths == 0).any()):
            raise ValueError("every sequence needs at least one valid position")
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, state = self.rnn(packed)
        h = state[0] if isinstance(state, tuple) else state  # LSTM returns (h, c)
        # h: (layers * directions, B, hidden); keep the last layer's directions
        return torch.cat(list(h[-self.directions :]), dim=1)


class LSTMPool(_RecurrentPool):
    """Final hidden state of an LSTM run over the valid positions only. Output ``hidden * dirs``."""

    rnn_class = nn.LSTM


class GRUPool(_RecurrentPool):
    """Final hidden state of a GRU run over the valid positions only. Output ``hidden * dirs``."""

    rnn_class = nn.GRU


# ----------------------------------------------------------------------------------------------------
# STiCA crop pooling


def _init_transformer(module: nn.Module) -> None:
    # the official initialisation: Linear N(0, 0.02) with zero bias, LayerNorm identity
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class CropPooling(nn.Module):
    """Pool ``B x C x T x H x W`` feature-map crops (STiCA) into ``B x output_dim``.

    ``layers=0`` is the global average. Otherwise the crop becomes a token sequence and a shallow
    post-LayerNorm transformer (:class:`ssl_video.models.pooling.TransformerPool`: queries and keys
    projected, values and output identity, GELU FFN) runs over it; the output is token 0. Token modes:
    ``"time"`` (published): average over space, one token per time step of the crop; ``"spacetime"``:
    one token per cell, in ``(t, h, w)`` order. Options: a learned class token prepended (it becomes
    token 0, the output) and learned positional embeddings (relative to the crop: a time table in
    ``"time"`` mode, a sum of time, row and column tables in ``"spacetime"`` mode).

    Published detail not kept: the official code resamples every crop to 4 time steps with adaptive
    average pooling before the transformer (for 2- or 3-step temporal crops this repeats or blends steps,
    and for 8-step maps its reshape folded batch elements together); here the crop's own time steps are
    the tokens.

    ``width`` (default ``dim``) is the transformer width (an input projection is added when it differs),
    ``ffn`` its hidden size (default ``4 * width``, 2048 for 512 as published), ``max_len`` the longest
    axis a positional table covers.
    """

    def __init__(self, dim: int, layers: int = 2, heads: int = 4, width: int | None = None, ffn: int | None = None,
                 dropout: float = 0.0, tokens: Literal["time", "spacetime"] = "time", class_token: bool = False,
                 positional: bool = False, max_len: int = 64):
        super().__init__()
        if tokens not in ("time", "spacetime"):
            raise ValueError(f"tokens must be 'time' or 'spacetime', got {tokens!r}")
        if layers < 0:
            raise ValueError(f"layers must be >= 0, got {layers}")
        self.dim, self.layers, self.tokens = dim, layers, tokens
        self.transformer = None
        self.cls = self.pos_t = self.pos_h = self.pos_w = None
        if layers == 0:
            self.output_dim = dim
            return
        self.transformer = TransformerPool(dim, layers=layers, heads=heads, ffn=ffn, dropout=dropout, width=width,
                                           positional=False, output="first")
        self.transformer.apply(_init_transformer)
        self.output_dim = self.transformer.output_dim
        if class_token:
            self.cls = nn.Parameter(torch.zeros(1, 1, dim))
            nn.init.trunc_normal_(self.cls, std=0.02)
        if positional:
            self.pos_t = nn.Parameter(torch.zeros(max_len, dim))
            nn.init.trunc_normal_(self.pos_t, std=0.02)
            if tokens == "spacetime":
                self.pos_h = nn.Parameter(torch.zeros(max_len, dim))
                self.pos_w = nn.Parameter(torch.zeros(max_len, dim))
                nn.init.trunc_normal_(self.pos_h, std=0.02)
                nn.init.trunc_normal_(self.pos_w, std=0.02)

    def token_sequence(self, x: Tensor) -> Tensor:
        """The transformer's input ``B x N x C`` for a crop ``B x C x T x H x W`` (positions and class
        token included)."""
        if x.ndim != 5:
            raise ValueError(f"expected a B x C x T x H x W crop, got shape {tuple(x.shape)}")
        _, _, t, h, w = x.shape
        if self.tokens == "time":
            seq = x.mean(dim=(3, 4)).transpose(1, 2)
            if self.pos_t is not None:
                seq = seq + self._table(self.pos_t, t)
        else:
            seq = x.flatten(2).transpose(1, 2)
            if self.pos_t is not None:
                pos = (self._table(self.pos_t, t)[:, None, None] + self._table(self.pos_h, h)[None, :, None]
                       + self._table(self.pos_w, w)[None, None, :])
                seq = seq + pos.reshape(t * h * w, -1)
        if self.cls is not None:
            seq = torch.cat([self.cls.expand(seq.shape[0], -1, -1).to(seq.dtype), seq], dim=1)
        return seq

    @staticmethod
    def _table(table: Tensor, length: int) -> Tensor:
        if length > table.shape[0]:
            raise ValueError(f"crop axis of {length} cells exceeds the positional table ({table.shape[0]})")
        return table[:length]

    def encode_tokens(self, x: Tensor) -> Tensor:
        """Every token's output ``B x N x width`` (``forward`` returns token 0 of this)."""
        if self.transformer is None:
            raise RuntimeError("average pooling (layers=0) has no token outputs")
        seq = self.transformer.input(self.token_sequence(x))
        mask = torch.ones(seq.shape[:2], dtype=torch.bool, device=seq.device)
        for layer in self.transformer.layers:
            seq = layer(seq, mask)
        return seq

    def forward(self, x: Tensor) -> Tensor:
        if self.transformer is None:
            if x.ndim != 5:
                raise ValueError(f"expected a B x C x T x H x W crop, got shape {tuple(x.shape)}")
            return x.mean(dim=(2, 3, 4))
        return self.transformer(self.token_sequence(x))


# ----------------------------------------------------------------------------------------------------
# registry


_HEADS: dict[str, Callable[..., nn.Module]] = {}
_CLUSTERED: set[str] = set()


def register_pooling_head(name: str, factory: Callable[..., nn.Module], clustered: bool = False) -> None:
    """Register ``factory(dim, **kwargs)`` under ``name``; ``clustered`` heads accept ``clusters=K``."""
    _HEADS[name] = factory
    if clustered:
        _CLUSTERED.add(name)


for _name, _cls in [("netvlad", NetVLAD), ("netrvlad", NetRVLAD), ("netfv", NetFV), ("netbow", NetBoW)]:
    register_pooling_head(_name, _cls, clustered=True)
register_pooling_head("attention_clusters", AttentionClusters, clustered=True)
register_pooling_head(
    "attention_clusters_noshift", lambda dim, **kw: AttentionClusters(dim, shift=False, **kw), True
)
register_pooling_head("transformer", TransformerPool)
register_pooling_head("avg", AvgPool)
register_pooling_head("max", MaxPool)
register_pooling_head("lstm", LSTMPool)
register_pooling_head("gru", GRUPool)


def list_pooling_heads() -> list[str]:
    return list(_HEADS)


def pooling_head_options(name: str) -> dict:
    """Facts about a head: ``{"clustered": bool, "l2_eps": bool}`` (whether it takes ``clusters``, ``l2_eps``)."""
    if name not in _HEADS:
        raise KeyError(name)
    factory = _HEADS[name]
    return {"clustered": name in _CLUSTERED,
            "l2_eps": isinstance(factory, type) and issubclass(factory, _ClusterPool)}


def cluster_kwargs(name: str, clusters: int | None) -> dict:
    return {"clusters": clusters} if clusters is not None and name in _CLUSTERED else {}


def create_pooling_head(name: str, dim: int, **kwargs) -> nn.Module:
    """Build the head ``name`` for ``dim``-dimensional features; ``kwargs`` go to its constructor."""
    try:
        factory = _HEADS[name]
    except KeyError:
        raise ValueError(f"unknown pooling head {name!r}; known: {', '.join(_HEADS)}") from None
    return factory(dim, **kwargs)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
