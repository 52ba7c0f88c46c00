"""Heads on top of encoders: contrastive projection heads and the STiCA crop pooling.

* :class:`ProjectionHead` — the STiCA/GDT projection MLP: Dropout, Linear (no bias), BatchNorm, ReLU,
  Dropout, Linear, L2-normalise (published: dropout 0.3, 512 -> 512 -> 256).
* :class:`CropPooling` — pools a crop of a video feature map (``B x C x T x H x W``) into one vector.
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
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_video.models.pooling import TransformerPool

__all__ = ["ProjectionHead", "CropPooling"]


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
    """Pool ``B x C x T x H x W`` feature-map crops into ``B x output_dim`` (see the module docstring).

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
