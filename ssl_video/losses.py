"""Contrastive losses as pure functions, and gathering a batch from every process.

Semantics (STiCA / GDT, official code facebookresearch/GDT, REFERENCE §4):

* :func:`info_nce` — in-batch InfoNCE. Every local query ``q_i`` is scored against the keys of the
  GLOBAL batch (all processes, gathered with ``all_gather``); its positive is its own key, global index
  ``rank * B + i``; all other global keys are negatives. Keys are detached by default (the published
  loss): the gradient flows through the query side only. ``loss = sum_i -log softmax(q_i . K / t)[pos_i]``
  over the valid local queries, divided by (number of valid queries in the global batch / world size).
  Without a mask that divisor is ``B``, i.e. the mean over local queries, exactly as published; after
  DDP averages gradients over processes the result equals one process computing the mean over the whole
  doubled batch. With unequal masks across processes the same divisor keeps that equality.
* ``mask`` (boolean, one per sample) removes a sample from the queries AND from the keys (negatives) of
  every process, e.g. clips without an audio track in the cross-modal term. With no valid query anywhere
  the loss is an exact zero that still depends on ``query`` (so every parameter receives a gradient).
* :func:`cross_modal_nce` — symmetric: ``0.5 * (info_nce(audio -> video) + info_nce(video -> audio))``.

Distributed rules: every process must call these functions in the same order, with the same batch size
(a sampler with ``drop_last``), and either all with a mask or all without one. Outside
``torch.distributed`` (or with world size 1) nothing is gathered.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "is_distributed",
    "process_rank",
    "world_size",
    "gather_batch",
    "gather_with_grad",
    "info_nce",
    "cross_modal_nce",
]


def is_distributed() -> bool:
    """Whether a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def process_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def _all_gather(x: Tensor) -> Tensor:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """``all_gather`` whose backward sums the gradients of every process and keeps the local rows.

    With DDP averaging parameter gradients over processes, this gives the gradient of the mean of the
    per-process losses, as if one process had computed the loss on the global batch.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        return _all_gather(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_batch(x: Tensor, grad: bool = False) -> Tensor:
    """``x`` (``B x ...``) of every process concatenated in rank order (``W*B x ...``).

    ``grad=False``: the result carries no gradient (what the published loss uses for its keys).
    ``grad=True``: see :func:`gather_with_grad`. Identity when not distributed. Booleans are gathered too.
    """
    if not is_distributed():
        return x
    if x.dtype == torch.bool:
        return _all_gather(x.to(torch.uint8)).bool()
    if grad:
        return _GatherWithGrad.apply(x)
    with torch.no_grad():
        return _all_gather(x.detach())


def gather_with_grad(x: Tensor) -> Tensor:
    """Gather ``x`` from every process keeping the autograd graph: the local rows receive the sum over
    processes of the gradients flowing into them (identity when not distributed)."""
    return gather_batch(x, grad=True)


def info_nce(query: Tensor, key: Tensor, temperature: float, mask: Tensor | None = None, *,
             detach_key: bool = True) -> Tensor:
    """In-batch InfoNCE of ``query`` (``B x D``) against the keys of the global batch (see the module).

    ``query[i]`` and ``key[i]`` are the positive pair; embeddings are used as given (normalise them first
    for cosine similarity). Computed in float32. ``mask``: boolean ``(B,)``, ``False`` drops sample ``i``
    as a query and as a key everywhere. ``detach_key=False`` lets gradients flow into the keys of every
    process (not the published loss).
    """
    if query.ndim != 2 or query.shape != key.shape:
        raise ValueError(f"query and key must both be B x D, got {tuple(query.shape)} and {tuple(key.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    rows = query.shape[0]
    q = query.float()
    k = key.float()
    keys = gather_batch(k.detach(), grad=False) if detach_key else gather_batch(k, grad=True)
    logits = q @ keys.t() / temperature
    target = torch.arange(rows, device=q.device) + process_rank() * rows
    if mask is None:
        return F.cross_entropy(logits, target)
    mask = mask.to(device=q.device, dtype=torch.bool).reshape(-1)
    if mask.shape[0] != rows:
        raise ValueError(f"mask has {mask.shape[0]} entries for a batch of {rows}")
    global_mask = gather_batch(mask)
    logits = logits.masked_fill(~global_mask[None, :], float("-inf"))
    # rows of dropped queries are replaced by zeros (finite) and weighted by 0: no data-dependent shapes,
    # no host sync, and with no valid query anywhere the loss is an exact 0 still tied to ``query``
    logits = torch.where(mask[:, None], logits, torch.zeros((), dtype=logits.dtype, device=logits.device))
    per_query = F.cross_entropy(logits, target, reduction="none")
    total = (per_query * mask.to(per_query.dtype)).sum()
    per_process = global_mask.sum().clamp_min(1).to(total.dtype) / world_size()
    return total / per_process


def cross_modal_nce(video_emb: Tensor, audio_emb: Tensor, temperature: float,
                    valid: Tensor | None = None, *, detach_key: bool = True) -> Tensor:
    """Symmetric cross-modal InfoNCE: ``0.5 * (audio queries vs video keys + video queries vs audio keys)``.

    ``valid`` (boolean ``(B,)``, e.g. ``has_audio``) removes clips from queries and negatives of both
    directions on every process.
    """
    a2v = info_nce(audio_emb, video_emb, temperature, valid, detach_key=detach_key)
    v2a = info_nce(video_emb, audio_emb, temperature, valid, detach_key=detach_key)
    return 0.5 * (a2v + v2a)
