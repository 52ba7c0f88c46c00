"""What a new user meets in the first hour: every bad input is one line on stderr with exit code 2 before any
work starts and leaves nothing on disk; hints name options that exist; runs can be extended and restarted;
exports are readable and described; the Python API is discoverable.

Each test names, in a comment, the code change it catches.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ssl_video.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY_RECIPE = REPO / "recipes" / "stica_tiny_synthetic.yaml"
# 2 steps of the tiny STiCA recipe on 8 videos of 16 x 16 pixels: seconds on a CPU
TINY = ["data.batch_size=4", "data.num_workers=0", "trainer.max_steps=2", "data.clip.frames=4",
        "data.clip.resize=16", "data.clip.video.crop=16", "trainer.log_every=1", "trainer.tensorboard=false"]


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, err: str, *fragments: str) -> str:
    """Exit code 2, exactly one line on stderr (no traceback) holding every fragment."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("ssl-video: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from ssl_video.data.synth import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("data") / "synth"
    generate_synthetic_dataset(root, classes=2, videos_per_class=4, seconds=1.0, size=(16, 16), seed=0)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth) -> Path:
    """A finished 2-step run of the tiny recipe."""
    from ssl_video.engine.trainer import train
    from ssl_video.recipe import load_recipe

    run = tmp_path_factory.mktemp("runs") / "x"
    train(load_recipe(TINY_RECIPE, [f"data.root={synth}", *TINY]), run, recipe_path=TINY_RECIPE)
    return run


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained) -> Path:
    from ssl_video.export import export_encoder

    out = tmp_path_factory.mktemp("enc") / "x"
    old = os.umask(0o022)
    try:
        export_encoder(trained, out)
    finally:
        os.umask(old)
    return out


# ---------------------------------------------------------------------------------------------- refused starts


