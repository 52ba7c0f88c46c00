"""`ssl-video import`: published checkpoints (their exact key layouts and wrappings, random values) become
encoder directories that compute what the authors' code computes.

Every test names (in a comment) the mutation of the import code it catches.
"""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest
import torch

import ssl_video
from ssl_video.cli import main
from ssl_video.errors import UserError
from ssl_video.models.io import resolve_encoder, save_encoder, save_torchvision

X = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))


def randomise(state: dict[str, torch.Tensor], seed: int = 1) -> dict[str, torch.Tensor]:
    """The same keys and shapes with random values (BN variances positive), so that no mapping is an accident."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state.items():
        if value.dtype == torch.long:
            out[key] = torch.randint(0, 100, value.shape, generator=g)
        elif key.endswith("running_var"):
            out[key] = torch.rand(value.shape, generator=g) + 0.5
        else:
            out[key] = torch.randn(value.shape, generator=g) * 0.1
    return out


def run_import(*argv) -> int:
    return main(["import", *map(str, argv)])


def config_of(directory) -> dict:
    return json.loads((directory / "config.json").read_text())


# ---------------------------------------------------------------------------------------------- torchvision


@pytest.mark.parametrize("arch", ["r2plus1d_18", "r3d_18", "mc3_18"])
def test_torchvision_features_equal_torchvision_models(tmp_path, arch):
    # catches: keeping/dropping the wrong classifier keys, any rename, a wrong input contract in config.json
    import torchvision

    net = getattr(torchvision.models.video, arch)(weights=None)
    net.load_state_dict(randomise(net.state_dict()))
    torch.save(net.state_dict(), tmp_path / f"{arch}.pth")
    assert run_import("torchvision", tmp_path / f"{arch}.pth", "--arch", arch, "--out", tmp_path / "enc") == 0
    net.fc = torch.nn.Identity()
    encoder = ssl_video.load_encoder(tmp_path / "enc")
    with torch.no_grad():
        torch.testing.assert_close(encoder(X), net.eval()(X))
    # and tensor by tensor (the by-hand table is the identity): at these random values a swap deep inside a
    # residual branch moves the features by less than assert_close's tolerance (r2plus1d_18: ~3e-6)
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, net.state_dict()[key]), key
    config = config_of(tmp_path / "enc")
    spec = config["spec"]
    assert (spec["frames"], spec["fps"], spec["crop_size"], spec["resize_size"]) == (16, 15.0, 112, [128, 171])
    assert spec["mean"] == [0.43216, 0.394666, 0.37645] and spec["std"] == [0.22803, 0.22145, 0.216989]
    prov = config["provenance"]
    assert prov["format"] == "torchvision" and prov["dropped"] == ["fc.bias", "fc.weight"]
    import hashlib

    assert prov["sha256"] == hashlib.sha256((tmp_path / f"{arch}.pth").read_bytes()).hexdigest()


def test_torchvision_s3d(tmp_path):
    # catches: S3D's classifier (classifier.1.*) treated like fc.*; torchvision's S3D clip length not read
    import torchvision

    net = torchvision.models.video.s3d(weights=None)
    net.load_state_dict(randomise(net.state_dict()))
    torch.save(net.state_dict(), tmp_path / "s3d.pth")
    assert run_import("torchvision", tmp_path / "s3d.pth", "--arch", "s3d", "--out", tmp_path / "enc") == 0
    encoder = ssl_video.load_encoder(tmp_path / "enc")
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        expected = net.eval().features(x).mean(dim=(2, 3, 4))
        torch.testing.assert_close(encoder(x), expected)
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, net.state_dict()[key]), key
    assert config_of(tmp_path / "enc")["spec"]["frames"] == 128  # torchvision's clip_len=128 for S3D


# ---------------------------------------------------------------------------------------------- GDT


def gdt_heads() -> dict[str, torch.Tensor]:
    """The non-backbone tensors of GDT's STiCA model (model.py Stica_TransformerFMCrop, main_stica.py defaults
    use_mlp=True, num_layer=2, qkv_mha=False), written out by hand: MLP(512, 256, n_hidden=512) is
    block_forward = [Flatten, Dropout, Linear(512, 512, bias=False), Unsqueeze, BatchNorm1d(512), Flatten, ReLU,
    Dropout, Linear(512, 256)]; video_pooling = [AdaptiveAvgPool3d, TransposeSqueeze, TransformerPooling] whose
    src/transformer.py Transformer layers hold mha.q_lin / mha.k_lin (v_lin, out_lin are Identity), norm1,
    ffn.lin1 (512 -> 2048), ffn.lin2, norm2."""
    shapes = {}
    for head in ("mlp_v", "mlp_a"):
        shapes[f"{head}.block_forward.2.weight"] = (512, 512)
        bn = ("weight", "bias", "running_mean", "running_var")
        shapes.update({f"{head}.block_forward.4.{p}": (512,) for p in bn})
        shapes[f"{head}.block_forward.4.num_batches_tracked"] = ()
        shapes.update({f"{head}.block_forward.8.weight": (256, 512), f"{head}.block_forward.8.bias": (256,)})
    for layer in range(2):
        at = f"video_pooling.2.transformer.{layer}"
        for lin in ("mha.q_lin", "mha.k_lin"):
            shapes.update({f"{at}.{lin}.weight": (512, 512), f"{at}.{lin}.bias": (512,)})
        shapes.update({f"{at}.ffn.lin1.weight": (2048, 512), f"{at}.ffn.lin1.bias": (2048,),
                       f"{at}.ffn.lin2.weight": (512, 2048), f"{at}.ffn.lin2.bias": (512,)})
        shapes.update({f"{at}.{norm}.{p}": (512,) for norm in ("norm1", "norm2") for p in ("weight", "bias")})
    return {key: torch.zeros(shape, dtype=torch.long) if key.endswith("num_batches_tracked") else torch.zeros(shape)
            for key, shape in shapes.items()}


def gdt_state(video: torch.nn.Module, audio: torch.nn.Module) -> dict[str, torch.Tensor]:
    """facebookresearch/GDT model.py names: video_network.base (src/vmz.py VideoResNet, torchvision's names, fc an
    Identity), audio_network.base (src/resnet.py resnet9 with a 1-channel conv1 and its unused fc 1000 x 512),
    then the heads of gdt_heads()."""
    state = {f"video_network.base.{k}": v for k, v in video.state_dict().items()}
    state.update({f"audio_network.base.{k}": v for k, v in audio.state_dict().items()})
    state.update({"audio_network.base.fc.weight": torch.zeros(1000, 512),
                  "audio_network.base.fc.bias": torch.zeros(1000)})
    state.update(gdt_heads())
    return randomise(state)


def gdt_checkpoint(state: dict[str, torch.Tensor], wrap: str) -> dict:
    """What GDT's scripts save: main_stica.py {"epoch", "state_dict": the DistributedDataParallel model's
    state_dict() (keys under "module."), "optimizer"}; utils.save_checkpoint (main_gdt.py) {"model":
    model.module.state_dict() (no prefix), "optimizer", "lr_scheduler", "epoch", "args": the argparse.Namespace}."""

    optimizer = {"state": {0: {"momentum_buffer": torch.zeros(3)}}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    if wrap == "state_dict":
        return {"epoch": 101, "state_dict": {f"module.{k}": v for k, v in state.items()}, "optimizer": optimizer}
    return {"model": state, "optimizer": optimizer, "lr_scheduler": {"last_epoch": 100}, "epoch": 101,
            "args": argparse.Namespace(lr=0.01, batch_size=32, dataset="kinetics")}


@pytest.mark.parametrize("wrap", ["state_dict", "model"])
def test_gdt_video_and_audio_land_where_gdt_puts_them(tmp_path, wrap):
    # catches: a wrong prefix (video <-> audio swapped), 'module.' not stripped, the wrapper entry not read,
    # the audio fc or the heads loaded into the encoder
    video = ssl_video.create_encoder("r2plus1d_18")
    audio = ssl_video.create_encoder("audio_resnet9")
    state = gdt_state(video, audio)
    torch.save(gdt_checkpoint(state, wrap), tmp_path / "gdt_K400.pth")
    assert run_import("gdt", tmp_path / "gdt_K400.pth", "--out", tmp_path / "v") == 0
    assert run_import("gdt", tmp_path / "gdt_K400.pth", "--modality", "audio", "--out", tmp_path / "a") == 0
    v, a = ssl_video.load_encoder(tmp_path / "v"), ssl_video.load_encoder(tmp_path / "a")
    # the by-hand table: zoo key <- GDT key
    for key, value in v.state_dict().items():
        assert torch.equal(value, state[f"video_network.base.{key}"]), key
    for key, value in a.state_dict().items():
        assert torch.equal(value, state[f"audio_network.base.{key}"]), key
    assert config_of(tmp_path / "v")["provenance"]["dropped"] == [
        "audio_network.base", "mlp_a.block_forward", "mlp_v.block_forward", "video_pooling.2"]
    assert config_of(tmp_path / "a")["spec"]["modality"] == "audio"
    # the imported directory resolves like an exported one, modality checked
    assert resolve_encoder(tmp_path / "a", modality="audio", key="stica.audio_encoder").name == "audio_resnet9"
    with pytest.raises(UserError, match="stica.video_encoder: .* is an audio encoder"):
        resolve_encoder(tmp_path / "a", modality="video", key="stica.video_encoder")


# ---------------------------------------------------------------------------------------------- TSP


def tsp_r2plus1d_34_state() -> dict[str, torch.Tensor]:
    """HumamAlwassel/TSP models/backbone.py r2plus1d_34: torchvision's VideoResNet with THEIR Conv2Plus1D (hidden
    width from each conv's own in/out widths) and BatchNorm eps 1e-3 / momentum 0.9; models/model.py puts it
    under `features` with heads fc1 (action) and fc2 (region, on [clip, GVF])."""
    from torch import nn
    from torchvision.models.video.resnet import BasicBlock, R2Plus1dStem, VideoResNet

    class Conv2Plus1D(nn.Sequential):
        def __init__(self, in_planes, out_planes, midplanes, stride=1, padding=1):
            midplanes = (in_planes * out_planes * 27) // (in_planes * 9 + 3 * out_planes)
            super().__init__(
                nn.Conv3d(in_planes, midplanes, (1, 3, 3), (1, stride, stride), (0, padding, padding), bias=False),
                nn.BatchNorm3d(midplanes), nn.ReLU(inplace=True),
                nn.Conv3d(midplanes, out_planes, (3, 1, 1), (stride, 1, 1), (padding, 0, 0), bias=False))

        @staticmethod
        def get_downsample_stride(stride):
            return (stride, stride, stride)

    with torch.device("meta"):
        net = VideoResNet(BasicBlock, [Conv2Plus1D] * 4, [3, 4, 6, 3], R2Plus1dStem)
    state = {f"features.{k}": v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    state.update({"fc1.weight": torch.empty(200, 512), "fc1.bias": torch.empty(200),
                  "fc2.weight": torch.empty(2, 1024), "fc2.bias": torch.empty(2)})
    return randomise({k: torch.empty(v.shape, dtype=v.dtype) for k, v in state.items()})


def test_tsp_r2plus1d_34_layout_and_batchnorm_settings(tmp_path):
    # catches: features. not stripped, heads loaded or lost with --keep-heads, torchvision's block-level hidden
    # width used for TSP's R(2+1)D-34 (shape error), BN eps/momentum not recorded (lost after load)
    state = tsp_r2plus1d_34_state()
    name = "r2plus1d_34-tsp_on_activitynet-max_gvf-backbone_lr_0.0001-fc_lr_0.002-epoch_5-0d2cf854.pth"
    torch.save({"model": state}, tmp_path / name)
    assert run_import("tsp", tmp_path / name, "--keep-heads", "--out", tmp_path / "enc") == 0
    encoder = ssl_video.load_encoder(tmp_path / "enc")
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, state[f"features.{key}"]), key
    assert encoder.layer2[0].conv2[0][0].weight.shape[0] == 288  # TSP: (128*128*27)//(128*9+3*128); torchvision 230
    bns = [m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert bns and all((m.eps, m.momentum) == (1e-3, 0.9) for m in bns)
    config = config_of(tmp_path / "enc")
    assert config["args"]["bn_eps"] == 1e-3 and config["args"]["bn_momentum"] == 0.9
    from safetensors.torch import load_file

    heads = load_file(str(tmp_path / "enc" / "heads.safetensors"))
    assert set(heads) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert torch.equal(heads["fc2.weight"], state["fc2.weight"])


def test_ig65m_start_weights_import_by_their_published_name(tmp_path):
    # The official TSP train.py starts from moabitcoin/ig65m-pytorch's r2plus1d_34_clip8_ft_kinetics_from_ig65m
    # (TSP models/backbone.py): a plain VideoResNet state dict with each (2+1)D conv's own hidden width and fc.*
    # catches: the architecture not read from that file name (a refusal asking for --arch), the plain layout
    # mis-mapped, the torchvision export writing a file torchvision's R(2+1)D-34 cannot load
    state = {k[len("features."):]: v for k, v in tsp_r2plus1d_34_state().items() if k.startswith("features.")}
    state.update({"fc.weight": torch.randn(400, 512), "fc.bias": torch.randn(400)})
    path = tmp_path / "r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth"
    torch.save(state, path)
    assert run_import("tsp", path, "--out", tmp_path / "enc") == 0
    encoder = ssl_video.load_encoder(tmp_path / "enc")
    assert encoder.encoder_name == "r2plus1d_34"
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert encoder.state_dict()["layer2.0.conv2.0.0.weight"].shape[0] == 288  # its own width (torchvision: 230)
    with pytest.raises(UserError, match="separable_mid"):
        save_torchvision(encoder, tmp_path / "tv")


def test_tsp_small_backbones_and_bn_options_round_trip(tmp_path):
    # catches: the architecture not taken from the file name; bn options not passed to create_encoder / not saved
    import torchvision

    net = torchvision.models.video.r3d_18(weights=None)
    state = randomise({f"features.{k}": v for k, v in net.state_dict().items() if not k.startswith("fc.")})
    state.update({"fc.weight": torch.randn(400, 512), "fc.bias": torch.randn(400)})
    torch.save({"model": state}, tmp_path / "r3d_18-tac_on_kinetics-dcd952c6.pth")
    assert run_import("tsp", tmp_path / "r3d_18-tac_on_kinetics-dcd952c6.pth", "--out", tmp_path / "enc") == 0
    encoder = ssl_video.load_encoder(tmp_path / "enc")
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, state[f"features.{key}"]), key
    assert not (tmp_path / "enc" / "heads.safetensors").exists()
    assert config_of(tmp_path / "enc")["spec"]["resize_size"] == [128, 171]
    # bn options survive save/load for any video ResNet
    model = ssl_video.create_encoder("r2plus1d_18", width=0.125, bn_eps=1e-3, bn_momentum=0.9, separable_mid="conv")
    save_encoder(model, tmp_path / "tiny")
    loaded = ssl_video.load_encoder(tmp_path / "tiny")
    assert {(m.eps, m.momentum) for m in loaded.modules() if isinstance(m, torch.nn.BatchNorm3d)} == {(1e-3, 0.9)}


# ---------------------------------------------------------------------------------------------- CoST (MMAction2)


def mmaction2_state(model, variant: str) -> dict[str, torch.Tensor]:
    """The by-hand table, MMAction2 ResNet3dCoST key <- zoo key (mmaction resnet3d.py ConvModule names, CoST
    conv_cost.py: weight C x C' x 1 x 3 x 3, alpha 3 x C, fc1 C x C, fc2 3 x 3)."""
    out = {}
    for key, value in model.state_dict().items():
        m = re.match(r"^(.*?)(conv\d|bn\d|downsample\.\d)\.(.+)$", key)
        block, module, rest = m.groups()
        if module.startswith("downsample"):
            new = f"{block}downsample.{'conv' if module.endswith('0') else 'bn'}.{rest}"
        elif module.startswith("bn"):
            new = f"{block}conv{module[-1]}.bn.{rest}"
        else:
            rest = {"view_logits": "alpha", "channel_mix.weight": "fc1.weight", "view_mix.weight": "fc2.weight"}.get(
                rest, rest)
            new = f"{block}{module}.conv.{rest}"
            if rest == "weight" and value.ndim == 4:
                value = value.unsqueeze(2)
            if rest == "alpha":
                value = value.t()
        out[f"backbone.{new}"] = value
    out["cls_head.fc_cls.weight"], out["cls_head.fc_cls.bias"] = torch.randn(400, 2048), torch.randn(400)
    return out


@pytest.mark.parametrize("variant", ["a", "b"])
def test_mmaction2_cost_checkpoint_lands_where_mmaction2_puts_it(tmp_path, variant):
    # catches: alpha not transposed, fc1/fc2 swapped, conv.<->bn. renames, the 1 x 3 x 3 kernel not squeezed,
    # a wrong variant or block pattern inferred
    source = ssl_video.create_encoder("cost_r50", cost_variant=variant, width=0.125)
    source.load_state_dict(randomise(source.state_dict()))
    state = mmaction2_state(source, variant)
    # MMCV's meta: the evaluation hook keeps its best score as a numpy scalar (mutation: numpy left out of the
    # classes the reader rebuilds -> the file is refused as holding Python objects)
    meta = {"epoch": 160, "mmcv_version": "1.6.1",
            "hook_msgs": {"best_score": np.float64(0.7312), "best_ckpt": "work_dirs/best_top1_acc_epoch_160.pth"}}
    torch.save({"meta": meta, "state_dict": state}, tmp_path / "cost.pth")
    # width 0.125 is not a published model: give the architecture explicitly through the library
    from ssl_video.models.imports import ImportOptions, import_checkpoint

    monkey = pytest.MonkeyPatch()
    monkey.setattr("ssl_video.models.registry.create_encoder", _tiny(ssl_video.create_encoder))
    try:
        import_checkpoint("mmaction2", tmp_path / "cost.pth", tmp_path / "enc", ImportOptions())
    finally:
        monkey.undo()
    encoder = ssl_video.load_encoder(tmp_path / "enc")
    for key, value in source.state_dict().items():
        assert torch.equal(encoder.state_dict()[key], value), key
    assert config_of(tmp_path / "enc")["args"]["cost_variant"] == variant
    with torch.no_grad():
        torch.testing.assert_close(encoder(X), source.eval()(X))


# hikvision-research/cost configs/_base_/models/costb_r101_8f.py `inflate`: the blocks holding a CoST layer
COSTB_R101_INFLATE = ((0, 1, 0), (1, 0, 1, 0),
                      (1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1), (0, 1, 0))


def test_mmaction2_cost_r101_checkpoint(tmp_path):
    # catches: a 23-block layer3 not read as cost_r101, the R101 CoST pattern not the authors' (or not recognised)
    source = ssl_video.create_encoder("cost_r101", cost_variant="b", width=0.125)
    source.load_state_dict(randomise(source.state_dict()))
    state = mmaction2_state(source, "b")
    cost_at = {tuple(int(g) for g in re.match(r"backbone\.layer(\d)\.(\d+)\.", key).groups())
               for key in state if key.endswith(".conv2.conv.fc1.weight")}
    assert cost_at == {(stage + 1, block) for stage, row in enumerate(COSTB_R101_INFLATE)
                       for block, on in enumerate(row) if on}
    assert state["backbone.layer3.22.conv2.conv.weight"].shape[2:] == (1, 3, 3)
    assert state["backbone.layer3.22.conv2.conv.fc2.weight"].shape == (3, 3)
    torch.save({"meta": {"epoch": 160}, "state_dict": state}, tmp_path / "costb_r101.pth")
    from ssl_video.models.imports import ImportOptions, import_checkpoint

    with pytest.MonkeyPatch.context() as monkey:
        monkey.setattr("ssl_video.models.registry.create_encoder", _tiny(ssl_video.create_encoder))
        import_checkpoint("mmaction2", tmp_path / "costb_r101.pth", tmp_path / "enc", ImportOptions())
    config = config_of(tmp_path / "enc")
    assert config["architecture"] == "cost_r101" and config["args"]["cost_variant"] == "b"
    assert "block_pattern" not in config["args"]
    encoder = ssl_video.load_encoder(tmp_path / "enc")
    for key, value in source.state_dict().items():
        assert torch.equal(encoder.state_dict()[key], value), key
    with torch.no_grad():
        torch.testing.assert_close(encoder(X), source.eval()(X))


def _tiny(create):
    def tiny(name, **kwargs):
        return create(name, **{"width": 0.125, **kwargs})

    return tiny


def test_mmaction2_i3d_pattern_and_non_cost_file_errors(tmp_path):
    # catches: a file with MMAction2's I3D CoST pattern imported with the official pattern (or refused);
    # an I3D (non-CoST) checkpoint accepted
    from ssl_video.models.imports import ImportOptions, import_checkpoint

    source = ssl_video.create_encoder("cost_r50", cost_variant="a", width=0.125, block_pattern="i3d")
    state = mmaction2_state(source, "a")
    torch.save({"state_dict": state}, tmp_path / "i3d_pattern.pth")
    plain = {k.replace(".alpha", ".bias"): v for k, v in state.items() if not k.endswith(".alpha")}
    torch.save({"state_dict": plain}, tmp_path / "i3d.pth")
    with pytest.MonkeyPatch.context() as monkey:
        monkey.setattr("ssl_video.models.registry.create_encoder", _tiny(ssl_video.create_encoder))
        import_checkpoint("mmaction2", tmp_path / "i3d_pattern.pth", tmp_path / "enc", ImportOptions())
        with pytest.raises(UserError, match="not a CoST checkpoint"):
            import_checkpoint("mmaction2", tmp_path / "i3d.pth", tmp_path / "bad", ImportOptions())
    assert config_of(tmp_path / "enc")["args"]["block_pattern"] == "i3d"


# ---------------------------------------------------------------------------------------------- inflation


def test_inflated_cost_equals_the_2d_resnet_where_the_rule_implies_it(tmp_path):
    """A CoST-R50 inflated from a torchvision ResNet-50 state dict, on a clip of T identical frames.

    MMAction2's rule copies each 2-D kernel into a 1 x k x k kernel (t = 1: repeat once, divide by 1) and every
    BatchNorm unchanged. So, per frame and in eval mode: (1) the stem (conv1, bn1, relu, max-pool) equals the 2-D
    stem; (2) every block WITHOUT a CoST layer (all its convs 1 x k x k) equals the 2-D block on the same input,
    e.g. layer1.0, the first block (official pattern (0, 1, 0)), on the stem's output; (3) the H-W view of every
    CoST layer equals the 2-D 3x3 conv it was inflated from. The T-W and T-H views mix positions along H or W
    within a frame, so a CoST block's output is NOT the 2-D block's, even on identical frames: not compared.
    (4) Every tensor, CoST blocks included, is checked by name against the rule itself.
    """
    # catches: a kernel divided by the wrong t, BN statistics not copied, a transposed CoST kernel, the stem's
    # 7x7 kernel put on the wrong axis, two same-shaped tensors swapped (e.g. bn1 <-> bn2 of a CoST block)
    import torchvision

    from ssl_video.models.cost import cost_layers

    resnet = torchvision.models.resnet50(weights=None)
    resnet.load_state_dict(randomise(resnet.state_dict()))
    resnet.eval()
    torch.save(resnet.state_dict(), tmp_path / "resnet50.pth")
    assert run_import("imagenet2d", tmp_path / "resnet50.pth", "--variant", "a", "--out", tmp_path / "enc") == 0
    cost = ssl_video.load_encoder(tmp_path / "enc")
    frame = torch.randn(1, 3, 32, 32)
    clip = frame.unsqueeze(2).expand(1, 3, 4, 32, 32).contiguous()

    def per_frame(x3d):  # N C T H W -> every frame, N*T C H W
        return x3d.transpose(1, 2).reshape(-1, *x3d.shape[1:2], *x3d.shape[3:])

    with torch.no_grad():
        stem2d = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(frame))))
        stem3d = cost.maxpool(cost.relu(cost.bn1(cost.conv1(clip))))
        torch.testing.assert_close(per_frame(stem3d), stem2d.expand(4, -1, -1, -1))  # (1)
        torch.testing.assert_close(per_frame(cost.layer1[0](stem3d)), resnet.layer1[0](stem2d).expand(4, -1, -1, -1))
        pattern = ((0, 1, 0), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (1, 0, 1))  # official; checked in test_cost
        compared = 0
        for stage, row in enumerate(pattern[:3]):  # (2) every later 1x3x3 block of layers 1-3, 4 x 4 maps
            for index, has_cost in enumerate(row):
                if has_cost or index == 0:
                    continue
                block2d = getattr(resnet, f"layer{stage + 1}")[index]
                x2d = torch.randn(1, block2d.conv1.in_channels, 4, 4)
                x3d = x2d.unsqueeze(2).expand(-1, -1, 4, -1, -1).contiguous()
                block3d = getattr(cost, f"layer{stage + 1}")[index]
                torch.testing.assert_close(per_frame(block3d(x3d)), block2d(x2d).expand(4, -1, -1, -1))
                compared += 1
        assert compared == 6
        for name, layer in cost_layers(cost):  # (3)
            conv2d = resnet.get_submodule(name)
            inp = torch.randn(1, layer.weight.shape[1], 1, 6, 6)
            hw, _, _ = layer.view_outputs(inp)
            torch.testing.assert_close(hw[:, :, 0], conv2d(inp[:, :, 0]))
        # (4) the by-hand table, tensor by tensor (CoST blocks included, whose outputs (1)-(3) do not compare):
        # same name; a 2-D kernel C x C' x k x k becomes C x C' x 1 x k x k (t = 1: repeated once, divided by 1),
        # or the shared C x C' x 3 x 3 kernel of a CoST layer as it is; BatchNorm tensors copied; fc.* dropped
        inflated = cost.state_dict()
        for key, value in resnet.state_dict().items():
            if key.startswith("fc."):
                assert not any(k.startswith("fc.") for k in inflated)
                continue
            target = inflated[key]
            expected = value.unsqueeze(2) if target.ndim == 5 else value
            assert target.shape == expected.shape and torch.equal(target, expected), key
        # CoST(a) coefficients keep the official start, 67% / 16.5% / 16.5%
        first = cost_layers(cost)[0][1]
        torch.testing.assert_close(torch.softmax(first.view_logits, -1)[0],
                                   torch.tensor([0.6698, 0.1651, 0.1651]), atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------- timm


def test_timm_checkpoint_into_the_frame_level_encoder(tmp_path):
    # catches: the classifier kept, flattened feature-net names not matched, a wrapper not unwrapped
    import timm

    full = timm.create_model("resnet10t", pretrained=False)
    full.load_state_dict(randomise(full.state_dict()))
    torch.save({"state_dict_ema": full.state_dict()}, tmp_path / "resnet10t.pth")
    assert run_import("timm", tmp_path / "resnet10t.pth", "--arch", "resnet10t", "--out", tmp_path / "enc") == 0
    encoder = ssl_video.load_encoder(tmp_path / "enc")
    frames = X[:, :, :2].transpose(1, 2).reshape(4, 3, 32, 32)
    with torch.no_grad():
        expected = full.eval().forward_features(frames).mean(dim=(2, 3)).reshape(2, 2, -1).mean(dim=1)
        torch.testing.assert_close(encoder(X[:, :, :2]), expected)


# ---------------------------------------------------------------------------------------------- errors


def test_numpy_meta_written_under_numpy_1_or_2_is_read(tmp_path):
    # catches: the numpy 1 module name (numpy.core.multiarray) missing from the classes the reader rebuilds
    # (an MMCV checkpoint written before numpy 2 names its scalars that way)
    import zipfile

    from ssl_video.models.imports import read_checkpoint

    torch.save({"meta": {"best_score": np.float64(0.5), "shape": np.arange(2.0)}, "w": torch.ones(1)},
               tmp_path / "numpy2.pth")
    with zipfile.ZipFile(tmp_path / "numpy2.pth") as source, zipfile.ZipFile(tmp_path / "numpy1.pth", "w") as out:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith("data.pkl"):  # the module name numpy 1 wrote
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            out.writestr(item, data)
    for name in ("numpy2.pth", "numpy1.pth"):
        meta = read_checkpoint(tmp_path / name)["meta"]
        assert meta["best_score"] == 0.5 and meta["shape"].tolist() == [0.0, 1.0]


class Opaque:
    """A class of the caller's own: unpickling it would run the caller's code."""


def test_damaged_wrong_and_pickled_files_are_one_line_errors(tmp_path, capsys):
    # catches: torch.load without weights_only (the pickle would run), tracebacks on truncated files,
    # wrong-architecture files accepted, unknown keys silently dropped, missing keys filled in, shapes not checked
    import torchvision

    good = torchvision.models.video.r3d_18(weights=None).state_dict()
    torch.save(good, tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pth").write_bytes(b"\x00not a checkpoint" * 10)
    torch.save({"model": good, "args": Opaque()}, tmp_path / "pickled.pth")
    torch.save({"model": good, "meta": np.array([Opaque()], dtype=object)}, tmp_path / "object_array.pth")
    torch.save({"model": {f"features.{k}": v for k, v in good.items()}}, tmp_path / "r2plus1d_34-x.pth")
    extra = dict(good, **{"layer5.0.weight": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pth")
    torch.save({k: v for k, v in good.items() if k != "layer4.1.conv2.1.weight"}, tmp_path / "missing_key.pth")
    wrong_shape = dict(good, **{"layer4.1.conv2.0.weight": torch.zeros(512, 512, 1, 3, 3)})
    torch.save(wrong_shape, tmp_path / "wrong_shape.pth")
    cases = [
        (["torchvision", tmp_path / "truncated.pth", "--arch", "r3d_18"], "corrupt or truncated"),
        (["torchvision", tmp_path / "garbage.pth", "--arch", "r3d_18"], "corrupt or truncated"),
        (["tsp", tmp_path / "pickled.pth", "--arch", "r3d_18"],
         "the file holds Python objects besides tensors; refusing to unpickle it"),
        (["torchvision", tmp_path / "object_array.pth", "--arch", "r3d_18"],
         "the file holds Python objects besides tensors; refusing to unpickle it"),
        (["tsp", tmp_path / "r2plus1d_34-x.pth"], "does not fit the architecture"),
        (["torchvision", tmp_path / "good.pth", "--arch", "r2plus1d_18"], "does not fit the architecture"),
        (["torchvision", tmp_path / "extra.pth", "--arch", "r3d_18"], "unknown key.*layer5.0.weight"),
        (["torchvision", tmp_path / "missing_key.pth", "--arch", "r3d_18"], "missing key.*layer4.1.conv2.1.weight"),
        (["torchvision", tmp_path / "wrong_shape.pth", "--arch", "r3d_18"],
         r"shape mismatch.*layer4\.1\.conv2\.0\.weight \(512, 512, 1, 3, 3\) vs \(512, 512, 3, 3, 3\)"),
        (["gdt", tmp_path / "good.pth"], "not a GDT checkpoint"),
        (["mmaction2", tmp_path / "good.pth"], "not an MMAction2 checkpoint"),
        (["torchvision", tmp_path / "missing.pth", "--arch", "r3d_18"], "no such checkpoint file"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert run_import(*argv, "--out", tmp_path / "out") == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and re.search(message, err), (argv, err)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- use


def test_linear_probe_on_an_imported_torchvision_encoder(tmp_path, synth):
    # catches: an imported directory that --encoder does not take like an exported one
    import torchvision

    net = torchvision.models.video.r2plus1d_18(weights=None)
    torch.save(net.state_dict(), tmp_path / "r2plus1d_18.pth")
    assert run_import("torchvision", tmp_path / "r2plus1d_18.pth", "--arch", "r2plus1d_18", "--out",
                      tmp_path / "enc") == 0
    out = tmp_path / "probe"
    assert main(["eval", "linear-probe", "--encoder", str(tmp_path / "enc"), "--dataset", "synthetic", "--root",
                 str(synth), "--clips", "1", "--frames", "4", "--fps", "8", "--crop", "32", "--resize", "32",
                 "--workers", "0", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    assert (out / "report.json").is_file()


def test_stica_takes_encoder_directories(tmp_path):
    # catches: stica.*_encoder going around resolve_encoder (a directory refused, or its weights not used)
    from ssl_video.methods.stica import STiCA
    from ssl_video.recipe import load_recipe

    video = ssl_video.create_encoder("r2plus1d_18", width=0.125, frames=4, crop_size=32)
    save_encoder(video, tmp_path / "v")
    recipe = load_recipe("recipes/stica_tiny_synthetic.yaml", [f"stica.video_encoder={tmp_path / 'v'}"])
    recipe.stica.video_encoder_args = {}  # a directory carries its own arguments
    method = STiCA.from_recipe(recipe)
    for key, value in video.state_dict().items():
        assert torch.equal(method.video_encoder.state_dict()[key], value)
    bad = load_recipe("recipes/stica_tiny_synthetic.yaml", [f"stica.audio_encoder={tmp_path / 'v'}"])
    bad.stica.audio_encoder_args = {}
    with pytest.raises(UserError, match="stica.audio_encoder: .* is a video encoder"):
        STiCA.from_recipe(bad)


def test_tsp_paper_recipe_refuses_random_init(tmp_path, capsys):
    # catches: a paper recipe silently training TSP from random weights
    code = main(["pretrain", "recipes/tsp_r2p1d34_activitynet.yaml", f"data.videos={tmp_path}",
                 "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "tsp.allow_random_init" in err and "ssl-video import tsp" in err
