"""Each dataset format's parsing, and the clip dataset's handling of bad files."""

from __future__ import annotations

import pytest
import torch
from conftest import write_index_video

from ssl_video.data.bad_files import BadFiles
from ssl_video.data.clip_dataset import ClipDataset, collate_clips
from ssl_video.data.datasets import load_layout
from ssl_video.errors import UserError
from ssl_video.recipe import AudioFeatures, ClipConfig, ClipSampling, VideoAugment


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def make_ucf(root):
    classes = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    files = {
        "ApplyEyeMakeup": ["v_ApplyEyeMakeup_g01_c01.avi", "v_ApplyEyeMakeup_g08_c01.avi", "v_ApplyEyeMakeup_g15_c01.avi"],
        "HandstandPushups": ["v_HandStandPushups_g01_c01.avi", "v_HandStandPushups_g08_c02.avi",
                             "v_HandStandPushups_g15_c01.avi"],
        "YoYo": ["v_YoYo_g01_c01.avi", "v_YoYo_g08_c01.avi", "v_YoYo_g15_c01.avi"],
    }
    for cls, names in files.items():
        for name in names:
            touch(root / "UCF-101" / cls / name)
    splits = root / "ucfTrainTestlist"
    splits.mkdir()
    # official files use CRLF and some have trailing spaces
    (splits / "classInd.txt").write_bytes(b"".join(f"{i + 1} {c}\r\n".encode() for i, c in enumerate(classes)))
    for k in (1, 2, 3):  # split k tests on the k-th file of every class and trains on the other two
        train = [f"{c}/{name} {i + 1} \r\n" for i, c in enumerate(classes) for j, name in enumerate(files[c])
                 if j != k - 1]
        test = [f"{c}/{files[c][k - 1]}\r\n" for c in classes]
        (splits / f"trainlist0{k}.txt").write_text("".join(train), newline="")
        (splits / f"testlist0{k}.txt").write_text("".join(test), newline="")
    return files


def test_ucf101_layout_and_handstand_quirk(tmp_path):
    make_ucf(tmp_path)
    layout = load_layout("ucf101", root=str(tmp_path))
    assert layout.classes == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    assert sorted(layout.splits) == ["1", "2", "3"]
    test = layout.records(1, "test")
    assert [r.label for r in test] == [0, 1, 2]
    handstand = [r for r in layout.records(1, "train") if "HandStand" in r.path][0]
    assert handstand.label == 1 and handstand.path.endswith("HandstandPushups/v_HandStandPushups_g08_c02.avi")
    assert len(layout.listed()) == 9 and layout.missing == []


@pytest.mark.parametrize("k", ["1", "2", "3"])
def test_ucf101_split_k_reads_split_k(tmp_path, k):
    # mutation: every split read from the split-1 files (the fixture's splits differ, so it shows)
    files = make_ucf(tmp_path)
    layout = load_layout("ucf101", root=str(tmp_path))
    test = sorted(r.path.rsplit("/", 1)[1] for r in layout.records(k, "test"))
    train = sorted(r.path.rsplit("/", 1)[1] for r in layout.records(k, "train"))
    assert test == sorted(names[int(k) - 1] for names in files.values())
    assert train == sorted(n for names in files.values() for j, n in enumerate(names) if j != int(k) - 1)


def test_ucf101_missing_file_and_explicit_dirs(tmp_path):
    make_ucf(tmp_path)
    (tmp_path / "UCF-101" / "YoYo" / "v_YoYo_g01_c01.avi").unlink()
    layout = load_layout("ucf101", videos=str(tmp_path / "UCF-101"), splits=str(tmp_path / "ucfTrainTestlist"))
    assert layout.missing == [str(tmp_path / "UCF-101" / "YoYo" / "v_YoYo_g01_c01.avi")]
    assert len(layout.records(1, "test")) == 2 and len(layout.listed()) == 9


def test_ucf101_label_mismatch_and_missing_root(tmp_path):
    make_ucf(tmp_path)
    (tmp_path / "ucfTrainTestlist" / "trainlist01.txt").write_text("YoYo/v_YoYo_g08_c01.avi 1\n")
    with pytest.raises(UserError, match="disagrees"):
        load_layout("ucf101", root=str(tmp_path))
    with pytest.raises(UserError, match="not found"):
        load_layout("ucf101", root=str(tmp_path / "nowhere"))


def test_hmdb51_names_with_special_characters(tmp_path):
    names = {
        "brush_hair": ["April_09_brush_hair_u_nm_np1_ba_goo_0.avi", "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi",
                       "unused_one.avi"],
        "cartwheel": ["(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi",
                      "Bodenturnen_2004_-_Mädchen_#_2_cartwheel_f_cm_np1_ri_bad_0.avi",
                      "Tom's & Jerry's cartwheel (take 2)_cartwheel_f_cm_np1_fr_med_1.avi"],
    }
    ids = {  # per split: 1 train, 2 test, 0 unused; the splits differ so that split k must read split k
        "1": {"brush_hair": ["1", "2", "0"], "cartwheel": ["1", "2", "1"]},
        "2": {"brush_hair": ["2", "1", "0"], "cartwheel": ["2", "1", "1"]},
        "3": {"brush_hair": ["2", "1", "0"], "cartwheel": ["1", "1", "2"]},
    }
    split_dir = tmp_path / "testTrainMulti_7030_splits"
    split_dir.mkdir()
    for cls, files in names.items():
        for name in files:
            touch(tmp_path / "hmdb51_org" / cls / name)
        for k in (1, 2, 3):
            lines = "".join(f"{n} {i} \r\n" for n, i in zip(files, ids[str(k)][cls]))
            (split_dir / f"{cls}_test_split{k}.txt").write_text(lines, newline="")
    layout = load_layout("hmdb51", root=str(tmp_path))
    assert layout.classes == ["brush_hair", "cartwheel"] and sorted(layout.splits) == ["1", "2", "3"]
    train, test = layout.records("1", "train"), layout.records("1", "test")
    assert len(train) == 3 and len(test) == 2 and layout.missing == []
    assert any(r.path.endswith("Tom's & Jerry's cartwheel (take 2)_cartwheel_f_cm_np1_fr_med_1.avi") for r in train)
    assert all(r.label == 1 for r in train + test if "cartwheel" in r.video_id)
    assert not any("unused_one" in r.path for r in layout.listed())
    for k in ("1", "2", "3"):  # mutation: every split read from the split-1 files
        for subset, wanted in (("train", "1"), ("test", "2")):
            expected = sorted(n for cls, files in names.items() for n, i in zip(files, ids[k][cls]) if i == wanted)
            assert sorted(r.path.rsplit("/", 1)[1] for r in layout.records(k, subset)) == expected