@pytest.mark.parametrize("override, fragment", [
    # mutation: drop bounded(gt=0) on optim.lr -> the trainer starts and crashes (or trains nonsense)
    ("optim.lr=-1", "optim.lr"),
    # mutation: drop bounded(gt=0) on data.clip.fps -> ZeroDivisionError in the sampler
    ("data.clip.fps=0", "data.clip.fps"),
    # mutation: drop bounded(ge=0) on data.num_workers -> DataLoader ValueError traceback
    ("data.num_workers=-1", "data.num_workers"),
    ("data.batch_size=-4", "data.batch_size"),
    ("trainer.max_steps=0", "trainer.max_steps"),
    ("method=foo", "unknown method 'foo'"),
    # mutation: remove check_encoder_name from StiCAConfig.check -> accepted, fails when the model is built
    ("stica.video_encoder=r2plus1d_99", "did you mean r2plus1d_34 or r2plus1d_18"),
    ("stica.audio_encoder=r2plus1d_18", "is a video encoder"),
    ("stica.video_encoder=encoders/none", "encoder directory does not exist"),
    # mutation: drop the difflib hint for Literal values in config._coerce
    ("data.dataset=ucf", "did you mean 'ucf101'"),
])
@pytest.mark.parametrize("command", ["pretrain", "config-show"])
def test_bad_recipe_values_are_one_line_and_leave_nothing(command, override, fragment, synth, tmp_path, capsys,
                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = (["pretrain", TINY_RECIPE, f"data.root={synth}", override, "--run-dir", "runs/a"] if command == "pretrain"
            else ["config", "show", TINY_RECIPE, override])
    code, out, err = run_cli(argv, capsys)
    assert_refused(code, err, fragment)
    assert tree(tmp_path) == []  # mutation: create the run directory before the recipe is checked


def test_pretrain_without_data_leaves_no_run_directory_and_names_recipe_keys(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["pretrain", TINY_RECIPE, "--run-dir", "runs/b"], capsys)
    line = assert_refused(code, err, "data.root=DIR", "data.videos=DIR and data.splits=DIR")
    # mutation: the dataset parser's hint back to '--root DIR ... or --videos and --splits' (no such flags here)
    assert "--root" not in line and "--videos" not in line
    # mutation: _prepare_run_dir before build_method in trainer._setup (the run directory was left behind)
    assert tree(tmp_path) == []


def test_refused_start_with_too_few_clips_leaves_no_run_directory(synth, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["pretrain", TINY_RECIPE, f"data.root={synth}", *TINY, "data.batch_size=64",
                            "--run-dir", "runs/c"], capsys)
    assert_refused(code, err, "fewer than one optimizer step")
    assert tree(tmp_path) == []  # mutation: _prepare_run_dir before _lengths


@pytest.mark.parametrize("text, fragment", [
    # mutation: read_yaml returns {} for an empty file -> a recipe called 'unnamed' with every default
    ("", "is empty"),
    # mutation: read_yaml drops the parser's problem text -> only the line
    ("name: x\ndata:\n  batch_size: 4\n   root: y\n", "line 4, column 8: mapping values are not allowed here"),
    ("name: [x\n", "expected ',' or ']'"),
])
def test_bad_recipe_files(text, fragment, tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    code, out, err = run_cli(["config", "show", path], capsys)
    assert_refused(code, err, fragment)
    assert out == ""


def test_recipe_schema_stays_torch_free_and_lists_the_zoo():
    # mutation: import ssl_video.models.registry from ssl_video.recipe.encoders (torch in `config show`)
    code = "import sys, ssl_video.recipe, ssl_video.recipe.encoders; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
    from ssl_video.models.registry import list_encoders
    from ssl_video.recipe.encoders import known_encoders

    # mutation: a zoo encoder added to the registry but not to ZOO_NAMES (recipes would refuse it)
    for modality in ("video", "audio"):
        assert set(known_encoders(modality)) >= set(list_encoders(modality=modality))


def test_timm_names_and_encoder_directories_pass_the_recipe(exported, capsys):
    for value in ("timm:resnet18", str(exported), str(exported / "config.json")):
        code, out, err = run_cli(["config", "show", TINY_RECIPE, f"stica.video_encoder={value}"], capsys)
        assert code == 0, err  # mutation: check_encoder_name refusing prefixes or directories
        assert yaml.safe_load(out)["stica"]["video_encoder"] == value


# ---------------------------------------------------------------------------------------------- data commands


def test_data_check_bad_workers_and_unusable_dataset(synth, tmp_path, capsys):
    code, _, err = run_cli(["data", "check", "--dataset", "synthetic", "--root", synth, "--workers", "-1"], capsys)
    assert_refused(code, err, "--workers must be at least 1")  # mutation: no check -> ThreadPoolExecutor ValueError
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run_cli(["data", "check", "--dataset", "folder", "--root", empty], capsys)
    # mutation: run_check returning 0 whatever report["usable"] says (the help promises 0 only when usable)
    assert_refused(code, err, "not usable")
    assert "usable: NO" in out


@pytest.mark.parametrize("flags, fragment", [
    ([], "--root DIR"),
    (["--videos", "x"], "--split-dir DIR"),  # the split-file directory flag, as in eval
])
def test_data_check_hints_name_its_flags(flags, fragment, capsys, tmp_path, monkeypatch):
    (tmp_path / "x").mkdir()
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["data", "check", "--dataset", "ucf101", *flags], capsys)
    assert_refused(code, err, fragment)


def test_splits_means_split_numbers_in_every_command():
    import argparse

    from ssl_video.cli import build_parser

    def walk(parser, path=()):
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, (*path, name))

    seen = {}
    for path, parser in walk(build_parser()):
        for action in parser._actions:
            for option in action.option_strings:
                seen.setdefault(option, []).append((" ".join(path), action.help or ""))
    # mutation: data check's split-file directory back under --splits (split numbers in eval)
    assert seen["--splits"] and all("split numbers" in text for _, text in seen["--splits"]), seen["--splits"]
    assert ("data check" in {cmd for cmd, _ in seen["--split-dir"]}
            and all("directory" in text for _, text in seen["--split-dir"]))


