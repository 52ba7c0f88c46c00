"""Every example command of every ``--help`` text and of the README RUNS, in-process through
``ssl_video.cli.main``, on tiny data, and exits 0 (dry runs print their sbatch script).

``tests/test_examples.py`` collects the examples and checks that they parse; this module runs each one in a
fresh working directory (its own ``tmp_path``) that holds what the example reads, under the names the
example uses. What differs from the text of an example is written down in ONE place, :data:`SUBSTITUTIONS`
(what stands for real data, real runs and published files) and :func:`tiny_arguments` (the flags and
``KEY=VALUE`` overrides appended to make it small); nothing else is changed. The media, runs, encoders and
published-format checkpoints are generated here, once per module.

An example that cannot run here would be listed in :data:`NOT_RUN` with its reason; it is still run, as a
strict xfail, so that the list holds exactly the examples that fail and a new example cannot be left out
silently. Today every example runs.

Mutations caught (each applied, run and reverted once):
- an example that does not work: the suite help's ``eval suite eval/smoke_synthetic.yaml --encoder encoders/x
  --root synthetic=demo_out/data`` failed (the demo's labelled set is ``demo_out/data/eval``; fixed in the help);
- ``run_check`` refusing a usable dataset (``if True:`` for ``if not report["usable"]:``): the data check
  examples fail;
- ``submit_training`` ignoring ``--dry-run``: the Slurm examples fail (sbatch here refuses);
- a row of SUBSTITUTIONS removed (``/d/splits``): test_every_example_got_its_substitutions fails;
- ``_failure`` without the stderr tail: test_a_failing_example_says_what_ran_and_why fails;
- ``run_main`` letting an exception through: test_an_exception_is_reported_with_its_traceback fails;
- a runnable example put into NOT_RUN: its strict xfail passes, which fails.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import traceback
from pathlib import Path

import pytest

from ssl_video.cli import main
from tests.test_examples import EXAMPLES

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------- the table
#
# SUBSTITUTIONS: what an example's text names -> what stands for it here.
#   text of the command (before splitting into words):
#     "..." (an elided eval command)      -> "--encoder encoders/x --dataset ucf101 --root /data/ucf101"
#     "[--shard i/n]" (optional part)     -> "--shard 0/2"
#     trainer.max_steps=2000 (--extend)   -> trainer.max_steps=3 (the tiny run has 2 steps: extend by one)
#   words (also the value of a KEY=VALUE word):
#     /data/...                           -> DATA/...: a tiny tree with ucf101/ (the UCF101 layout that
#                                            `ssl-video data synth` writes), hmdb51/ (hmdb51_org/ +
#                                            testTrainMulti_7030_splits/ made of the same videos),
#                                            hmdb51_org/ and testTrainMulti_7030_splits/, my_videos/ (a
#                                            folder of videos), anet/ and thumos/ (untrimmed videos + CSVs),
#                                            k400/ (the Kinetics layout: CSVs + <split>/<label>/<id>_<s>_<e>)
#     /d/hmdb51_org, /d/splits            -> the two HMDB51 folders of DATA/hmdb51
#     slurm/<cluster>.yaml                -> slurm/local.yaml (submissions are dry runs: --dry-run)
#     runs/<run>                          -> runs/stica_k400
#     E (an encoder), DIR (videos),       -> encoders/tsp, data/untrimmed/videos,
#     GT.csv                                 data/untrimmed/train_groundtruth.csv
#   relative paths the example reads (never its --out, --run-dir or `data synth` output) are put into the
#   working directory, see PLACES: datasets, exported encoders (encoders/*: tiny), finished tiny runs
#   (runs/*), recipe.yaml (a copy of recipes/stica_tiny_synthetic.yaml), published checkpoint files built
#   with the published key layout at their published sizes (tests/test_imports.py), pooling feature and
#   label files (tests/test_eval_pooling.py), eval/*.yaml (the shipped suites with tiny clip settings).
#   Slurm: sacct, squeue, scontrol and scancel are small scripts on PATH that know job 7 (no cluster);
#   sbatch refuses, so an example that submits for real fails.
SUBSTITUTIONS = {
    "text": [
        (r"^ssl-video eval linear-probe \.\.\. ",
         "ssl-video eval linear-probe --encoder encoders/x --dataset ucf101 --root /data/ucf101 "),
        (r"\[--shard i/n\]", "--shard 0/2"),
        (r"trainer\.max_steps=2000", "trainer.max_steps=3"),
    ],
    "words": [
        (r"^(|.*=)/data(?=/|$)", r"\1{data}"),
        (r"^(|.*=)/d/hmdb51_org$", r"\1{data}/hmdb51/hmdb51_org"),
        (r"^(|.*=)/d/splits$", r"\1{data}/hmdb51/testTrainMulti_7030_splits"),
        (r"^slurm/<cluster>\.yaml$", "slurm/local.yaml"),
        (r"^runs/<run>$", "runs/stica_k400"),
        (r"^E$", "encoders/tsp"),
        (r"^DIR$", "data/untrimmed/videos"),
        (r"^GT\.csv$", "data/untrimmed/train_groundtruth.csv"),
    ],
}

# relative path in the working directory -> (fixture, path inside it, "link" or "copy" (the example writes))
PLACES = {
    "data/synth": ("ucf", "", "link"),
    "data/untrimmed": ("untrimmed", "", "link"),
    "demo_out/data": ("demo_data", "", "link"),
    "demo_out/encoder": ("encoder_x", "", "link"),
    "anet": ("data_root", "anet", "link"),
    "gvf.h5": ("untrimmed", "gvf.h5", "link"),
    "val_videos.txt": ("untrimmed", "val_videos.txt", "link"),
    "recipe.yaml": ("repo", "recipes/stica_tiny_synthetic.yaml", "copy"),
    "encoders/x": ("encoder_x", "", "link"),
    "encoders/gdt_k400": ("encoder_x", "", "link"),
    "encoders/tsp": ("tiny_encoder", "", "link"),
    "encoders/tac": ("tiny_encoder", "", "link"),
    "encoders/r2plus1d_34_kinetics": ("tiny_encoder", "", "link"),
    "encoders/cost_r18": ("cost_encoder", "", "link"),
    "runs/x": ("run_x", "", "copy"),
    "runs/stica_r2p1d18": ("run_x", "", "link"),
    "runs/stica_k400": ("submitted_run", "", "copy"),
    "runs/tsp": ("tsp_run", "", "link"),
    "feats.h5": ("pooling_files", "feats.h5", "link"),
    "feats_dir": ("pooling_files", "feats_dir", "link"),
    "labels.csv": ("pooling_files", "labels.csv", "link"),
    "yt.h5": ("pooling_files", "yt.h5", "link"),
    "yt.csv": ("pooling_files", "yt.csv", "link"),
    "rgb.h5": ("pooling_files", "rgb.h5", "link"),
    "audio.h5": ("pooling_files", "audio.h5", "link"),
    "r2plus1d_18-91a641e6.pth": ("torchvision_file", "", "link"),
    "gdt_K400.pth": ("gdt_file", "", "link"),
    "r2plus1d_34-tac_on_kinetics-0547130e.pth": ("tsp_file", "", "link"),
    "r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth": ("ig65m_file", "", "link"),
    "costb_r50_k400.pth": ("mmaction2_file", "", "link"),
    "resnet50-0676ba61.pth": ("imagenet2d_file", "", "link"),
    "resnet50_a1_0-14fe96d1.pth": ("timm_file", "", "link"),
}
ALWAYS = {"recipes": "recipes", "slurm": "slurm"}  # shipped files every example may name (eval/: suites)
JOBS_PLACES = ("runs/stica_k400",)  # `ssl-video jobs` (no directory) looks under runs/

# Examples that cannot run here: {command: reason}. Run as strict xfails (see the module docstring).
NOT_RUN: dict[str, str] = {}

# Examples whose success prints something particular: {command: text on stdout}
EXPECT_OUT = {
    "ssl-video pretrain recipes/stica_r2p1d18_k400.yaml --slurm slurm/example.yaml --nodes 4": "#SBATCH",
    "ssl-video pretrain recipes/stica_r2p1d18_k400.yaml --slurm slurm/example.yaml --nodes 4 --dry-run": "#SBATCH",
    "ssl-video pretrain recipes/stica_r2p1d18_k400.yaml data.root=/data/k400 --slurm slurm/<cluster>.yaml --nodes 4":
        "#SBATCH",
    "ssl-video eval linear-probe ... --slurm slurm/<cluster>.yaml": "#SBATCH",
    "ssl-video jobs": "job 7",
    "ssl-video jobs runs/stica_k400": "job 7",
    "ssl-video jobs runs/<run>": "job 7",
    "ssl-video jobs cancel runs/stica_k400": "cancelled 7",
    "ssl-video jobs cancel runs/<run>": "cancelled 7",
}

# tiny sizes
WIDTH = "0.0625"  # zoo encoders: 1/16 width
CLIP = ["--clips", "2", "--frames", "4", "--fps", "8", "--resize", "16", "--crop", "16"]
EVAL_RUN = ["--batch-size", "4", "--workers", "0", "--device", "cpu"]
STICA_TINY = ["data.batch_size=4", "data.num_workers=0", "trainer.max_steps=2", "data.clip.frames=4",
              "data.clip.fps=8", "data.clip.resize=16", "data.clip.video.crop=16", "trainer.log_every=1",
              "trainer.tensorboard=false", "trainer.progress=false", f"stica.video_encoder_args.width={WIDTH}",
              f"stica.audio_encoder_args.width={WIDTH}"]
K400_TINY = ["data.root=/data/k400", "data.batch_size=2", "data.num_workers=0",
             "trainer.epochs=1", "trainer.max_steps=2", "optim.unit=steps", "optim.warmup=1",
             "data.clip.min_seconds=0.5", "trainer.log_every=1", "trainer.tensorboard=false",
             "trainer.progress=false", f"stica.video_encoder_args.width={WIDTH}",
             f"stica.audio_encoder_args.width={WIDTH}", "stica.pooling.ffn=32"]
TSP_TINY = ["data.batch_size=4", "data.num_workers=0", "trainer.max_steps=2", "data.clip.frames=4",
            "data.clip.resize=16", "data.clip.video.crop=16", "trainer.log_every=1", "trainer.tensorboard=false",
            "trainer.progress=false", f"tsp.encoder_args.width={WIDTH}"]
FINETUNE_TINY = ["trainer.max_steps=2", "data.batch_size=4", "optim.warmup=0", "optim.milestones=[]",
                 "trainer.tensorboard=false", "trainer.progress=false"]  # loader workers: --workers 0
POOLING_TINY = ["clusters=2", "hidden=8", "epochs=2", "batch_size=8"]
DEMO_TINY = ["trainer.max_steps=2", "data.batch_size=8", "data.num_workers=0", "trainer.progress=false",
             "trainer.log_every=1", f"stica.video_encoder_args.width={WIDTH}",
             f"stica.audio_encoder_args.width={WIDTH}", "data.clip.frames=8", "data.clip.fps=8",
             "trainer.tensorboard=false"]


def tiny_arguments(words: list[str]) -> tuple[list[str], list[str]]:
    """(KEY=VALUE overrides, flags) appended to an example to make it tiny; the later value of a repeated
    flag or key wins, so these replace the example's sizes."""
    command = words[0] if words else ""
    sub = words[1] if len(words) > 1 else ""
    zoo = []
    if "--encoder" in words:
        encoder = words[words.index("--encoder") + 1]
        if "/" not in encoder:  # a zoo name, not an encoder directory
            zoo = ["--encoder-args", f"width={WIDTH}"]  # last: it takes every KEY=VALUE after it
    if "--slurm" in words:
        return [], ([] if "--dry-run" in words else ["--dry-run"])
    if command == "demo":
        return DEMO_TINY, ["--videos-per-class", "3", "--pretrain-videos-per-class", "2", "--workers", "0"]
    if command == "pretrain":
        recipe = sub
        if recipe.endswith("config.yaml"):
            return [], []  # a run's saved recipe: already tiny
        if "k400" in recipe:
            return K400_TINY, []
        if "tsp_tiny" in recipe:
            return TSP_TINY, []
        return [*STICA_TINY, "data.root=data/synth"], []
    if command == "data" and sub == "synth":
        return [], ["--classes", "2", "--videos-per-class", "2", "--seconds", "1", "--size", "16", "16"]
    if command == "data" and sub == "synth-untrimmed":
        return [], ["--videos", "4", "--classes", "2", "--seconds", "6", "--size", "16", "16",
                    "--segment-seconds", "1", "2", "--gap-seconds", "0.75", "1.5"]
    if command == "eval" and sub == "suite":
        return [], [*EVAL_RUN, *zoo]
    if command == "eval":
        overrides = {"finetune": FINETUNE_TINY, "pooling": POOLING_TINY}.get(sub, [])
        return overrides, [*CLIP, *EVAL_RUN, *zoo]
    if command in ("extract", "tsp"):
        return [], ["--resize", "16", "--crop", "16", "--workers", "0", "--device", "cpu", "--batch-size", "64",
                    "--no-progress", *zoo]
    return [], []


