"""Contrastive losses against a slow loop-based reference, masking, gradients, and 2-process gathering."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from ssl_video.losses import cross_modal_nce, gather_batch, gather_with_grad, info_nce


def reference_nce(query, key, temperature, mask=None):
    """Mean over valid queries i of -log(exp(q_i.k_i/t) / sum over valid j of exp(q_i.k_j/t)), by loops."""
    n = query.shape[0]
    valid = [True] * n if mask is None else [bool(v) for v in mask]
    terms = []
    for i in range(n):
        if not valid[i]:
            continue
        denominator = 0.0
        for j in range(n):
            if valid[j]:
                denominator = denominator + torch.exp(torch.dot(query[i], key[j]) / temperature)
        terms.append(-(torch.dot(query[i], key[i]) / temperature - torch.log(denominator)))
    if not terms:
        return query.sum() * 0.0
    return sum(terms) / len(terms)


def embeddings(n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    k = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    return q, k


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("mask", [None, [True, False, True, True, False, True]])
def test_info_nce_matches_reference(temperature, mask):
    q, k = embeddings()
    m = None if mask is None else torch.tensor(mask)
    got = info_nce(q, k, temperature, m)
    want = reference_nce(q, k, temperature, mask)
    assert torch.allclose(got.double(), want, atol=1e-5)


def test_info_nce_without_mask_is_the_published_cross_entropy():
    q, k = embeddings(8, 4, seed=1)
    logits = q.float() @ k.float().t() / 0.1
    assert torch.allclose(info_nce(q, k, 0.1), F.cross_entropy(logits, torch.arange(8)), atol=1e-6)


def test_gradient_flows_through_the_query_only():
    q, k = embeddings(seed=2)
    q.requires_grad_(True)
    k.requires_grad_(True)
    grad_q, grad_k = torch.autograd.grad(info_nce(q, k, 0.5), [q, k], allow_unused=True)
    assert grad_k is None
    want_q, = torch.autograd.grad(reference_nce(q, k.detach(), 0.5), [q])
    assert torch.allclose(grad_q.double(), want_q, atol=1e-5)
    # without detaching, both sides get the reference gradient
    grad_q, grad_k = torch.autograd.grad(info_nce(q, k, 0.5, detach_key=False), [q, k])
    want_q, want_k = torch.autograd.grad(reference_nce(q, k, 0.5), [q, k])
    assert torch.allclose(grad_q.double(), want_q, atol=1e-5)
    assert torch.allclose(grad_k.double(), want_k, atol=1e-5)


def test_cross_modal_nce_is_symmetric_and_matches_reference():
    v, a = embeddings(seed=3)
    valid = [True, True, False, True, True, False]
    got = cross_modal_nce(v, a, 0.1, torch.tensor(valid))
    want = 0.5 * (reference_nce(a, v, 0.1, valid) + reference_nce(v, a, 0.1, valid))
    assert torch.allclose(got.double(), want, atol=1e-5)
    assert torch.allclose(cross_modal_nce(a, v, 0.1, torch.tensor(valid)), got, atol=1e-6)


def test_clips_without_audio_are_neither_queries_nor_negatives():
    v, a = embeddings(seed=4)
    valid = torch.tensor([True, False, True, True, False, True])
    v.requires_grad_(True)
    a.requires_grad_(True)
    loss = cross_modal_nce(v, a, 0.1, valid)
    grad_v, grad_a = torch.autograd.grad(loss, [v, a])
    assert torch.all(grad_v[~valid] == 0) and torch.all(grad_a[~valid] == 0)
    assert torch.all(grad_v[valid].abs().sum(1) > 0)
    # whatever the excluded clips hold (even NaN), the loss is the one of the valid clips alone
    v2, a2 = v.detach().clone(), a.detach().clone()
    v2[~valid] = float("nan")
    a2[~valid] = torch.randn(int((~valid).sum()), a.shape[1], dtype=a.dtype)
    again = cross_modal_nce(v2, a2, 0.1, valid)
    alone = cross_modal_nce(v.detach()[valid], a.detach()[valid], 0.1)
    assert torch.allclose(again, loss.detach(), atol=1e-6)
    assert torch.allclose(alone, loss.detach(), atol=1e-6)


def test_no_valid_clip_gives_an_exact_zero_with_a_graph():
    v, a = embeddings(seed=5)
    v.requires_grad_(True)
    loss = cross_modal_nce(v, a, 0.1, torch.zeros(6, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(v.grad == 0)


def test_bad_arguments():
    q, k = embeddings()
    with pytest.raises(ValueError):
        info_nce(q, k[:3], 0.1)
    with pytest.raises(ValueError):
        info_nce(q, k, 0.0)
    with pytest.raises(ValueError):
        info_nce(q, k, 0.1, torch.ones(5, dtype=torch.bool))


def test_gather_is_the_identity_outside_distributed():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_batch(x) is x
    assert gather_with_grad(x) is x


# ----------------------------------------------------------------------------------------------------
# two processes (gloo) vs one process with the doubled batch
#
# The published loss is, on each process, the mean over its local queries against the gathered keys;
# DDP then averages the gradients over processes. Each process below averages its loss and gradients
# over the 2 processes the same way (all_reduce / world size) and must match one process computing the
# loss on the whole doubled batch. The encoder is per-sample (a Linear layer), so nothing but the loss
# couples the samples.

B, WORLD, DIM_IN, DIM_OUT = 4, 2, 6, 5
MASKS = {
    "unequal": [True, False, True, True, False, True, False, False],  # 3 valid on rank 0, 1 on rank 1
    "rank1_empty": [True, True, False, True, False, False, False, False],
}


def _global_inputs():
    g = torch.Generator().manual_seed(7)
    return torch.randn(WORLD * B, DIM_IN, generator=g), torch.randn(WORLD * B, DIM_IN, generator=g)


def _cases():
    def embed(net, x):
        return F.normalize(net(x), dim=1)

    return {
        "info_nce": lambda nv, na, xv, xa, m: info_nce(embed(nv, xv), embed(na, xa), 0.5),
        "cross_unequal": lambda nv, na, xv, xa, m: cross_modal_nce(embed(nv, xv), embed(na, xa), 0.1, m["unequal"]),
        "cross_rank1_empty": lambda nv, na, xv, xa, m: cross_modal_nce(
            embed(nv, xv), embed(na, xa), 0.1, m["rank1_empty"]),
        "cross_keys_with_grad": lambda nv, na, xv, xa, m: cross_modal_nce(
            embed(nv, xv), embed(na, xa), 0.1, m["unequal"], detach_key=False),
    }


def _networks():
    torch.manual_seed(11)
    return nn.Linear(DIM_IN, DIM_OUT), nn.Linear(DIM_IN, DIM_OUT)


def _run_cases(rows: slice, world: int) -> dict:
    net_v, net_a = _networks()
    xv, xa = _global_inputs()
    masks = {name: torch.tensor(mask)[rows] for name, mask in MASKS.items()}
    results = {}
    for name, case in _cases().items():
        for p in [*net_v.parameters(), *net_a.parameters()]:
            p.grad = None
        loss = case(net_v, net_a, xv[rows], xa[rows], masks)
        loss.backward()
        loss = loss.detach().clone()
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone()
                 for p in [*net_v.parameters(), *net_a.parameters()]]
        if world > 1:
            for t in [loss, *grads]:
                dist.all_reduce(t)
                t /= world
        results[name] = (loss, grads)
    return results


def _worker(rank: int, init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        results = _run_cases(slice(rank * B, (rank + 1) * B), WORLD)
        if rank == 0:
            torch.save(results, out_file)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one_process_with_the_doubled_batch(tmp_path):
    out_file = tmp_path / "results.pt"
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(out_file)), nprocs=WORLD, join=True)
    distributed = torch.load(out_file, weights_only=True)
    single = _run_cases(slice(0, WORLD * B), 1)
    assert set(distributed) == set(single)
    for name, (loss, grads) in single.items():
        d_loss, d_grads = distributed[name]
        assert math.isfinite(loss.item())
        assert torch.allclose(d_loss, loss, atol=1e-6), (name, d_loss, loss)
        for got, want in zip(d_grads, grads):
            assert torch.allclose(got, want, atol=1e-6), name
