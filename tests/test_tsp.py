"""The TSP method (and TAC = region weight 0): heads, losses, parameter groups, frozen stem, the builder,
the recipes, training through the shared loop, and the temporal-sensitivity report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssl_video.cli import main
from ssl_video.config import load_config
from ssl_video.data.datasets.tsp import read_ground_truth_csv
from ssl_video.data.segment_dataset import usable_segments
from ssl_video.data.synth_untrimmed import generate_untrimmed_dataset
from ssl_video.engine.trainer import train
from ssl_video.errors import ConfigError, UserError
from ssl_video.features.gvf import compute_gvf
from ssl_video.features.videos import list_videos
from ssl_video.methods import build_method
from ssl_video.methods.tsp import TSP
from ssl_video.models.io import resolve_encoder
from ssl_video.models.registry import create_encoder
from ssl_video.recipe import Recipe
from ssl_video.recipe.methods import TSPConfig
from tests.factories import TINY_VIDEO as TINY
from tests.factories import recipe_from, tiny_clip

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def tiny_tsp(num_classes=3, **kwargs) -> TSP:
    torch.manual_seed(0)
    return TSP(create_encoder("r2plus1d_18", **TINY), num_classes, **kwargs)


def batch(labels, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    label = torch.tensor(labels)
    return {"video": torch.randn(len(labels), 3, 4, 32, 32, generator=g), "label": label,
            "region": (label >= 0).long(), "gvf": torch.randn(len(labels), dim, generator=g)}


def test_region_head_gets_local_concat_global():
    method = tiny_tsp().eval()
    b = batch([0, -1, 2, -1], method.video_encoder.spec.feature_dim)
    seen = []
    method.region_head.register_forward_hook(lambda mod, args, out: seen.append(args[0].detach()))
    out = method(b)
    local = method.video_encoder(b["video"]).detach()
    assert method.region_head.in_features == 2 * local.shape[1]
    torch.testing.assert_close(seen[0], torch.cat([local, b["gvf"]], dim=1), rtol=0, atol=0)
    logits = method.region_head(seen[0])
    torch.testing.assert_close(out["loss_region"], F.cross_entropy(logits, b["region"]))


def test_background_never_reaches_the_action_loss():
    dim = tiny_tsp().video_encoder.spec.feature_dim
    b = batch([1, -1, 0, -1, -1], dim)
    fg = b["label"] >= 0
    tac = tiny_tsp(region_weight=0.0).eval()  # eval: BatchNorm does not mix the clips of a batch
    logits = []

    def keep(module, args, output):
        output.retain_grad()
        logits.append(output)

    tac.action_head.register_forward_hook(keep)
    out = tac(b)
    torch.testing.assert_close(out["loss_action"], F.cross_entropy(logits[0][fg], b["label"][fg]).detach())
    out["loss"].backward()
    assert logits[0].grad[~fg].abs().sum() == 0 and logits[0].grad[fg].abs().sum() > 0
    # replacing the background clips changes nothing in the action loss (but the region loss)
    method = tiny_tsp().eval()
    out = method(b)
    other = dict(b, video=b["video"].clone())
    other["video"][~fg] = torch.randn_like(other["video"][~fg])
    changed = method(other)
    torch.testing.assert_close(changed["loss_action"], out["loss_action"])
    assert not torch.equal(changed["loss_region"], out["loss_region"])
    # a batch with background only: a zero action loss, not NaN
    only_bg = method(batch([-1, -1], dim))
    assert only_bg["loss_action"].item() == 0 and torch.isfinite(only_bg["loss"])


@pytest.mark.parametrize("action_weight, region_weight", [(1.0, 1.0), (0.5, 2.0), (1.0, 0.0)])
def test_loss_is_the_weighted_sum(action_weight, region_weight):
    method = tiny_tsp(action_weight=action_weight, region_weight=region_weight).eval()
    out = method(batch([0, -1, 1], method.video_encoder.spec.feature_dim))
    region = out.get("loss_region", torch.zeros(()))
    torch.testing.assert_close(out["loss"].detach(), action_weight * out["loss_action"] + region_weight * region)
    if region_weight == 0:  # TAC: no region head, no GVF needed
        assert method.region_head is None and "loss_region" not in out
        b = batch([0, -1, 1], 8)
        del b["gvf"]
        assert torch.isfinite(method(b)["loss"])


def test_region_head_without_gvf():
    method = tiny_tsp(use_gvf=False).eval()
    assert method.region_head.in_features == method.video_encoder.spec.feature_dim
    b = batch([0, -1], 8)
    del b["gvf"]
    assert torch.isfinite(method(b)["loss"])
    with pytest.raises(UserError, match="no 'gvf'"):
        tiny_tsp()(b)


def test_parameter_groups_and_frozen_stem():
    method = tiny_tsp(backbone_lr_scale=0.05, freeze_stem=True)
    groups = {g["name"]: g for g in method.parameter_groups()}
    assert groups["backbone"]["lr_scale"] == 0.05 and groups["heads"]["lr_scale"] == 1.0
    stem = {id(p) for p in method.video_encoder.stem.parameters()}
    trainable = {id(p) for p in method.parameters() if p.requires_grad}
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    assert len(grouped) == len(set(grouped)) and set(grouped) == trainable and not stem & trainable
    assert {id(p) for p in groups["heads"]["params"]} == {id(p) for h in (method.action_head, method.region_head)
                                                          for p in h.parameters()}
    method.train()
    assert not method.video_encoder.stem.training and method.video_encoder.layer1.training
    before = {k: v.clone() for k, v in method.video_encoder.stem.state_dict().items()}
    method(batch([0, -1, 1, -1], method.video_encoder.spec.feature_dim))["loss"].backward()
    assert all(torch.equal(before[k], v) for k, v in method.video_encoder.stem.state_dict().items())
    assert all(p.grad is None for p in method.video_encoder.stem.parameters())


def test_config_checks():
    from ssl_video.recipe import load_recipe

    with pytest.raises(ConfigError, match=r"'tsp\.region_weight'.*nothing to learn"):
        load_recipe(base={"method": "tsp", "data": {"dataset": "tsp"}, "tsp": {"action_weight": 0, "region_weight": 0}})
    with pytest.raises(ConfigError, match=r"'tsp\.clips_per_segment'"):
        load_recipe(base={"method": "tsp", "data": {"dataset": "tsp"}, "tsp": {"clips_per_segment": 0}})
    with pytest.raises(ConfigError, match=r"'data\.dataset'.*untrimmed"):
        load_recipe(base={"method": "tsp", "data": {"dataset": "ucf101"}})
    assert TSPConfig(region_weight=0).uses_gvf is False and TSPConfig().uses_gvf


# ---------------------------------------------------------------------------------------------- data + builder


@pytest.fixture(scope="module")
def untrimmed(tmp_path_factory):
    out = tmp_path_factory.mktemp("tsp_data")
    generate_untrimmed_dataset(out, videos=4, classes=2, seconds=6.0, fps=16.0, size=(32, 32),
                               segment_seconds=(1.0, 2.0), gap_seconds=(0.75, 1.5), seed=2, progress=False)
    from ssl_video.features.protocol import ClipProtocol

    encoder = resolve_encoder("r2plus1d_18", {"width": 0.0625}, seed=1)
    compute_gvf(encoder, list_videos(str(out / "videos")), out / "gvf.h5", stride=4, device="cpu", workers=0,
                protocol=ClipProtocol(clips=1, frames=4, fps=8.0, resize=32, crop=32), progress=False)
    return out


def tsp_recipe(root: Path, tmp_path: Path, **tsp) -> Recipe:
    data = {
        "name": "tsp_test", "seed": 1, "method": "tsp",
        "data": {"dataset": "tsp", "videos": str(root / "videos"), "batch_size": 4, "num_workers": 0,
                 "clip": tiny_clip()},
        "optim": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0},
        "trainer": {"max_steps": 3, "log_every": 1, "checkpoint_every": 0, "progress": False, "tensorboard": False,
                    "device": "cpu"},
        "tsp": {"encoder": "r2plus1d_18", "encoder_args": {"width": 0.0625}, "allow_random_init": True, "train_csv": str(root / "train_groundtruth.csv"),
                "gvf": str(root / "gvf.h5"), "clips_per_segment": 2, "freeze_stem": False, **tsp},
    }
    return recipe_from(tmp_path, data)


def test_builder(untrimmed, tmp_path):
    method, dataset = build_method(tsp_recipe(untrimmed, tmp_path, backbone_lr_scale=0.1))
    segments = read_ground_truth_csv(untrimmed / "train_groundtruth.csv")
    assert len(dataset) == 2 * len(usable_segments(segments, 0.5))
    assert method.action_head.out_features == len({s.label for s in segments if s.action})
    sample = dataset[0]
    assert sample["video"].shape == (3, 4, 32, 32) and sample["gvf"].shape == (method.video_encoder.spec.feature_dim,)
    # the initial encoder is the GVF's encoder (same zoo name, same seed): its weights match
    gvf_encoder = resolve_encoder("r2plus1d_18", {"width": 0.0625}, seed=1).model
    assert all(torch.equal(a, b) for a, b in zip(gvf_encoder.state_dict().values(),
                                                 method.video_encoder.state_dict().values()))
    assert method.encoders()["video"]["args"]["frames"] == 4  # the input contract follows data.clip
    tac, _ = build_method(tsp_recipe(untrimmed, tmp_path, region_weight=0.0, gvf=None))
    assert tac.region_head is None and "gvf" not in _[0]


def test_builder_starts_from_an_encoder_directory(untrimmed, tmp_path):
    # catches: an encoder directory refused like a zoo name when tsp.allow_random_init is false (as in the paper
    # recipes), or its weights not the ones TSP starts from
    from ssl_video.models.io import save_encoder

    encoder = resolve_encoder("r2plus1d_18", {"width": 0.0625}, seed=5).model
    save_encoder(encoder, tmp_path / "enc")
    method, _ = build_method(tsp_recipe(untrimmed, tmp_path, encoder=str(tmp_path / "enc"), encoder_args={},
                                        allow_random_init=False))
    for key, value in encoder.state_dict().items():
        assert torch.equal(method.video_encoder.state_dict()[key], value), key
    with pytest.raises(ConfigError, match=r"tsp\.encoder.*ssl-video import tsp .*tsp\.allow_random_init"):
        build_method(tsp_recipe(untrimmed, tmp_path, allow_random_init=False))


@pytest.mark.parametrize("overrides, key", [
    ({"gvf": None}, "tsp.gvf"),
    ({"train_csv": None}, "tsp.train_csv"),
    ({"num_classes": 1}, "tsp.num_classes"),
    ({"encoder_args": {"width": 0.125}}, "tsp.gvf"),  # 8-d GVF for a 16-d encoder
])
def test_builder_errors_name_the_key(untrimmed, tmp_path, overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_method(tsp_recipe(untrimmed, tmp_path, **overrides))


def test_trains_and_exports_through_the_shared_loop(untrimmed, tmp_path):
    recipe = tsp_recipe(untrimmed, tmp_path, freeze_stem=True)
    summary = train(recipe, tmp_path / "run", handle_signals=False)
    assert summary["status"] == "completed" and summary["step"] == 3
    metrics = summary["metrics"]
    assert {"loss", "loss_action", "loss_region", "top1_action", "top1_region", "lr/backbone", "lr/heads"} <= set(metrics)
    assert np.isfinite(metrics["loss"])
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "enc")]) == 0
    report = tmp_path / "eval"
    assert main(["eval", "temporal", "--encoder", str(tmp_path / "enc"), "--gt",
                 str(untrimmed / "train_groundtruth.csv"), "--test-gt", str(untrimmed / "val_groundtruth.csv"),
                 "--videos", str(untrimmed / "videos"), "--workers", "0", "--clips", "2",
                 "--device", "cpu", "--out", str(report)]) == 0
    result = json.loads((report / "report.json").read_text())
    val = usable_segments(read_ground_truth_csv(untrimmed / "val_groundtruth.csv"), 0.5)
    assert result["test_clips"] == 2 * len(val) and 0.0 <= result["fg_bg_top1"] <= 1.0
    assert result["foreground_fraction_test"] == pytest.approx(np.mean([s.action for s in val]))
    assert (report / "report.md").is_file()


def test_temporal_probe_split_by_video(untrimmed, tmp_path):
    from ssl_video.evaluation.temporal import TemporalInputs, run_temporal, split_videos

    held = split_videos(["a", "b", "c", "a", "d"], 0.3, seed=0)
    assert len(held) == 1 and held == split_videos(["d", "c", "b", "a"], 0.3, seed=0)
    report = run_temporal(TemporalInputs(encoder="r2plus1d_18", encoder_args={"width": 0.0625}, frames=4, fps=8,
                                         resize=32, crop=32, gt=str(untrimmed / "train_groundtruth.csv"),
                                         videos=str(untrimmed / "videos"), test_fraction=0.34, clips_per_segment=1,
                                         workers=0, device="cpu", out=str(tmp_path / "t"), progress=False))
    total = len(usable_segments(read_ground_truth_csv(untrimmed / "train_groundtruth.csv"), 0.5))
    assert report["train_clips"] + report["test_clips"] == total
    assert 0 <= report["background_recall"] <= 1 and 0 <= report["fg_bg_top1"] <= 1
    assert json.loads((tmp_path / "t" / "report.json").read_text())["table"][0]["encoder"] == "r2plus1d_18"


# ---------------------------------------------------------------------------------------------- recipes


@pytest.mark.parametrize("name", ["tsp_r2p1d34_activitynet", "tsp_r2p1d34_thumos14", "tac_r2p1d34_activitynet",
                                  "tac_r2p1d34_thumos14",
                                  "tsp_tiny_synthetic", "tac_tiny_synthetic"])
def test_recipes_load(name):
    recipe = load_config(Recipe, RECIPES / f"{name}.yaml")
    assert recipe.method == "tsp" and recipe.data.dataset == "tsp"
    assert (recipe.tsp.region_weight == 0) == name.startswith("tac")
    if "tiny" not in name:  # the published settings
        # train/train_{tsp,tac}_on_{activitynet,thumos14}.sh: FC_LR and BACKBONE_LR; R(2+1)D-34 everywhere
        head_lr, backbone_lr = {"tsp_activitynet": (2e-3, 1e-4), "tsp_thumos14": (4e-3, 1e-4),
                                "tac_activitynet": (2e-3, 1e-4), "tac_thumos14": (2e-3, 1e-5)}[
            name.split("_")[0] + "_" + name.rsplit("_", 1)[1]]
        assert recipe.optim.lr == pytest.approx(head_lr) and recipe.tsp.encoder == "r2plus1d_34"
        assert recipe.optim.lr * recipe.tsp.backbone_lr_scale == pytest.approx(backbone_lr)
        assert (recipe.optim.name, recipe.optim.momentum, recipe.optim.weight_decay) == ("sgd", 0.9, 0.005)
        assert recipe.data.clip.decode_size == (128, 171)  # official T.Resize((128, 171)), aspect not kept
        assert recipe.trainer.epochs == 8 and recipe.optim.warmup == 2 and recipe.optim.milestones == [4, 6]
        assert recipe.data.batch_size == 32 and recipe.tsp.clips_per_segment == 5 and recipe.tsp.freeze_stem
        assert (recipe.data.clip.frames, recipe.data.clip.fps, recipe.data.clip.video.crop) == (16, 15.0, 112)
        assert recipe.optim.lr_scaling == "world_size"


# ---------------------------------------------------------------------------------------------- validation


def test_validation_terms_match_the_official_accuracies():
    # official train.py evaluate(): per head, top-1 over the clips with a label (action: foreground only),
    # "Avg Accuracy" = mean of the heads. Catches: scoring the action head on background clips too, or
    # averaging clip-weighted over heads instead of over heads.
    method = tiny_tsp(num_classes=3).eval()
    b = batch([0, -1, 2, -1, 1, 1], method.video_encoder.spec.feature_dim)
    with torch.no_grad():
        terms = method.validation_terms(b)
        local = method.video_encoder(b["video"])
        action = method.action_head(local).argmax(1)
        region = method.region_head(torch.cat([local, b["gvf"]], 1)).argmax(1)
    fg = [i for i, y in enumerate([0, -1, 2, -1, 1, 1]) if y >= 0]
    hand_action = sum(int(action[i]) == int(b["label"][i]) for i in fg) / len(fg)
    hand_region = sum(int(region[i]) == int(b["region"][i]) for i in range(6)) / 6
    means = {k: float(s) / float(c) for k, (s, c) in terms.items()}
    assert means["top1_action"] == pytest.approx(hand_action) and means["top1_region"] == pytest.approx(hand_region)
    assert method.validation_summary(means)["accuracy"] == pytest.approx((hand_action + hand_region) / 2)


def test_best_epoch_keeps_the_best_value_and_reads_it_back(tmp_path):
    # Catches: keeping the latest epoch instead of the best, or ignoring best_mode: min.
    from ssl_video.engine.validation import BestEpoch

    best = BestEpoch("val/accuracy", "max", tmp_path / "best.json")
    picked = []
    for epoch, value in enumerate([0.3, 0.5, 0.4, float("nan")], start=1):
        if best.improves({"val/accuracy": value}):
            best.update({"val/accuracy": value}, epoch, epoch * 10, write=True)
            picked.append(epoch)
    assert picked == [1, 2] and best.epoch == 2
    again = BestEpoch("val/accuracy", "max", tmp_path / "best.json")
    assert (again.value, again.epoch) == (0.5, 2) and not again.improves({"val/accuracy": 0.45})
    low = BestEpoch("val/loss_action", "min", tmp_path / "other.json")
    assert low.improves({"val/loss_action": 2.0})
    low.update({"val/loss_action": 2.0}, 1, 1, write=False)
    assert low.improves({"val/loss_action": 1.0}) and not low.improves({"val/loss_action": 3.0})
    with pytest.raises(ConfigError, match=r"trainer\.best_metric"):
        BestEpoch("val/nope", "max", tmp_path / "x.json").improves({"val/accuracy": 1.0})


@pytest.mark.parametrize("overrides, key", [
    ({"valid_csv": "thumos14_test_tsp_groundtruth.csv"}, "tsp.valid_csv"),
    ({"train_csv": "a.csv", "valid_csv": "a.csv"}, "tsp.valid_csv"),
    ({"valid_csv": "a.csv", "valid_videos": "test"}, "tsp.valid_videos"),  # the official THUMOS VALID_SUBDIR
])
def test_validation_split_is_never_a_test_split(tmp_path, overrides, key):
    for name in ("a.csv", "thumos14_test_tsp_groundtruth.csv"):
        (tmp_path / name).write_text("")
    (tmp_path / "test").mkdir()
    path = tmp_path / "r.yaml"
    tsp = {k: str(tmp_path / v) for k, v in overrides.items()}
    path.write_text(json.dumps({"method": "tsp", "data": {"dataset": "tsp"}, "tsp": tsp}))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(Recipe, path)
    path.write_text(json.dumps({"method": "tsp", "data": {"dataset": "tsp"}, "trainer": {"best_metric": "loss"}}))
    with pytest.raises(ConfigError, match=r"trainer\.best_metric"):
        load_config(Recipe, path)


def test_validates_every_epoch_keeps_best_and_exports_it(untrimmed, tmp_path):
    recipe = tsp_recipe(untrimmed, tmp_path, valid_csv=str(untrimmed / "val_groundtruth.csv"))
    recipe.trainer.max_steps, recipe.trainer.epochs, recipe.trainer.best_metric = None, 2, "val/accuracy"
    summary = train(recipe, tmp_path / "run", handle_signals=False)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [x for x in lines if "val/accuracy" in x]
    assert [x["epoch"] for x in val] == [1, 2]
    best = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    values = [x["val/accuracy"] for x in val]
    assert best["value"] == max(values) and best["epoch"] == 1 + values.index(max(values))
    assert summary["best"]["epoch"] == best["epoch"]
    assert main(["export", str(tmp_path / "run"), "--epoch", "best", "--out", str(tmp_path / "enc")]) == 0
    config = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert config["provenance"]["step"] == best["step"] and config["provenance"]["source"].endswith("best.pt")