@pytest.mark.parametrize("argv, fragment", [
    (["pretrain"], "pretrain: the following arguments are required: recipe (see ssl-video pretrain --help)"),
    (["data", "check"], "data check: the following arguments are required: --dataset"),
    (["zoo", "list", "--bogus"], "zoo list: unrecognized arguments: --bogus (see ssl-video zoo list --help)"),
    (["data", "check", "--dataset", "ucf101", "--splits", "x"], "data check: unrecognized arguments: --splits x"),
    (["eval", "linear-probe", "--dataset", "nope"], "argument --dataset: invalid choice: 'nope'"),
    (["nope"], "argument COMMAND: invalid choice: 'nope'"),
])
def test_parse_errors_are_one_line(argv, fragment, capsys):
    # mutation: drop Parser.error -> argparse's usage block before the error (several lines)
    # mutation: parse_args instead of parse_known_args in main -> an unknown option named by 'ssl-video' only
    with pytest.raises(SystemExit) as info:
        main(argv)
    _, err = capsys.readouterr()
    assert_refused(info.value.code, err, fragment)


def test_data_synth_refuses_a_non_empty_directory(synth, capsys):
    before = tree(synth)
    code, _, err = run_cli(["data", "synth", synth, "--classes", "1", "--videos-per-class", "1"], capsys)
    assert_refused(code, err, "--overwrite")  # mutation: drop _check_out -> silently overwritten
    assert tree(synth) == before


def test_data_synth_names_its_flag_for_too_few_videos(tmp_path, capsys):
    code, _, err = run_cli(["data", "synth", tmp_path / "s", "--videos-per-class", "1"], capsys)
    # mutation: the CLI check back at >= 1 -> the generator's 'videos_per_class must be at least 2'
    assert_refused(code, err, "--videos-per-class must be at least 2")
    assert tree(tmp_path) == []


def test_plain_progress_lines_instead_of_bar_redraws_off_a_terminal(exported, synth, tmp_path, capsys):
    # a file or a pipe (capsys here, a Slurm log there) gets plain count lines and no carriage-return redraws
    # mutation: console.progress draws tqdm's bar whatever the stream -> "\r" in stderr
    code, out, err = run_cli(["data", "synth", tmp_path / "s", "--classes", "1", "--videos-per-class", "2",
                              "--size", "16", "16", "--seconds", "1"], capsys)
    assert code == 0 and "wrote 2 videos" in out
    assert "\r" not in err and err.splitlines() == ["[ssl-video] synth videos: 2/2 videos (100%, 0s)"]
    code, out, err = run_cli(["eval", "linear-probe", "--encoder", exported, "--dataset", "synthetic", "--root",
                              synth, "--clips", "1", "--workers", "0", "--device", "cpu", "--cache-dir",
                              tmp_path / "cache", "--out", tmp_path / "probe"], capsys)
    assert code == 0, err
    lines = err.splitlines()
    assert "\r" not in err and lines and all(line.startswith("[ssl-video] ") for line in lines), err
    assert "wrote " in out


def test_folder_dataset_takes_every_video_whatever_the_split(synth):
    from ssl_video.data.datasets import load_layout

    layout = load_layout("folder", root=str(synth / "UCF-101"))
    # mutation: unsplit=False for folder -> "no split '1' (available: all)" with the recipe defaults
    for split, subset in (("1", "train"), ("all", None), ("all", "train")):
        assert len(layout.records(split, subset)) == 8


# ---------------------------------------------------------------------------------------------- eval


@pytest.mark.parametrize("device, fragment", [
    ("tpu", "--device tpu: unknown device"),  # mutation: drop resolve_device from make_inputs (RuntimeError later)
    ("cuda", "CUDA is not available"),  # a machine without CUDA, also where there is one
])
def test_eval_checks_the_device_first(device, fragment, exported, synth, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["eval", "linear-probe", "--encoder", exported, "--dataset", "synthetic", "--root", synth,
                            "--device", device, "--cache-dir", tmp_path / "cache"], capsys)
    assert_refused(code, err, fragment)
    assert tree(tmp_path) == []