def tiny_suite(path: Path, out: Path) -> Path:
    """A shipped suite with tiny clips (2 clips of 4 frames at 16 px) and tiny pooling and fine-tuning."""
    import yaml

    suite = yaml.safe_load(path.read_text())
    for entry in suite["protocols"]:
        entry.update(clips=2, frames=4, fps=8, resize=16, crop=16)
        settings = entry.setdefault("settings", {})
        if entry["protocol"] == "pooling":
            settings.update(clusters=2, hidden=8, epochs=2, batch_size=8)
        if entry["protocol"] == "finetune":
            settings["overrides"] = [*settings.get("overrides", []), *FINETUNE_TINY]
    out.write_text(yaml.safe_dump(suite, sort_keys=False))
    return out


# ---------------------------------------------------------------------------------------------- running one


def _split_overrides(words: list[str]) -> int:
    """Where appended KEY=VALUE words go: right after the example's own, else right after the command's
    leading words (argparse fills a ``nargs="*"`` positional once: the overrides must stay one group)."""
    last = None
    for i, word in enumerate(words):
        if "=" in word and not word.startswith("-") and i > 0 and not words[i - 1].startswith("--"):
            last = i
    if last is not None:
        return last + 1
    leading = 0
    while leading < len(words) and not words[leading].startswith("-"):
        leading += 1
    return leading


