"""The CLI: help texts, the data check's JSON counts and exit codes, config errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ssl_video.cli import main


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "ssl_video.cli", *map(str, args)], capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("args", [[], ["data", "synth"], ["data", "check"], ["config", "show"]])
def test_help_shows_usage_with_example(args, capsys):
    with pytest.raises(SystemExit) as info:
        main([*args, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: ssl-video" in out and "example" in out


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    code = main(["data", "synth", str(root), "--classes", "3", "--videos-per-class", "4", "--seconds", "1",
                 "--no-audio-fraction", "0.25", "--seed", "1"])
    assert code == 0
    return root


def test_data_check_json_counts(synth_root, tmp_path, capsys):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(synth_root, root)
    videos = sorted((root / "UCF-101").rglob("*.mp4"))
    assert len(videos) == 12
    videos[0].unlink()  # missing
    videos[1].write_bytes(b"")  # zero bytes
    data = videos[2].read_bytes()
    videos[2].write_bytes(data[: len(data) // 3])  # truncated
    capsys.readouterr()
    assert main(["data", "check", "--dataset", "ucf101", "--root", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["classes"] == 3 and report["videos_listed"] == 12
    assert report["missing"] == [str(videos[0])]
    assert sorted(report["unreadable"]) == sorted([str(videos[1]), str(videos[2])])
    assert report["videos_readable"] == 9
    summary = json.loads((root / "synth.json").read_text())
    silent = {str(root / v["path"]) if not str(v["path"]).startswith("/") else v["path"]
              for v in summary["videos_list"] if not v["audio"]} if "videos_list" in summary else None
    assert len(report["no_audio"]) <= 3 and all(p.endswith(".mp4") for p in report["no_audio"])
    if silent is not None:
        assert set(report["no_audio"]) <= silent
    # the human table says the same
    assert main(["data", "check", "--dataset", "synthetic", "--root", str(root)]) == 0
    table = capsys.readouterr().out
    assert "videos readable       9" in table and "usable: yes" in table


def test_data_check_missing_root_or_splits_exit_2(tmp_path, synth_root):
    code, out, err = run_cli("data", "check", "--dataset", "ucf101", "--root", tmp_path / "none")
    assert code == 2 and err.count("\n") == 1 and "not found" in err and "Traceback" not in err
    broken = tmp_path / "broken"
    (broken / "UCF-101").mkdir(parents=True)
    (broken / "ucfTrainTestlist").mkdir()
    code, _, err = run_cli("data", "check", "--dataset", "ucf101", "--root", broken)
    assert code == 2 and "classInd.txt" in err and err.count("\n") == 1


@pytest.mark.parametrize("override,key", [
    ("data.clip.frmes=3", "data.clip.frmes"),
    ("data.clip.frames=abc", "data.clip.frames"),
    ("data.batch_size=1.5", "data.batch_size"),
    ("data.clip.video.flip=maybe", "data.clip.video.flip"),
    ("data.dataset=imagenet", "data.dataset"),
    ("data.root=/definitely/not/here", "data.root"),
    ("data.clip.video.scale=[0.1]", "data.clip.video.scale"),
])
def test_config_errors_exit_2_and_name_the_key(tmp_path, override, key, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\ndata:\n  clip:\n    frames: 8\n")
    code = main(["config", "show", str(recipe), override])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert f"'{key}'" in err and err.count("\n") == 1 and "Traceback" not in err


def test_config_unknown_key_in_file_and_valid_overrides(tmp_path, capsys):
    import yaml

    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\ndata:\n  bach_size: 4\n")
    code, _, err = run_cli("config", "show", recipe)  # through the real entry point
    assert code == 2 and "'data.bach_size'" in err and err.count("\n") == 1
    recipe.write_text("name: t\ndata:\n  batch_size: 4\n")
    assert main(["config", "show", str(recipe), "data.clip.fps=12.5", "data.clip.video.scale=[0.2, 0.9]",
                 "data.clip.audio=null", f"data.root={tmp_path}", "method=finetune"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["data"]["batch_size"] == 4 and resolved["data"]["clip"]["fps"] == 12.5
    assert resolved["data"]["clip"]["video"]["scale"] == [0.2, 0.9] and resolved["data"]["clip"]["audio"] is None