def test_eval_with_cached_features_still_checks_the_device(exported, synth, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    argv = ["eval", "linear-probe", "--encoder", exported, "--dataset", "synthetic", "--root", synth, "--clips", "1",
            "--workers", "0", "--cache-dir", tmp_path / "cache", "--out", "probe"]
    code, _, err = run_cli([*argv, "--device", "cpu"], capsys)
    assert code == 0, err
    before = tree(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run_cli([*argv, "--device", "cuda"], capsys)
    # mutation: the device resolved only where features are extracted -> every feature cached, exit 0
    assert_refused(code, err, "--device cuda: CUDA is not available")
    assert tree(tmp_path) == before


def test_eval_hints_name_eval_flags(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["eval", "linear-probe", "--encoder", "r3d_18", "--dataset", "ucf101"], capsys)
    # mutation: EVAL_FLAGS not passed in resolve_inputs -> "--splits DIR" (a list of split numbers in eval)
    assert_refused(code, err, "--root DIR", "--split-dir DIR")
    assert tree(tmp_path) == []
    # half of the pair: the line says which half is missing (mutation: given not passed -> "no location given")
    code, _, err = run_cli(["eval", "linear-probe", "--encoder", "r3d_18", "--dataset", "ucf101", "--videos",
                            str(tmp_path)], capsys)
    assert_refused(code, err, "--videos was given without --split-dir", "--root DIR")


@pytest.mark.parametrize("argv, out", [
    # mutation: the old default runs/eval/<protocol> for every encoder (the next report replaced the last)
    (["linear-probe", "--encoder", "encoders/a/", "--dataset", "ucf101"], "runs/eval/linear-probe/a-ucf101"),
    (["retrieval", "--encoder", "timm:resnet18", "--dataset", "hmdb51"], "runs/eval/retrieval/timm_resnet18-hmdb51"),
    # mutation: make_inputs naming the directory only when there is a dataset (temporal has none)
    (["temporal", "--encoder", "encoders/tsp", "--gt", "gt.csv", "--videos", "v"], "runs/eval/temporal/tsp"),
    # mutation: drop the --features branch in cli.eval.run_protocol
    (["pooling", "--features", "feats.h5", "--labels", "labels.csv"], "runs/eval/pooling/feats"),
    # mutation: the suite default back at runs/eval/<suite name> (every encoder's suite report in one place)
    (["suite", REPO / "eval" / "linear_probe.yaml", "--encoder", "encoders/b"], "runs/eval/linear_probe_ucf101_hmdb51/b"),
    (["linear-probe", "--encoder", "a", "--dataset", "ucf101", "--out", "mine"], "mine"),
])
def test_eval_default_report_directory_is_per_encoder(argv, out, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("gt.csv", "feats.h5", "labels.csv"):
        (tmp_path / name).write_text("")
    (tmp_path / "v").mkdir()
    seen = []
    monkeypatch.setattr("ssl_video.cli.eval._finish", lambda call, lines, where: seen.append(where) or 0)
    assert main(["eval", *map(str, argv), "--device", "cpu"]) == 0
    assert seen == [out]


def test_eval_suite_checks_every_entry_before_the_first_runs(exported, synth, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "s", "protocols": [
        {"protocol": "linear-probe", "dataset": "synthetic", "splits": ["1"], "clips": 1},
        {"protocol": "retrieval", "dataset": "ucf101", "splits": ["1"], "clips": 1}]}))
    before = tree(tmp_path)
    code, out, err = run_cli(["eval", "suite", suite, "--encoder", exported, "--root", f"synthetic={synth}",
                              "--root", f"ucf101={tmp_path / 'nowhere'}", "--device", "cpu"], capsys)
    # mutation: drop check_suite_inputs -> the first entry runs (features cached, report written) first
    assert_refused(code, err, "ucf101 not found", "--root ucf101=DIR")
    assert out == "" and tree(tmp_path) == before
    suite.write_text(yaml.safe_dump({"name": "s", "protocols": [
        {"protocol": "linear-probe", "dataset": "synthetic", "splits": ["1", "7"], "clips": 1}]}))
    code, _, err = run_cli(["eval", "suite", suite, "--encoder", exported, "--root", f"synthetic={synth}"], capsys)
    assert_refused(code, err, "no split 7")
    code, _, err = run_cli(["eval", "suite", suite, "--encoder", "r2plus1d_99", "--root", f"synthetic={synth}"], capsys)
    assert_refused(code, err, "--encoder", "did you mean")


def test_eval_slurm_submission_checks_the_data_first(synth, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["eval", "linear-probe", "--encoder", "r3d_18", "--dataset", "synthetic", "--root", synth,
                            "--splits", "7", "--slurm", REPO / "slurm" / "example.yaml"], capsys)
    assert_refused(code, err, "no split 7")  # mutation: drop the _slurm_check call in cli._slurm_handler
    assert tree(tmp_path) == []


def test_finetune_refuses_an_out_of_other_settings_before_opening_videos(synth, tmp_path, capsys, monkeypatch):
    from ssl_video.config import dump_yaml
    from ssl_video.evaluation.finetune import split_recipe
    from ssl_video.evaluation.protocols import get_protocol, make_inputs, settings_from_args
    from ssl_video.evaluation.runner import resolve_inputs
    from ssl_video.recipe import recipe_dict

    monkeypatch.chdir(tmp_path)
    common = ["--encoder", "r3d_18", "--encoder-args", "width=0.0625", "--dataset", "synthetic", "--root", synth,
              "--splits", "1", "--frames", "4", "--resize", "16", "--crop", "16", "--device", "cpu", "--out", "ft"]
    # OUT/split_1 as an earlier run with optim.lr=0.01 left it
    protocol = get_protocol("finetune")
    inputs = make_inputs(protocol, encoder="r3d_18", encoder_args={"width": 0.0625}, dataset="synthetic",
                         root=str(synth), splits=["1"], frames=4, resize=16, crop=16, device="cpu", out="ft")
    layout, _, encoder, clip = resolve_inputs(inputs)
    recipe = split_recipe(inputs, settings_from_args(protocol, {}, ["optim.lr=0.01"]), "1", clip, encoder,
                          len(layout.classes))
    (tmp_path / "ft" / "split_1").mkdir(parents=True)
    (tmp_path / "ft" / "split_1" / "config.yaml").write_text(dump_yaml(recipe_dict(recipe)))
    before = tree(tmp_path)

    class Opened(Exception):
        pass

    def opened(*args, **kwargs):
        raise Opened

    monkeypatch.setattr("ssl_video.data.check.check_dataset", opened)
    code, out, err = run_cli(["eval", "finetune", *common, "optim.lr=0.02"], capsys)
    # mutation: drop the check_run_dir loop in run_finetune -> every video is probed first (Opened here)
    assert_refused(code, err, "ft/split_1", "optim.lr: 0.01 -> 0.02", "another --out")
    assert "--run-dir" not in err and tree(tmp_path) == before
    with pytest.raises(Opened):  # the same settings pass the check (and go on to open the videos)
        run_cli(["eval", "finetune", *common, "optim.lr=0.01"], capsys)


def test_finetune_resume_refusal_names_out_not_run_dir():
    from ssl_video.engine.checkpoint import check_resume
    from ssl_video.errors import UserError

    with pytest.raises(UserError) as info:
        check_resume({"optim": {"lr": 0.1}}, {"optim": {"lr": 0.2}}, Path("out/split_1"), flags={"run_dir": "--out"})
    # mutation: evaluation/finetune.py calling train() without flags -> 'another --run-dir' (eval has --out)
    assert "another --out" in str(info.value) and "--run-dir" not in str(info.value)


# ---------------------------------------------------------------------------------------------- extract, export


def test_extract_rerun_with_another_stride_writes_nothing(exported, synth, tmp_path, capsys):
    out = tmp_path / "feats.h5"
    base = ["extract", "--encoder", exported, "--videos", synth / "UCF-101", "--frames", "4", "--fps", "8",
            "--out", out, "--workers", "0", "--device", "cpu"]
    code, _, err = run_cli([*base, "--stride", "4"], capsys)
    assert code == 0, err
    assert "\r" not in err  # mutation: console.progress draws a bar although stderr is no terminal
    before = tree(tmp_path)
    code, _, err = run_cli([*base, "--stride", "2"], capsys)
    assert_refused(code, err, "stride")
    # mutation: NpyStore writes its manifest when opened, before H5Sources refuses -> feats.h5.parts/ appears
    assert tree(tmp_path) == before
    code, _, err = run_cli([*base, "--stride", "4"], capsys)
    assert code == 0, err  # ... and the original command was refused from then on


def test_export_onto_a_file_is_one_line(trained, tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("keep")
    code, _, err = run_cli(["export", trained, "--out", target], capsys)
    assert_refused(code, err, "is a file")  # mutation: drop check_output_dir -> FileExistsError traceback
    assert target.read_text() == "keep"


def test_export_files_are_readable_and_described(exported):
    # mutation: drop the chmod in files.write_atomic -> safetensors' 0600
    for name in ("model.safetensors", "config.json", "README.md"):
        assert stat.S_IMODE((exported / name).stat().st_mode) == 0o644, name
    config = json.loads((exported / "config.json").read_text())
    # mutation: spec.source left as the zoo's default description
    assert config["spec"]["source"].startswith("stica training, recipe stica_tiny_synthetic on synthetic, step 2")
    card = (exported / "README.md").read_text()
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "ssl_video" and "r2plus1d_18" in meta["tags"] and "stica" in meta["tags"]
    assert "| frames | 4 |" in body and "- steps: 2" in body
    import ssl_video

    assert ssl_video.load_encoder(exported).spec.frames == 4


# ---------------------------------------------------------------------------------------------- resume, fresh, extend


def test_extend_resume_from_and_fresh(trained, synth, tmp_path, capsys):
    import shutil

    import torch

    run = tmp_path / "x"
    shutil.copytree(trained, run)
    common = ["pretrain", TINY_RECIPE, f"data.root={synth}", *TINY]
    code, _, err = run_cli([*common, "trainer.max_steps=4", "--run-dir", run], capsys)
    # mutation: check_resume without the --extend hint -> 'use the same values or another --run-dir' only
    assert_refused(code, err, "trainer.max_steps: 2 -> 4", "--extend")
    code, out, err = run_cli([*common, "trainer.max_steps=4", "--run-dir", run, "--extend"], capsys)
    assert code == 0, err
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert (state["step"], state["total_steps"]) == (4, 4)  # mutation: EXTENDABLE_KEYS ignored by _saved_state
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert "step 3/4" in (run / "train.log").read_text()  # mutation: TrainingLog not writing train.log
    # the schedule is laid over the new length from the saved step: step 2 of a 4-step cosine
    from ssl_video.engine.schedule import lr_factor

    lrs = {json.loads(line)["step"]: json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()}
    import yaml

    optim = yaml.safe_load((run / "config.yaml").read_text())["optim"]
    assert lrs[3] == pytest.approx(optim["lr"] * lr_factor(2, 4, optim["schedule"], optim["warmup"],
                                                           optim["warmup_start_factor"]))

    new = tmp_path / "y"
    code, out, err = run_cli([*common, "--run-dir", new, "--resume", run], capsys)
    assert code == 0, err
    assert f"starting from {run}" in out and "weights and optimizer state" in out
    state_y = torch.load(new / "checkpoints" / "last.pt", weights_only=True)
    assert state_y["step"] == 2  # counted from 0, not from the source's 4

    code, _, err = run_cli([*common, "--run-dir", new, "--fresh"], capsys)
    assert_refused(code, err, "--fresh", "already holds a run")  # mutation: 'never' treated like 'auto'
    code, _, err = run_cli([*common, "--run-dir", tmp_path / "z", "--resume", tmp_path / "nope"], capsys)
    assert_refused(code, err, "--resume")
    assert not (tmp_path / "z").exists()


def test_plain_progress_lines_off_a_terminal(trained, synth, tmp_path, capsys):
    code, out, err = run_cli(["pretrain", TINY_RECIPE, f"data.root={synth}", *TINY, "--run-dir", tmp_path / "r"],
                             capsys)
    assert code == 0, err
    # mutation: TrainingLog keeps the tqdm bar when stderr is not a terminal (carriage-return redraws in logs)
    assert "\r" not in err and "[ssl-video] step 2/2" in out
    assert "recipe:" in (tmp_path / "r" / "train.log").read_text()  # the recipe logged once per start


def test_recipe_and_hparams_reach_tensorboard_once(synth, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "r"
    code, _, err = run_cli(["pretrain", TINY_RECIPE, f"data.root={synth}", *TINY, "trainer.tensorboard=true",
                            "--run-dir", run], capsys)
    assert code == 0, err
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    # mutation: drop the add_text / add_hparams calls in TrainingLog._hparams
    assert events.Tags()["tensors"].count("recipe/text_summary") == 1
    assert len(events.Tensors("recipe/text_summary")) == 1
    hparams = events.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in hparams and "optim.lr" in str(hparams["_hparams_/experiment"])


def test_pretrain_slurm_checks_the_data_before_it_submits(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    submitted = []
    monkeypatch.setattr("ssl_video.slurm.submit.submit_training", lambda *a, **k: submitted.append(a) or 0)
    code, _, err = run_cli(["pretrain", TINY_RECIPE, "--slurm", REPO / "slurm" / "example.yaml", "--run-dir", "runs/s"],
                           capsys)
    # mutation: drop check_training_data in submit_pretrain -> a job that fails once it leaves the queue
    assert_refused(code, err, "data.root=DIR")
    assert submitted == [] and tree(tmp_path) == []


# ---------------------------------------------------------------------------------------------- output, API


def test_closed_stdout_is_not_an_error():
    proc = subprocess.Popen([sys.executable, "-m", "ssl_video", "config", "defaults"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    proc.stdout.readline()
    proc.stdout.close()  # `| head -1`
    err = proc.stderr.read().decode()
    proc.stderr.close()
    # mutation: drop the BrokenPipeError branch in cli.main -> exit 1 with a traceback (or exit 120)
    assert proc.wait() == 0 and "Traceback" not in err and "BrokenPipe" not in err


def test_list_encoders_patterns():
    import ssl_video

    # mutation: list_encoders ignoring its pattern
    assert ssl_video.list_encoders("r2*") == ["r2plus1d_10", "r2plus1d_18", "r2plus1d_34"]
    assert ssl_video.list_encoders("*18", modality="audio") == ["audio_resnet18"]
    assert "r2plus1d_18" in ssl_video.list_encoders()


def test_public_api_is_discoverable_and_read_clips_follows_the_contract(exported, synth):
    import doctest

    import ssl_video
    import ssl_video.models.registry as registry

    # mutation: a name in __all__ that the lazy table cannot give
    for name in ssl_video.__all__:
        assert getattr(ssl_video, name) is not None, name
    assert set(ssl_video.__all__) <= set(dir(ssl_video))
    assert (REPO / "ssl_video" / "py.typed").is_file()
    assert doctest.testmod(registry, optionflags=doctest.ELLIPSIS).failed == 0  # the docstring examples run
    encoder = ssl_video.load_encoder(exported)
    video = next((synth / "UCF-101").rglob("*.mp4"))
    clips = ssl_video.read_clips(video, encoder, clips=3)
    # mutation: read_clips ignoring the encoder's contract (4 frames, 16 px crop)
    assert tuple(clips.shape) == (3, 3, 4, 16, 16)
    assert tuple(encoder(clips).shape) == (3, encoder.spec.feature_dim)
    assert tuple(ssl_video.read_clips(video, exported, clips=1, frames=2).shape) == (1, 3, 2, 16, 16)


def test_dependencies_are_ranges_whose_lower_bounds_are_the_pins():
    import re

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    pins = {k.lower().replace("_", "-"): v for k, v in pins.items()}
    for requirement in project["dependencies"]:
        # mutation: an exact pin (==) back in pyproject.toml (an environment's own torch would be replaced)
        assert "==" not in requirement, requirement
        name, lower = re.match(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", requirement).groups()
        assert name.lower().replace("_", "-") in pins, name
    from importlib import metadata

    from packaging.specifiers import SpecifierSet

    for name in ("torch", "torchvision", "accelerate", "timm", "safetensors"):  # the tested lower bounds
        spec = next(r for r in project["dependencies"] if r.startswith(name + ">="))
        assert spec.split(">=")[1].split(",")[0] == pins[name]
        # the installed version lies in the range: the pin under `make install`, any later minor version in an
        # environment with its own torch (mutation: a lower bound above what is installed)
        installed = metadata.version(name).split("+")[0]
        assert installed in SpecifierSet(spec[len(name):]), (name, installed, spec)