def substitute(command: str, data: Path) -> list[str]:
    """The example's words after SUBSTITUTIONS and the tiny arguments (without the leading ``ssl-video``)."""
    text = command
    for pattern, replacement in SUBSTITUTIONS["text"]:
        text = re.sub(pattern, replacement, text)

    def words_of(words: list[str]) -> list[str]:
        for pattern, replacement in SUBSTITUTIONS["words"]:
            words = [re.sub(pattern, replacement.replace("{data}", str(data)), word) for word in words]
        return words

    words = words_of(shlex.split(text)[1:])
    overrides, flags = tiny_arguments(words)
    at = _split_overrides(words)
    return words_of([*words[:at], *overrides, *words[at:], *flags])  # the tiny arguments name /data too


def _outputs(words: list[str]) -> set[str]:
    """What the command writes (never placed): --out and --run-dir values, `data synth*`'s directory."""
    outs = {words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--out", "--run-dir")}
    if words[:2] in (["data", "synth"], ["data", "synth-untrimmed"]):
        outs.add(words[2])
    return {o.rstrip("/") for o in outs}


def needed_places(words: list[str]) -> list[str]:
    outputs = _outputs(words)
    values = [w for w in words if w.rstrip("/") not in outputs]
    values += [w.split("=", 1)[1] for w in values if "=" in w]
    found = [p for p in PLACES if any(v.rstrip("/") == p or v.startswith(p + "/") for v in values)]
    if words[:1] == ["jobs"]:
        found += [p for p in JOBS_PLACES if p not in found]
    return found


def prepare(command: str, workdir: Path, fixture) -> list[str]:
    """Fill ``workdir`` with what the example reads; return the words to give ``main``."""
    words = substitute(command, fixture("data_root"))
    for name, target in ALWAYS.items():
        (workdir / name).symlink_to(REPO / target)
    (workdir / "eval").symlink_to(fixture("suites"))
    for place in needed_places(words):
        name, inner, mode = PLACES[place]
        source = (REPO if name == "repo" else fixture(name)) / inner
        target = workdir / place
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == "link":
            target.symlink_to(source)
        elif source.is_dir():
            shutil.copytree(source, target, symlinks=True)
        else:
            shutil.copy(source, target)
    return words


def run_main(words: list[str], capsys) -> tuple[int, str, str]:
    """``main(words)``: exit code, stdout, stderr; an exception is exit code 1 with its traceback on stderr."""
    try:
        code = main(words)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception:
        out, err = capsys.readouterr()
        return 1, out, err + traceback.format_exc()
    out, err = capsys.readouterr()
    return code, out, err


def _failure(command: str, words: list[str], code: int, out: str, err: str, expected: str) -> str:
    tail = "\n".join(f"    {line}" for line in (err.strip().splitlines() or ["(empty)"])[-15:])
    return (f"example failed: {command}\n  ran as: ssl-video {shlex.join(words)}\n  exit code {code} "
            f"(expected 0{', with ' + repr(expected) + ' on stdout' if expected else ''})\n"
            f"  stdout (last lines): {' | '.join(out.strip().splitlines()[-3:])}\n  stderr (last lines):\n{tail}")


def check_example(command: str, words: list[str], capsys) -> None:
    code, out, err = run_main(words, capsys)
    expected = EXPECT_OUT.get(command, "")
    assert code == 0 and expected in out, _failure(command, words, code, out, err, expected)


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("examples")


@pytest.fixture(scope="module")
def ucf(base) -> Path:
    """The UCF101 layout `ssl-video data synth` writes: 2 classes x 6 one-second 16 x 16 videos, 3 splits."""
    from ssl_video.data.synth import generate_synthetic_dataset

    root = base / "ucf101"
    generate_synthetic_dataset(root, classes=2, videos_per_class=6, seconds=1.0, size=(16, 16), seed=0,
                               progress=False)
    return root


@pytest.fixture(scope="module")
def hmdb(base, ucf) -> Path:
    """The HMDB51 layout (hmdb51_org/<class>/<video>, testTrainMulti_7030_splits/<class>_test_split<k>.txt:
    1 train, 2 test) made of the synthetic videos and their UCF101 splits."""
    root = base / "hmdb51"
    lists = ucf / "ucfTrainTestlist"
    for k in (1, 2, 3):
        lines: dict[str, list[str]] = {}
        for subset, code in (("train", "1"), ("test", "2")):
            for line in (lists / f"{subset}list0{k}.txt").read_text().split("\n"):
                if line.strip():
                    rel = line.split()[0]
                    cls, name = rel.split("/")
                    lines.setdefault(cls, []).append(f"{name} {code}")
                    video = root / "hmdb51_org" / cls / name
                    if not video.exists():
                        video.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy(ucf / "UCF-101" / rel, video)
        splits = root / "testTrainMulti_7030_splits"
        splits.mkdir(parents=True, exist_ok=True)
        for cls, entries in lines.items():
            (splits / f"{cls}_test_split{k}.txt").write_text("\n".join(entries) + "\n")
    return root


@pytest.fixture(scope="module")
def kinetics(base, ucf) -> Path:
    """The Kinetics layout ({train,validate}.csv, <split>/<label>/<youtube_id>_<start>_<end>.mp4) made of the
    synthetic videos and their UCF101 split 1 (whole one-second videos: start 0, end 1)."""
    root = base / "kinetics"
    lists = ucf / "ucfTrainTestlist"
    for subset, csv_name in (("train", "train.csv"), ("test", "validate.csv")):
        rows = ["label,youtube_id,time_start,time_end,split"]
        for line in (lists / f"{subset}list01.txt").read_text().split("\n"):
            if line.strip():
                rel = line.split()[0]
                label, name = rel.split("/")
                youtube_id = Path(name).stem
                rows.append(f"{label},{youtube_id},0,1,{subset}")
                video = root / subset / label / f"{youtube_id}_000000_000001.mp4"
                video.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ucf / "UCF-101" / rel, video)
        (root / csv_name).write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def untrimmed(base) -> Path:
    """Untrimmed synthetic videos with TSP CSVs, a GVF file of the tiny TSP recipe's encoder, a video list."""
    from ssl_video.data.synth_untrimmed import generate_untrimmed_dataset
    from ssl_video.features.gvf import compute_gvf
    from ssl_video.features.protocol import ClipProtocol
    from ssl_video.features.videos import list_videos
    from ssl_video.models.io import resolve_encoder

    root = base / "untrimmed"
    generate_untrimmed_dataset(root, videos=8, classes=2, seconds=6.0, fps=16.0, size=(16, 16),
                               segment_seconds=(1.0, 2.0), gap_seconds=(0.75, 1.5), seed=2, progress=False)
    encoder = resolve_encoder("r2plus1d_18", {"width": float(WIDTH)}, seed=0)
    compute_gvf(encoder, list_videos(str(root / "videos")), root / "gvf.h5", stride=4, device="cpu", workers=0,
                protocol=ClipProtocol(clips=1, frames=4, fps=8.0, resize=16, crop=16), progress=False)
    names = sorted(p.name for p in (root / "videos").iterdir())
    (root / "val_videos.txt").write_text("\n".join(names[:2]) + "\n")
    return root


