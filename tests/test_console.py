"""Progress off a terminal: plain count lines at most once per interval and once at the end."""

from __future__ import annotations

import io

from ssl_video.console import PlainProgress, progress, track


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_once_per_interval_and_at_the_end():
    # catches: a line per update (the interval ignored), no final line, a wrong count or share
    clock, stream = Clock(), io.StringIO()
    bar = PlainProgress(total=10, desc="extracting", unit="video", interval=30.0, stream=stream, clock=clock)
    for step in range(10):
        clock.now = 10.0 * (step + 1)  # 10 s per video
        bar.update()
        if step == 4:
            bar.set_postfix(clips_per_s="2.5")
    bar.close()
    bar.close()  # closing twice prints nothing more
    assert stream.getvalue().splitlines() == [
        "[ssl-video] extracting: 3/10 videos (30%, 30s)",
        "[ssl-video] extracting: 6/10 videos (60%, 1m00s, clips_per_s 2.5)",
        "[ssl-video] extracting: 9/10 videos (90%, 1m30s, clips_per_s 2.5)",
        "[ssl-video] extracting: 10/10 videos (100%, 1m40s, clips_per_s 2.5)",
    ]


def test_disabled_progress_is_silent_but_passes_messages(capsys):
    # catches: a disabled counter still printing its counts, or swallowing the messages written through it
    bar = progress(total=3, desc="probe", unit="batch", enabled=False)
    for _ in range(3):
        bar.update()
    bar.write("[ssl-video] skipped a.mp4: corrupt")
    bar.close()
    assert capsys.readouterr().err == "[ssl-video] skipped a.mp4: corrupt\n"


def test_track_counts_every_item_and_names_nothing_counted(capsys):
    # catches: items lost or reordered by the wrapper; a final line for an empty run
    assert list(track(iter([3, 1, 2]), total=3, desc="checking videos", unit="video")) == [3, 1, 2]
    assert capsys.readouterr().err.splitlines() == ["[ssl-video] checking videos: 3/3 videos (100%, 0s)"]
    assert list(track([], desc="nothing")) == []
    assert capsys.readouterr().err == ""
    assert len(list(track(range(2), desc="features", unit="batch"))) == 2
    assert capsys.readouterr().err == "[ssl-video] features: 2/2 batches (100%, 0s)\n"
