"""The one extraction loop: batches of a loader through a frozen encoder, outputs on the CPU.

Every consumer of encoder outputs over a data set (dataset features, sliding-window features of long videos,
clip features of segments, test-view scores of a fine-tuned model) runs its batches through
:func:`run_batches`, so bad files are recorded in one :class:`~ssl_video.data.bad_files.BadFiles` the same
way everywhere: a batch lists its unreadable files under ``skipped`` (``"path<TAB>reason"``) and holds
``video`` only when something decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch

from ssl_video.console import track
from ssl_video.data.bad_files import BadFiles

__all__ = ["run_batches", "clip_loader"]


def clip_loader(dataset, batch_size: int, workers: int):
    """An evaluation loader (in order, no shuffling) that stacks samples with ``collate_clips``."""
    from torch.utils.data import DataLoader

    from ssl_video.data.clip_dataset import collate_clips

    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_clips,
                      persistent_workers=False)


@torch.no_grad()
def run_batches(model: torch.nn.Module, loader: Iterable[dict], device: torch.device, bad_files: BadFiles, *,
                progress: bool = False, desc: str = "features",
                forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Iterator[tuple[dict, torch.Tensor]]:
    """Yields ``(batch, outputs)`` for every batch that holds ``video``; ``outputs`` is ``forward(video)``
    (default: ``model(video)``) as float32 on the CPU, the video moved to ``device`` first.

    ``model`` is moved to ``device`` and put in eval mode. The bad files of every batch (``skipped``) go to
    ``bad_files``. ``progress`` shows a bar over the loader's batches (it needs ``len(loader)``).
    """
    model = model.to(device).eval()
    run = forward or model
    if progress:
        loader = track(loader, len(loader), desc, "batch")
    for batch in loader:
        bad_files.update(batch.get("skipped") or [])
        if "video" in batch:
            yield batch, run(batch["video"].to(device, non_blocking=True)).float().cpu()