@pytest.fixture(scope="module")
def data_root(base, ucf, hmdb, untrimmed, kinetics) -> Path:
    """What /data stands for."""
    root = base / "data"
    root.mkdir()
    links = {"ucf101": ucf, "hmdb51": hmdb, "hmdb51_org": hmdb / "hmdb51_org",
             "testTrainMulti_7030_splits": hmdb / "testTrainMulti_7030_splits", "my_videos": ucf / "UCF-101",
             "thumos": untrimmed / "videos"}
    for name, target in links.items():
        (root / name).symlink_to(target)
    (root / "k400").symlink_to(kinetics)
    (root / "anet").mkdir()
    for item in ("videos", "train_metadata.csv", "val_metadata.csv", "train_groundtruth.csv", "val_groundtruth.csv"):
        (root / "anet" / item).symlink_to(untrimmed / item)
    return root


@pytest.fixture(scope="module")
def demo_data(base, ucf) -> Path:
    """demo_out/data as the demo leaves it: pretrain/ and eval/ synthetic datasets."""
    root = base / "demo_data"
    root.mkdir()
    for name in ("pretrain", "eval"):
        (root / name).symlink_to(ucf)
    return root


@pytest.fixture(scope="module")
def suites(base) -> Path:
    out = base / "suites"
    out.mkdir()
    for path in sorted((REPO / "eval").glob("*.yaml")):
        tiny_suite(path, out / path.name)
    return out


