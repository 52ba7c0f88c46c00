"""Pooling heads: masks, permutation invariance, loop references, gating, classifiers."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from ssl_video.models.heads import ContextGating, MixtureOfExperts, PooledClassifier, TwoStreamClassifier
from ssl_video.models.pooling import (
    AttentionClusters,
    GRUPool,
    LSTMPool,
    NetFV,
    NetVLAD,
    TransformerPool,
    count_parameters,
    create_pooling_head,
    list_pooling_heads,
    pooling_head_options,
)

DIM = 6
HEADS = list_pooling_heads()
SET_HEADS = [
    "netvlad",
    "netrvlad",
    "netfv",
    "netbow",
    "attention_clusters",
    "attention_clusters_noshift",
    "avg",
    "max",
]
BN_HEADS = ["netvlad", "netrvlad", "netfv", "netbow"]
SMALL = {"transformer": {"heads": 2, "ffn": 12}, "lstm": {"hidden": 5}, "gru": {"hidden": 5}}


def make_head(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    kwargs = dict(SMALL.get(name, {}))
    if pooling_head_options(name)["clustered"]:
        kwargs["clusters"] = 3
    head = create_pooling_head(name, DIM, **kwargs).double()
    # non-trivial BatchNorm state so that eval mode really uses the running statistics
    for module in head.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_()
    return head


def padded_batch(lengths, extra=0, seed=1):
    """Sequences of the given lengths padded to max+extra with garbage (huge values and a NaN)."""
    g = torch.Generator().manual_seed(seed)
    length = max(lengths) + extra
    x = 1e3 * torch.randn(len(lengths), length, DIM, generator=g, dtype=torch.float64)
    mask = torch.zeros(len(lengths), length, dtype=torch.bool)
    g2 = torch.Generator().manual_seed(seed + 100)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randn(n, DIM, generator=g2, dtype=torch.float64)
        mask[i, :n] = True
    if length > min(lengths):
        x[lengths.index(min(lengths)), -1, 0] = float("nan")
    return x, mask


@pytest.mark.parametrize("name", HEADS)
def test_padding_and_mask_match_unpadded_in_eval_mode(name):
    head = make_head(name).eval()
    lengths = [5, 2, 4]
    x, mask = padded_batch(lengths, extra=3)
    with torch.no_grad():
        batched = head(x, mask)
        for i, n in enumerate(lengths):
            alone = head(x[i : i + 1, :n])  # no padding, no mask
            torch.testing.assert_close(batched[i : i + 1], alone, rtol=1e-9, atol=1e-10)
    assert batched.shape == (3, head.output_dim)
    assert torch.isfinite(batched).all()


@pytest.mark.parametrize("name", HEADS)
def test_more_padding_changes_nothing_in_train_mode(name):
    """Train mode: BatchNorm statistics come from valid positions only, so extra padding is invisible."""
    head_a = make_head(name).train()
    head_b = copy.deepcopy(head_a)
    lengths = [4, 2, 5]
    x, mask = padded_batch(lengths, extra=0)
    xb, maskb = padded_batch(lengths, extra=4)
    torch.testing.assert_close(xb[:, : x.shape[1]][mask], x[mask])
    out_a = head_a(x, mask)
    out_b = head_b(xb, maskb)
    torch.testing.assert_close(out_a, out_b, rtol=1e-9, atol=1e-10)
    for (key, a), b in zip(head_a.state_dict().items(), head_b.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10, msg=f"state {key} differs")


@pytest.mark.parametrize("name", BN_HEADS)
def test_train_mode_padding_matches_unpadded_equal_lengths(name):
    head = make_head(name).train()
    x, _ = padded_batch([4, 4])
    xb, maskb = padded_batch([4, 4], extra=3)
    torch.testing.assert_close(copy.deepcopy(head)(x), head(xb, maskb), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", SET_HEADS)
@pytest.mark.parametrize("train", [False, True])
def test_set_pooling_heads_ignore_frame_order(name, train):
    head = make_head(name).train(train)
    x, mask = padded_batch([6, 3], extra=2)
    perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(3))
    # padding moves to the middle too: a mask need not be a prefix
    out = copy.deepcopy(head)(x, mask)
    out_perm = head(x[:, perm], mask[:, perm])
    torch.testing.assert_close(out, out_perm, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("cls", [LSTMPool, GRUPool])
def test_recurrent_heads_use_the_valid_positions_in_order(cls):
    torch.manual_seed(0)
    head = cls(DIM, hidden=4).double().eval()
    x = torch.randn(1, 6, DIM, dtype=torch.float64)
    mask = torch.tensor([[True, False, True, True, False, True]])
    with torch.no_grad():
        torch.testing.assert_close(head(x, mask), head(x[:, mask[0]]))


# ----------------------------------------------------------------------------------------------------
# loop references


def reference_assignment(head, x):
    """softmax(BN(x W)) for one video (eval-mode BN), with python loops."""
    w = head.assign.proj.weight.tolist()  # (K, D)
    bn = head.assign.norm
    mean, var = bn.running_mean.tolist(), bn.running_var.tolist()
    gamma, beta = bn.weight.tolist(), bn.bias.tolist()
    rows = []
    for frame in x.tolist():
        z = []
        for k in range(len(w)):
            s = sum(frame[d] * w[k][d] for d in range(len(frame)))
            z.append((s - mean[k]) / math.sqrt(var[k] + bn.eps) * gamma[k] + beta[k])
        top = max(z)
        e = [math.exp(v - top) for v in z]
        rows.append([v / sum(e) for v in e])
    return rows


def l2(values):
    norm = math.sqrt(sum(v * v for v in values))
    return [v / max(norm, 1e-12) for v in values]


def intra_then_global(v):
    flat = []
    for row in v:
        flat.extend(l2(row))
    return l2(flat)


def reference_netvlad(head, x):
    a = reference_assignment(head, x)
    frames, c = x.tolist(), head.centers.tolist()
    K, D = len(c), len(frames[0])
    v = [
        [sum(a[i][k] * (frames[i][d] - c[k][d]) for i in range(len(frames))) for d in range(D)]
        for k in range(K)
    ]
    return intra_then_global(v)


def reference_netfv(head, x):
    a = reference_assignment(head, x)
    frames, c = x.tolist(), head.centers.tolist()
    sigma = [[w * w + 1e-6 for w in row] for row in head.covar.tolist()]
    K, D, N = len(c), len(frames[0]), len(frames)
    first = [
        [sum(a[i][k] * (frames[i][d] - c[k][d]) / sigma[k][d] for i in range(N)) for d in range(D)]
        for k in range(K)
    ]
    second = [
        [
            sum(a[i][k] * ((frames[i][d] - c[k][d]) ** 2 / sigma[k][d] ** 2 - 1.0) for i in range(N))
            for d in range(D)
        ]
        for k in range(K)
    ]
    return intra_then_global(first) + intra_then_global(second)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cls,reference", [(NetVLAD, reference_netvlad), (NetFV, reference_netfv)])
def test_matches_loop_reference(cls, reference, seed):
    torch.manual_seed(seed)
    head = cls(DIM, clusters=4).double()
    bn = head.assign.norm
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.normal_()
    head.eval()
    lengths = [5, 3]
    x, mask = padded_batch(lengths, extra=1, seed=seed)
    with torch.no_grad():
        out = head(x, mask)
    for i, n in enumerate(lengths):
        expected = torch.tensor(reference(head, x[i, :n]), dtype=torch.float64)
        torch.testing.assert_close(out[i], expected, rtol=1e-9, atol=1e-12)
    assert out.shape[1] == (2 if cls is NetFV else 1) * 4 * DIM


def test_attention_clusters_shifting_formula():
    torch.manual_seed(0)
    head = AttentionClusters(DIM, clusters=3, shift=True).double().eval()
    head.alpha.data = torch.tensor([0.5, 2.0, -1.0], dtype=torch.float64)
    head.beta.data = torch.tensor([0.1, -0.3, 0.0], dtype=torch.float64)
    x = torch.randn(1, 5, DIM, dtype=torch.float64)
    with torch.no_grad():
        out = head(x).view(3, DIM)
        w = torch.softmax(head.proj(x[0]), dim=0)  # (N, K)
        for k in range(3):
            v = (w[:, k : k + 1] * x[0]).sum(0)
            o = head.alpha[k] * v + head.beta[k]
            torch.testing.assert_close(out[k], o / (o.norm() * math.sqrt(3)))
    plain = AttentionClusters(DIM, clusters=3, shift=False, hidden=4).double()
    assert plain(x).shape == (1, 3 * DIM)


def test_context_gating_is_exactly_sigmoid_linear_times_input():
    torch.manual_seed(0)
    gate = ContextGating(7).double()
    x = torch.randn(4, 7, dtype=torch.float64)
    expected = torch.sigmoid(x @ gate.fc.weight.T + gate.fc.bias) * x
    torch.testing.assert_close(gate(x), expected, rtol=1e-15, atol=1e-15)
    assert count_parameters(gate) == 7 * 7 + 7


def test_mixture_of_experts_gives_probabilities():
    torch.manual_seed(0)
    moe = MixtureOfExperts(8, 5, experts=2)
    p = moe(10 * torch.randn(16, 8))
    assert p.shape == (16, 5)
    assert (p >= 0).all() and (p <= 1).all()


def test_transformer_pool_follows_stica_shape():
    torch.manual_seed(0)
    head = TransformerPool(8, layers=2, heads=4)
    # q and k are projected; v and the output projection are the identity (no parameters)
    names = {n.split(".")[2] for n, _ in head.named_parameters() if n.startswith("layers.")}
    assert names == {"q", "k", "norm1", "norm2", "ffn"}
    assert head.layers[0].ffn[0].out_features == 32
    assert head(torch.randn(2, 5, 8)).shape == (2, 8)
    wide = TransformerPool(6, width=8, heads=2, positional=True, max_len=10, output="mean")
    assert wide(torch.randn(2, 5, 6), torch.tensor([[1, 1, 1, 0, 0], [1] * 5], dtype=torch.bool)).shape == (
        2,
        8,
    )


@pytest.mark.parametrize("classifier", ["linear", "moe"])
@pytest.mark.parametrize("gating", [True, False])
def test_pooled_classifier_trains_and_respects_masks(classifier, gating):
    torch.manual_seed(0)
    model = PooledClassifier(
        create_pooling_head("netvlad", DIM, clusters=3), 4, hidden=8, gating=gating, classifier=classifier
    ).double()
    x, mask = padded_batch([5, 2, 4], extra=2)
    loss = torch.nn.functional.cross_entropy(model(x, mask), torch.tensor([0, 1, 3]))
    loss.backward()
    assert all(
        p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad
    )
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x, mask)[1:2], model(x[1:2, :2]))


def test_two_stream_classifier_late_fusion():
    torch.manual_seed(0)
    model = TwoStreamClassifier(DIM, 4, num_classes=5, head="netvlad", clusters=4, hidden=8).double().eval()
    assert model.video_pool.clusters == 4 and model.audio_pool.clusters == 2
    assert model.head.fc.in_features == 4 * DIM + 2 * 4
    assert model.head.gate is not None and model.head.output_gate is not None
    video, vmask = padded_batch([5, 3], extra=1)
    audio = torch.randn(2, 4, 4, dtype=torch.float64)
    amask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        out = model(video, audio, vmask, amask)
        torch.testing.assert_close(out[1:], model(video[1:, :3], audio[1:, :2]))
    assert out.shape == (2, 5)
    avg = TwoStreamClassifier(DIM, 4, num_classes=3, head="avg", gating=False, classifier="linear", hidden=8)
    assert avg.head.fc.in_features == DIM + 4


def test_unknown_head_is_rejected():
    with pytest.raises(ValueError, match="unknown pooling head"):
        create_pooling_head("netvlat", DIM)
