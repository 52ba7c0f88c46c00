"""Write videos (h264 + AAC in mp4) with PyAV: the synthetic datasets and the tests make real files.

Decoding lives in :mod:`ssl_video.data.media`; this module only writes.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["write_video"]


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    frame_times: np.ndarray | None = None,
    crf: int = 18,
    gop: int | None = None,
) -> Path:
    """Write ``frames`` (T x H x W x 3 uint8, H and W even) and optional mono/stereo ``audio``.

    ``frame_times`` (seconds, increasing) writes a variable-frame-rate stream; otherwise frame ``i``
    is shown at ``i / fps``. ``audio`` is float in [-1, 1], shape (n,) or (channels, n).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be T x H x W x 3, got {frames.shape}")
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"h264/yuv420p needs even frame sizes, got {height}x{width}")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        vstream = container.add_stream("libx264", rate=rate)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        vstream.options = {"crf": str(crf), "preset": "veryfast", "tune": "zerolatency"}
        if gop is not None:
            vstream.codec_context.gop_size = gop
        time_base = Fraction(1, 90000) if frame_times is not None else Fraction(1, 1) / rate
        vstream.codec_context.time_base = time_base
        astream = None
        if audio is not None:
            audio = np.asarray(audio, dtype=np.float32)
            if audio.ndim == 1:
                audio = audio[None]
            layout = "mono" if audio.shape[0] == 1 else "stereo"
            astream = container.add_stream("aac", rate=sample_rate, layout=layout)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if frame_times is not None:
                frame.pts = int(round(float(frame_times[i]) / time_base))
            else:
                frame.pts = i
            frame.time_base = time_base
            for packet in vstream.encode(frame):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        if astream is not None:
            chunk = 1024
            audio = np.clip(audio, -1.0, 1.0)
            for start in range(0, audio.shape[1], chunk):
                block = np.ascontiguousarray(audio[:, start:start + chunk])
                aframe = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
                aframe.sample_rate = sample_rate
                aframe.pts = start
                aframe.time_base = Fraction(1, sample_rate)
                for packet in astream.encode(aframe):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path