@pytest.fixture(scope="module")
def run_x(base, ucf) -> Path:
    """A finished 2-step run of the tiny STiCA recipe (video and audio encoders)."""
    from ssl_video.engine.trainer import train
    from ssl_video.recipe import load_recipe

    recipe = REPO / "recipes" / "stica_tiny_synthetic.yaml"
    run = base / "runs" / "x"
    train(load_recipe(recipe, [*STICA_TINY, f"data.root={ucf}"]), run, recipe_path=recipe, handle_signals=False)
    return run


@pytest.fixture(scope="module")
def submitted_run(base, run_x) -> Path:
    """The tiny run with one Slurm job on record (job 7)."""
    from ssl_video.slurm.jobs import record_job

    run = base / "runs" / "submitted"
    shutil.copytree(run_x, run)
    record_job(run, {"job_id": "7", "kind": "pretrain", "submitted": "2026-11-30T14:09:31+0000", "array": None})
    return run


@pytest.fixture(scope="module")
def tsp_run(base, untrimmed) -> Path:
    """A TAC run (tiny data, one epoch) with a width-1 R(2+1)D-18 (the torchvision format needs width 1) and a
    validation split, so that it has checkpoints/best.pt."""
    from ssl_video.engine.trainer import train
    from ssl_video.recipe import load_recipe

    recipe = REPO / "recipes" / "tac_tiny_synthetic.yaml"
    overrides = [f"data.videos={untrimmed / 'videos'}", f"tsp.train_csv={untrimmed / 'train_groundtruth.csv'}",
                 f"tsp.valid_csv={untrimmed / 'val_groundtruth.csv'}", "tsp.encoder_args.width=1.0",
                 "trainer.max_steps=null", "trainer.epochs=1", "trainer.best_metric=val/accuracy",
                 "data.batch_size=16", "data.num_workers=0", "data.clip.frames=4", "data.clip.resize=16",
                 "data.clip.video.crop=16", "optim.warmup=0", "trainer.tensorboard=false", "trainer.progress=false"]
    run = base / "runs" / "tsp"
    train(load_recipe(recipe, overrides), run, recipe_path=recipe, handle_signals=False)
    assert (run / "checkpoints" / "best.pt").is_file()
    return run