def test_kinetics_csv_nested_and_flat(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,aaa111,10,20,train\n"
        '"air drumming",bbb222,0,10,train\n'
        "abseiling,missing1,5,15,train\n")
    (tmp_path / "annotations" / "validate.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nair drumming,ccc333,3,13,val\n")
    touch(tmp_path / "train" / "abseiling" / "aaa111_000010_000020.mp4")
    touch(tmp_path / "train" / "air drumming" / "bbb222_000000_000010.mp4")
    touch(tmp_path / "ccc333_000003_000013.mp4")  # flat layout
    layout = load_layout("kinetics", root=str(tmp_path))
    assert layout.classes == ["abseiling", "air drumming"]
    train = layout.records("1", "train")
    assert [r.label for r in train] == [0, 1] and train[0].start == 10.0
    assert layout.records("1", "val")[0].path.endswith("ccc333_000003_000013.mp4")
    assert len(layout.missing) == 1 and "missing1" in layout.missing[0]
    (tmp_path / "bad.csv").write_text("a,b\n")
    with pytest.raises(UserError, match="no train.csv"):
        load_layout("kinetics", videos=str(tmp_path), splits=str(tmp_path / "train"))


def test_folder_dataset_finds_every_video(tmp_path):
    for rel in ("a/x.mp4", "a/b/y.AVI", "z.mkv", "notes.txt", "a/.hidden.mp4"):
        touch(tmp_path / rel)
    layout = load_layout("folder", root=str(tmp_path))
    assert sorted(r.video_id for r in layout.records()) == ["a/b/y.AVI", "a/x.mp4", "z.mkv"]
    assert all(r.label == -1 for r in layout.records())
    with pytest.raises(UserError, match="unknown dataset"):
        load_layout("imagenet", root=str(tmp_path))


def _clip_cfg(**kw):
    kw.setdefault("video", VideoAugment(crop=24))
    return ClipConfig(frames=4, fps=8.0, resize=32, sampling=ClipSampling(**kw.pop("sampling", {})),
                      audio=AudioFeatures(n_mels=16, n_fft=512), **kw)


def test_clip_dataset_samples_and_bad_files(tmp_path):
    from ssl_video.data.datasets.base import VideoRecord

    good = [write_index_video(tmp_path / f"v{i}.mp4", 20, 10) for i in range(3)]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    records = [VideoRecord(str(p), i, p.name) for i, p in enumerate(good + [bad])]
    ds = ClipDataset(records, _clip_cfg(), train=False)
    sample = ds[0]
    assert sample["video"].shape == (3, 4, 24, 24) and sample["audio"].shape == (1, 16, 51)
    assert not bool(sample["has_audio"]) and int(sample["label"]) == 0
    batch = collate_clips([ds[i] for i in range(4)])
    assert batch["video"].shape[0] == 3 and len(batch["skipped"]) == 1 and str(bad) in batch["skipped"][0]
    messages = []
    log = BadFiles(log=messages.append)
    log.update(batch["skipped"])
    log.update(batch["skipped"])
    assert len(log) == 1 and log.count == 1 and list(log.as_dict()) == [str(bad)] and len(messages) == 1
    # training resamples another video so the batch keeps its size
    train = ClipDataset(records, _clip_cfg(views=2), train=True)
    sample = train[3]
    assert sample["video"].shape == (2, 3, 4, 24, 24) and len(sample["skipped"]) >= 1
    # several uniform clips per video for evaluation
    multi = ClipDataset(records, _clip_cfg(sampling={"mode": "uniform", "num_clips": 3}), train=False)
    s = multi[1]
    assert s["video"].shape == (3, 3, 4, 24, 24) and s["audio"].shape == (3, 1, 16, 51)
    assert torch.equal(multi[1]["video"], s["video"])  # evaluation is deterministic


def test_training_samples_depend_only_on_seed_epoch_index(tmp_path):
    from ssl_video.data.datasets.base import VideoRecord

    records = [VideoRecord(str(write_index_video(tmp_path / f"v{i}.mp4", 30, 10)), i, f"v{i}") for i in range(2)]
    cfg = _clip_cfg(video=VideoAugment(crop=24, color_jitter=0.8))
    a, b = ClipDataset(records, cfg, train=True, seed=3), ClipDataset(records, cfg, train=True, seed=3)
    assert torch.equal(a[1]["video"], b[1]["video"]) and float(a[1]["start"]) == float(b[1]["start"])
    assert not torch.equal(a[1]["video"], a[1 + len(records)]["video"])  # the next epoch differs
    assert torch.equal(a[1 + len(records)]["video"], b[1 + len(records)]["video"])
