"""Which dataset items each optimizer step sees, and how they become batches.

The dataset's items are addressed by ``key = epoch * len(dataset) + index`` (see
:class:`~ssl_video.data.clip_dataset.ClipDataset`); datasets that need no per-epoch randomness can use
``key % len(self)``. Each epoch is a permutation drawn from (``data.seed``, epoch); optimizer step ``s`` of an
epoch takes the next ``batch_size x processes x grad_accum`` indices, process ``r`` micro-batch ``a`` gets its
slice, and the tail of an epoch that does not fill a step is dropped. So the data a step sees depends only on
the step number, and a resumed run continues mid-epoch exactly where the checkpoint was taken. Batches are
made by ``dataset.collate_fn`` when the dataset has one, else by :func:`collate`.
"""

from __future__ import annotations

import torch

__all__ = ["EpochBatchSampler", "collate", "make_loader", "close_loader", "to_device", "batch_size"]


class EpochBatchSampler:
    """This process's micro-batches of dataset keys for one epoch, from a given micro-batch on."""

    def __init__(self, size: int, batch_size: int, world_size: int, rank: int, seed: int, micro_per_epoch: int):
        self.size, self.batch_size, self.world_size, self.rank = size, batch_size, world_size, rank
        self.seed, self.micro_per_epoch = seed, micro_per_epoch
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start_micro: int) -> None:
        self.epoch, self.start = epoch, start_micro

    def permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
        return torch.randperm(self.size, generator=generator)

    def __iter__(self):
        order = self.permutation(self.epoch)
        offset = self.epoch * self.size
        for micro in range(self.start, self.micro_per_epoch):
            lo = (micro * self.world_size + self.rank) * self.batch_size
            yield [offset + int(i) for i in order[lo:lo + self.batch_size]]

    def __len__(self) -> int:
        return self.micro_per_epoch - self.start


def collate(samples: list[dict]) -> dict:
    """Clip samples (they carry ``skipped``) via :func:`~ssl_video.data.clip_dataset.collate_clips`, any other
    dicts of tensors via torch's default collation."""
    if any("skipped" in sample for sample in samples):
        from ssl_video.data.clip_dataset import collate_clips

        return collate_clips(samples)
    from torch.utils.data import default_collate

    return default_collate(samples)


def make_loader(dataset, sampler: EpochBatchSampler, num_workers: int, pin_memory: bool):
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                      collate_fn=getattr(dataset, "collate_fn", None) or collate,
                      pin_memory=pin_memory, persistent_workers=num_workers > 0,
                      worker_init_fn=_leave_signals_to_the_trainer if num_workers > 0 else None)


def close_loader(loader) -> None:
    """Stop the loader's persistent workers now. Left to the garbage collector, a loader caught in a reference
    cycle keeps its workers alive, and the interpreter then waits for them forever at exit."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    if hasattr(loader, "_iterator"):
        loader._iterator = None


def _leave_signals_to_the_trainer(worker_id: int) -> None:
    """Loader workers ignore SIGTERM/SIGUSR2/SIGINT: a scheduler signals every process of a job, and a worker
    killed by it would crash the loop before the trainer (which does handle them) could save."""
    import signal

    for signum in (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def batch_size(batch: dict) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return int(value.shape[0])
    return 0