@pytest.fixture(scope="module")
def encoder_x(base, run_x) -> Path:
    from ssl_video.export import export_encoder

    out = base / "encoders" / "x"
    export_encoder(run_x, out)
    return out


@pytest.fixture(scope="module")
def tiny_encoder(base) -> Path:
    from ssl_video.models.io import save_encoder
    from ssl_video.models.registry import create_encoder

    out = base / "encoders" / "tiny"
    save_encoder(create_encoder("r2plus1d_18", width=float(WIDTH), frames=4, crop_size=16), out)
    return out


@pytest.fixture(scope="module")
def cost_encoder(base) -> Path:
    from ssl_video.models.io import save_encoder
    from ssl_video.models.registry import create_encoder

    out = base / "encoders" / "cost_r18"
    save_encoder(create_encoder("cost_r18", width=float(WIDTH)), out)
    return out


@pytest.fixture(scope="module")
def pooling_files(base) -> Path:
    """Clip features and labels in the forms `eval pooling` reads (tests/test_eval_pooling.py)."""
    from tests.test_eval_pooling import make_videos, write_csv, write_h5, write_npy_dir

    out = base / "pooling"
    out.mkdir()
    videos, labels = make_videos(12, classes=2)
    rows = [[v, c] for v, c in labels.items()]
    write_h5(out / "feats.h5", videos)
    write_npy_dir(out / "feats_dir", videos)
    write_csv(out / "labels.csv", rows, header=["video", "label"])
    write_h5(out / "yt.h5", videos)
    write_csv(out / "yt.csv", [[v, c] + (["extra"] if i % 2 else []) for i, (v, c) in enumerate(labels.items())])
    write_h5(out / "rgb.h5", videos)
    write_h5(out / "audio.h5", make_videos(12, classes=2, seed=1)[0])
    return out


# published checkpoints: the published key layout and size, random values (tests/test_imports.py)


@pytest.fixture(scope="module")
def torchvision_file(base) -> Path:
    import torch
    import torchvision

    path = base / "published" / "r2plus1d_18-91a641e6.pth"
    path.parent.mkdir(exist_ok=True)
    torch.save(torchvision.models.video.r2plus1d_18(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def gdt_file(base) -> Path:
    import torch

    import ssl_video
    from tests.test_imports import gdt_checkpoint, gdt_state

    path = base / "published" / "gdt_K400.pth"
    path.parent.mkdir(exist_ok=True)
    state = gdt_state(ssl_video.create_encoder("r2plus1d_18"), ssl_video.create_encoder("audio_resnet9"))
    torch.save(gdt_checkpoint(state, "state_dict"), path)
    return path


@pytest.fixture(scope="module")
def tsp_file(base) -> Path:
    import torch

    from tests.test_imports import tsp_r2plus1d_34_state

    path = base / "published" / "r2plus1d_34-tac_on_kinetics-0547130e.pth"
    path.parent.mkdir(exist_ok=True)
    # TAC on Kinetics: the backbone under features. and one action head fc (400 classes), no region head
    state = {k: v for k, v in tsp_r2plus1d_34_state().items() if k.startswith("features.")}
    state.update({"fc.weight": torch.randn(400, 512), "fc.bias": torch.randn(400)})
    torch.save({"model": state}, path)
    return path


@pytest.fixture(scope="module")
def ig65m_file(base) -> Path:
    import torch

    from tests.test_imports import tsp_r2plus1d_34_state

    path = base / "published" / "r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth"
    path.parent.mkdir(exist_ok=True)
    # moabitcoin/ig65m-pytorch: the same backbone as a plain state dict, with its Kinetics classifier fc
    state = {k[len("features."):]: v for k, v in tsp_r2plus1d_34_state().items() if k.startswith("features.")}
    state.update({"fc.weight": torch.randn(400, 512), "fc.bias": torch.randn(400)})
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def mmaction2_file(base) -> Path:
    import torch

    import ssl_video
    from tests.test_imports import mmaction2_state

    path = base / "published" / "costb_r50_k400.pth"
    path.parent.mkdir(exist_ok=True)
    state = mmaction2_state(ssl_video.create_encoder("cost_r50", cost_variant="b"), "b")
    torch.save({"meta": {"epoch": 160}, "state_dict": state}, path)
    return path


@pytest.fixture(scope="module")
def imagenet2d_file(base) -> Path:
    import torch
    import torchvision

    path = base / "published" / "resnet50-0676ba61.pth"
    path.parent.mkdir(exist_ok=True)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def timm_file(base) -> Path:
    import timm
    import torch

    path = base / "published" / "resnet50_a1_0-14fe96d1.pth"
    path.parent.mkdir(exist_ok=True)
    torch.save(timm.create_model("resnet50", pretrained=False).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def slurm_bin(base) -> Path:
    """sacct, squeue, scontrol and scancel that know one running job, 7; an sbatch that refuses (a submission
    that is not a dry run fails here, and never reaches a real cluster)."""
    out = base / "slurm_bin"
    out.mkdir()
    scripts = {"sacct": "echo '7|RUNNING|0:0|00:00:05'", "squeue": "echo '7|RUNNING|0:05'", "scontrol": "exit 1",
               "scancel": "exit 0", "sbatch": "echo 'sbatch: nothing is submitted from these tests' >&2; exit 1"}
    for name, body in scripts.items():
        (out / name).write_text(f"#!/bin/sh\n{body}\n")
        (out / name).chmod(0o755)
    return out


@pytest.fixture(scope="module")
def cache_dir(base) -> Path:
    return base / "feature_cache"  # shared by the examples: the same features are extracted once


@pytest.fixture
def workdir(tmp_path, monkeypatch, cache_dir, slurm_bin) -> Path:
    """An empty working directory, as a user's shell would run the example in."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("SSL_VIDEO_CACHE", str(cache_dir))
    monkeypatch.setenv("PATH", f"{slurm_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    # --nproc starts `python -m ssl_video` processes: they import this checkout
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setattr(sys, "argv", ["ssl-video"])
    return work


# ---------------------------------------------------------------------------------------------- the tests

COMMANDS = [param.values[0] for param in EXAMPLES]
FAST = ("zoo", "config")


def _params():
    for command in COMMANDS:
        words = command.split()
        marks = [] if words[1] in FAST or "--slurm" in words else [pytest.mark.slow]
        if command in NOT_RUN:
            marks.append(pytest.mark.xfail(strict=True, reason=NOT_RUN[command]))
        yield pytest.param(command, id=command, marks=marks)


@pytest.mark.parametrize("command", list(_params()))
def test_example_runs(command, workdir, request, capsys):
    words = prepare(command, workdir, request.getfixturevalue)
    check_example(command, words, capsys)


def test_not_run_lists_only_examples():
    # mutation: an entry of NOT_RUN left behind after its example changed (it would xfail nothing)
    assert set(NOT_RUN) <= set(COMMANDS), set(NOT_RUN) - set(COMMANDS)


def test_every_example_got_its_substitutions(tmp_path):
    """No placeholder of the examples reaches main, and every absolute path is the tiny tree's."""
    data = tmp_path / "DATA"
    for command in COMMANDS:
        words = substitute(command, data)
        # mutation: a row of SUBSTITUTIONS removed (e.g. /d/splits): the placeholder would reach main
        for word in words:
            placeholder = ("<" in word or ">" in word or word in ("...", "E", "DIR", "GT.csv")
                           or word.startswith("[") or (word.endswith("]") and "=" not in word))
            assert not placeholder, (command, word)
            value = word.split("=", 1)[-1]
            assert not value.startswith("/") or value.startswith(str(data)), (command, word)


@pytest.mark.slow
def test_a_failing_example_says_what_ran_and_why(workdir, request, capsys):
    # mutation: _failure without the stderr tail, or without the command line actually run
    command = "ssl-video data check --dataset ucf101 --root /data/nowhere"
    words = prepare(command, workdir, request.getfixturevalue)
    with pytest.raises(AssertionError) as info:
        check_example(command, words, capsys)
    message = str(info.value)
    assert f"example failed: {command}" in message
    assert f"ran as: ssl-video data check --dataset ucf101 --root {request.getfixturevalue('data_root')}/nowhere" \
        in message
    assert "exit code 2" in message
    assert "ssl-video: error: " in message and "nowhere" in message  # the stderr tail


def test_an_exception_is_reported_with_its_traceback(capsys, monkeypatch):
    # mutation: run_main letting the exception through (the message would be pytest's, without the command)
    import ssl_video.cli.zoo

    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(ssl_video.cli.zoo, "run_list", broken)
    code, out, err = run_main(["zoo", "list"], capsys)
    assert code == 1 and "RuntimeError: boom" in err and "Traceback" in err
