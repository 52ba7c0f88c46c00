"""The one training loop every method runs.

``train(recipe, run_dir)`` builds ``build_method(recipe.method, recipe)``, then, on every process:
samples micro-batches, calls ``method(batch)`` (a dict with ``"loss"`` and terms to log), back-propagates
``loss / grad_accum``, and after ``trainer.grad_accum`` micro-batches sets the learning rates, clips and
takes an optimizer step. It never knows which method it runs: it only uses ``method(batch)``,
``method.parameter_groups()`` and ``method.encoders()``. A method returns the same scalar terms at every
step on every process (they are averaged across processes when logged).

Data. The dataset's items are addressed by ``key = epoch * len(dataset) + index`` (see
:class:`~ssl_video.data.clip_dataset.ClipDataset`); datasets that need no per-epoch randomness can use
``key % len(self)``. Each epoch is a permutation drawn from (``data.seed``, epoch); optimizer step ``s`` of an
epoch takes the next ``batch_size x processes x grad_accum`` indices, process ``r`` micro-batch ``a`` gets its
slice, and the tail of an epoch that does not fill a step is dropped. So the data a step sees depends only on
the step number, and a resumed run continues mid-epoch exactly where the checkpoint was taken. Batches are
made by ``dataset.collate_fn`` when the dataset has one, else by :func:`collate`; bad files listed under
``"skipped"`` are reported once.

Randomness in the loop (dropout, crops a method draws) comes from torch/numpy/python generators reseeded
from (``seed``, rank, step) before every step, so a resumed run is bit-identical to an uninterrupted one on
the CPU without saving any generator state.

Stopping. SIGTERM and SIGUSR2 set a flag; at the next step boundary every process agrees (an all-reduce)
and the run writes a checkpoint and stops: :func:`train` returns ``status="stopped"`` and the command
exits with :data:`EXIT_STOPPED`. A non-finite loss on any process stops every process before the optimizer
step, writes nothing and raises :class:`NonFiniteLoss` (exit :data:`EXIT_NONFINITE`); the last checkpoint
stays the last good one. Rerunning the same command resumes from ``RUN/checkpoints/last.pt``.
"""

from __future__ import annotations

import contextlib
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_video.engine.checkpoint import (
    FORMAT_VERSION,
    check_resume,
    load_checkpoint,
    remove_stale_tmp,
    save_checkpoint,
)
from ssl_video.engine.run_dir import (
    MetricsLog,
    RunDir,
    environment,
    git_revision,
    write_env,
    write_json,
    write_text,
)
from ssl_video.engine.schedule import lr_factor, schedule_from_config
from ssl_video.errors import UserError

__all__ = ["train", "NonFiniteLoss", "EXIT_STOPPED", "EXIT_NONFINITE", "STOP_SIGNALS", "EpochBatchSampler"]

EXIT_STOPPED = 3  # stopped by SIGTERM/SIGUSR2 after writing a checkpoint: rerun the command to resume
EXIT_NONFINITE = 4  # the loss became NaN/inf: nothing written, the last checkpoint is the last good one
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


class NonFiniteLoss(RuntimeError):
    """The loss stopped being finite; the message is one line."""


# ---------------------------------------------------------------------------------------------- data


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


def _make_loader(dataset, sampler: EpochBatchSampler, num_workers: int, pin_memory: bool):
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                      collate_fn=getattr(dataset, "collate_fn", None) or collate,
                      pin_memory=pin_memory, persistent_workers=num_workers > 0,
                      worker_init_fn=_leave_signals_to_the_trainer if num_workers > 0 else None)


def _leave_signals_to_the_trainer(worker_id: int) -> None:
    """Loader workers ignore SIGTERM/SIGUSR2/SIGINT: a scheduler signals every process of a job, and a worker
    killed by it would crash the loop before the trainer (which does handle them) could save."""
    import signal

    for signum in (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _batch_size(batch: dict) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return int(value.shape[0])
    return 0


# ---------------------------------------------------------------------------------------------- setup


def _make_accelerator(cfg):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("trainer.device is 'cuda' but no CUDA device is available (use trainer.device=auto)")
    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    precision = cfg.mixed_precision if cuda else "no"
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise UserError("this GPU has no bf16 support: use trainer.mixed_precision=fp16 (or no)")
    ddp = DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)
    # cpu=True is what makes several CPU processes one gloo job (otherwise they train independently)
    return Accelerator(cpu=not cuda, mixed_precision=precision, kwargs_handlers=[ddp])


def _set_determinism(deterministic: bool, cuda: bool) -> None:
    if cuda and deterministic:
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = cuda and not deterministic


def _reseed(seed: int, rank: int, step: int) -> None:
    value = ((seed * 1_000_003 + rank) * 1_000_003 + step) % 2**63
    torch.manual_seed(value)
    random.seed(value)
    np.random.seed(value % 2**32)


def _optimizer(method, optim, base_lr: float):
    """Optimizer over ``method.parameter_groups()``; every trainable parameter in exactly one group."""
    names = {id(p): n for n, p in method.named_parameters()}
    seen: set[int] = set()
    groups = []
    for group in method.parameter_groups():
        params = [p for p in group["params"] if p.requires_grad]
        for p in params:
            if id(p) in seen:
                raise RuntimeError(f"parameter {names.get(id(p), '?')} is in two parameter groups")
            seen.add(id(p))
        if params:
            wd = group.get("weight_decay")
            groups.append({"params": params, "name": group["name"], "lr_scale": float(group.get("lr_scale", 1.0)),
                           "weight_decay": optim.weight_decay if wd is None else wd, "lr": base_lr})
    missing = [n for n, p in method.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        raise RuntimeError(f"parameter_groups() leaves out {len(missing)} trainable parameter(s), e.g. {missing[0]}")
    if not groups:
        raise UserError("the method has no trainable parameters")
    if optim.name == "sgd":
        return torch.optim.SGD(groups, lr=base_lr, momentum=optim.momentum, nesterov=optim.nesterov)
    cls = torch.optim.AdamW if optim.name == "adamw" else torch.optim.Adam
    return cls(groups, lr=base_lr, betas=tuple(optim.betas), eps=optim.eps)


def _lengths(recipe, dataset_size: int, world_size: int) -> tuple[int, int]:
    """(optimizer steps per epoch, total steps)."""
    cfg = recipe.trainer
    if cfg.grad_accum < 1 or recipe.data.batch_size < 1:
        raise UserError("data.batch_size and trainer.grad_accum must be at least 1")
    per_step = recipe.data.batch_size * world_size * cfg.grad_accum
    steps_per_epoch = dataset_size // per_step
    if steps_per_epoch == 0:
        raise UserError(f"the training set has {dataset_size} clips, fewer than one optimizer step needs "
                        f"({recipe.data.batch_size} per process x {world_size} process(es) x {cfg.grad_accum} "
                        "accumulated): lower data.batch_size or trainer.grad_accum")
    if cfg.max_steps is not None:
        if cfg.max_steps < 1:
            raise UserError("trainer.max_steps must be at least 1 (or null to train for trainer.epochs)")
        return steps_per_epoch, cfg.max_steps
    if not cfg.epochs > 0:
        raise UserError("trainer.epochs must be positive")
    return steps_per_epoch, max(1, int(round(cfg.epochs * steps_per_epoch)))


# ---------------------------------------------------------------------------------------------- helpers


class _StopFlag:
    """Records SIGTERM/SIGUSR2; the loop checks it at step boundaries."""

    def __init__(self, enabled: bool):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        if enabled:
            for sig in STOP_SIGNALS:
                try:
                    self._previous[sig] = signal.signal(sig, self._handle)
                except ValueError:  # not the main thread: the caller handles signals
                    break

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _checksum(method) -> float:
    """Sum of every parameter (float64): equal on processes holding equal weights."""
    with torch.no_grad():
        return float(sum(p.detach().double().sum().item() for p in method.parameters()))


def _teardown(accelerator, clean: bool) -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if clean:
            with contextlib.suppress(Exception):
                accelerator.wait_for_everyone()
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------- run state


def _saved_state(run: RunDir, config: dict, world: int) -> dict | None:
    """The checkpoint to resume from (None: a fresh start), after checking that the recipe still fits it."""
    if run.last.is_file():
        saved = load_checkpoint(run.last)
        check_resume(saved.get("config") or {}, config, run.root)
        if saved.get("world_size", world) != world:
            raise UserError(f"cannot resume {run.root}: it was trained with {saved['world_size']} process(es), "
                            f"this start has {world} (the global batch would change); use --nproc "
                            f"{saved['world_size']}")
        return saved
    if run.config.is_file():  # started before but stopped ahead of its first checkpoint
        from ssl_video.config import read_yaml

        check_resume(read_yaml(run.config), config, run.root, what="config.yaml")
    return None


def _prepare_run_dir(run: RunDir, config: dict, world: int, device: torch.device) -> None:
    from ssl_video.config import dump_yaml

    run.checkpoints.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(run.checkpoints)
    write_text(run.config, dump_yaml(config))
    write_env(run, environment(world, str(device)))


class _Window:
    """Metrics summed between two log steps; ``flush`` averages them over steps (and processes)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps, self.clips, self.wait, self.start = 0, 0, 0.0, time.time()

    def add(self, name: str, value: torch.Tensor, weight: float = 1.0) -> None:
        value = value.detach().float().reshape(()) * weight
        self.sums[name] = self.sums[name] + value if name in self.sums else value

    def flush(self, accelerator) -> dict[str, float]:
        names = sorted(self.sums)
        out = {}
        if names:
            values = torch.stack([self.sums[n] for n in names]) / max(1, self.steps)
            if accelerator.num_processes > 1:
                values = accelerator.reduce(values, reduction="mean")
            out = dict(zip(names, values.tolist()))
        elapsed = max(time.time() - self.start, 1e-9)
        out["clips_per_s"] = self.clips / elapsed
        out["data_wait"] = min(1.0, self.wait / elapsed)
        self.reset()
        return out


def _scalar_terms(out: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor) and v.numel() == 1}


def _tb_tag(key: str) -> str:
    if key.startswith("lr"):
        return key if "/" in key else "lr/all"
    if key in ("clips_per_s", "data_wait", "epoch"):
        return f"perf/{key}"
    return f"train/{key}"


# ---------------------------------------------------------------------------------------------- train


def train(recipe, run_dir: str | Path, recipe_path: str | Path | None = None, *,
          handle_signals: bool = True) -> dict:
    """Train ``recipe`` in ``run_dir`` (resuming from ``run_dir/checkpoints/last.pt`` when present).

    Returns the summary also written to ``run_dir/summary.json``: ``status`` ("completed", "stopped" by a
    signal, or "stopped_at_step"), ``step``, ``total_steps``, ``seconds``, ``train_seconds``, ``metrics``,
    ``param_checksums`` (one per process: equal when the processes hold the same weights), ``signal`` (the
    signal that stopped it: "SIGTERM" or "SIGUSR2", else None)...
    Raises :class:`NonFiniteLoss` when the loss stops being finite. ``handle_signals=False`` leaves SIGTERM
    and SIGUSR2 to the caller.
    """
    cfg = recipe.trainer
    if cfg.log_every < 1:
        raise UserError("trainer.log_every must be at least 1")
    if cfg.checkpoint_every < 0 or cfg.keep_every < 0:
        raise UserError("trainer.checkpoint_every and trainer.keep_every must be 0 (off) or positive")
    stop = _StopFlag(handle_signals)  # from the start: a signal during set-up stops after the first step
    previous_determinism = torch.are_deterministic_algorithms_enabled()
    accelerator, clean = None, False
    try:
        accelerator = _make_accelerator(cfg)
        summary = _train(recipe, RunDir(Path(run_dir)), recipe_path, accelerator, stop)
        clean = True
        return summary
    finally:
        stop.restore()
        torch.use_deterministic_algorithms(previous_determinism)
        if accelerator is not None:
            _teardown(accelerator, clean)


def _train(recipe, run: RunDir, recipe_path, accelerator, stop: _StopFlag) -> dict:
    from tqdm.auto import tqdm

    from ssl_video import __version__
    from ssl_video.config import to_dict
    from ssl_video.data.bad_files import BadFiles
    from ssl_video.methods import build_method

    started = time.time()
    cfg, optim, accum = recipe.trainer, recipe.optim, recipe.trainer.grad_accum
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    device = accelerator.device
    cuda = device.type == "cuda"
    config = to_dict(recipe)
    _set_determinism(cfg.deterministic, cuda)

    def log(message: str) -> None:
        if main:
            tqdm.write(f"[ssl-video] {message}")

    # 1. refuse to continue a run with a recipe that trains something else; then record this start
    saved = _saved_state(run, config, world)
    start_step = int(saved["step"]) if saved is not None else 0
    accelerator.wait_for_everyone()  # every process has read the run directory before it changes
    if main:
        _prepare_run_dir(run, config, world, device)

    # 2. the method, its data, the optimizer (same initial weights on every process)
    torch.manual_seed(recipe.seed)
    random.seed(recipe.seed)
    np.random.seed(recipe.seed % 2**32)
    method, dataset = build_method(recipe.method, recipe)
    if saved is not None:
        method.load_state_dict(saved["model"], strict=True)
    if cfg.sync_batchnorm and world > 1 and cuda:
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
    method.to(device).train()
    encoders = method.encoders()
    steps_per_epoch, total_steps = _lengths(recipe, len(dataset), world)
    schedule = schedule_from_config(optim, total_steps, steps_per_epoch)
    base_lr = optim.lr * (world if optim.lr_scaling == "world_size" else 1)
    optimizer = _optimizer(method, optim, base_lr)
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
    model, optimizer = accelerator.prepare(method, optimizer)
    if cfg.compile:
        model = torch.compile(model)
    scaler = getattr(accelerator, "scaler", None)
    if saved is not None and scaler is not None and saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sampler = EpochBatchSampler(len(dataset), recipe.data.batch_size, world, rank, recipe.data.seed,
                                steps_per_epoch * accum)
    loader = _make_loader(dataset, sampler, recipe.data.num_workers, pin_memory=cuda)
    bad_files = BadFiles(log=lambda m: print(f"[ssl-video rank {rank}] {m}", flush=True))
    previous_seconds = float(saved.get("train_seconds", 0.0)) if saved is not None else 0.0
    last_metrics: dict = dict(saved.get("metrics") or {}) if saved is not None else {}
    last_saved = start_step if saved is not None else None
    del saved

    # 3. logging
    metrics_log = MetricsLog(run.metrics, start_step) if main else None
    writer = None
    if main and cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run.tb), purge_step=start_step + 1)
    bar = tqdm(total=total_steps, initial=start_step, desc=recipe.name, unit="step", dynamic_ncols=True,
               disable=not (main and cfg.progress))
    log(f"{'resuming' if start_step else 'starting'} {recipe.method} in {run.root} at step {start_step}/"
        f"{total_steps} ({steps_per_epoch} steps per epoch, {len(dataset)} clips, {world} process(es) on "
        f"{device.type}, global batch {recipe.data.batch_size * world * accum})")
    loop_started = time.time()
    revision = git_revision() if main else None

    def checkpoint(step: int, keep: bool) -> None:
        state = {
            "model": {k: v.detach().cpu() for k, v in method.state_dict().items()},
            "encoders": encoders,
            "step": step,
            "epoch": step // steps_per_epoch,
            "step_in_epoch": step % steps_per_epoch,
            "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps,
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "world_size": world,
            "config": config,
            "recipe": str(recipe_path) if recipe_path is not None else None,
            "git_revision": revision,
            "version": __version__,
            "format_version": FORMAT_VERSION,
            "train_seconds": previous_seconds + time.time() - loop_started,
            "metrics": last_metrics,
        }
        save_checkpoint(state, run.last, run.kept(step) if keep else None)

    # 4. the loop: one iteration = one optimizer step of `accum` micro-batches
    window = _Window()
    step, data_iter = start_step, None
    status = "stopped_at_step" if cfg.stop_at_step is not None and cfg.stop_at_step <= step < total_steps \
        else "completed"
    stop_signum = 0
    try:
        while step < total_steps and not (cfg.stop_at_step is not None and step >= cfg.stop_at_step):
            epoch, position = divmod(step, steps_per_epoch)
            if data_iter is None:
                sampler.set_position(epoch, position * accum)
                data_iter = iter(loader)
            _reseed(recipe.seed, rank, step)
            loss_sum = torch.zeros((), device=device)
            for micro in range(accum):
                waited = time.time()
                batch = next(data_iter)
                window.wait += time.time() - waited
                bad_files.update(batch.pop("skipped", None) or [])
                window.clips += _batch_size(batch) * world
                sync = contextlib.nullcontext() if micro == accum - 1 else accelerator.no_sync(model)
                with sync:
                    out = model(_to_device(batch, device))
                    accelerator.backward(out["loss"] / accum)
                loss_sum += out["loss"].detach().float()
                for name, value in _scalar_terms(out).items():
                    window.add(name, value, 1.0 / accum)

            # every process learns whether any loss went bad or any process was asked to stop
            # (the stop flag is the signal number: SIGTERM, 15, wins over SIGUSR2, 12, when both arrive)
            flags = torch.stack([(~torch.isfinite(loss_sum)).float(),
                                 torch.tensor(float(stop.signum or 0), device=device)])
            if world > 1:
                torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
            bad_value, signum_value = flags.tolist()
            bad_loss, stop_signum = bool(bad_value), int(signum_value)
            stop_requested = stop_signum > 0
            if bad_loss:
                mine = not bool(torch.isfinite(loss_sum))
                shown = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in _scalar_terms(out).items()) if mine \
                    else "on another process"
                kept = (f"the last good checkpoint is {run.last} (step {last_saved})" if last_saved is not None
                        else "no checkpoint had been written yet")
                raise NonFiniteLoss(f"loss is not finite at step {step} (epoch {epoch}; {shown}): stopped "
                                    f"without saving; {kept}")

            factor = lr_factor(step, **schedule)
            for group in optimizer.param_groups:
                group["lr"] = base_lr * group["lr_scale"] * factor
            if optim.clip_grad_norm is not None:
                window.add("grad_norm", accelerator.clip_grad_norm_(params, optim.clip_grad_norm))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window.steps += 1
            bar.update(1)
            if position + 1 == steps_per_epoch:
                data_iter = None  # the next step starts a new epoch

            at_stop_step = cfg.stop_at_step is not None and step >= cfg.stop_at_step
            finished = step == total_steps or at_stop_step or stop_requested
            if step % cfg.log_every == 0 or finished:
                last_metrics = {"step": step, "epoch": round(step / steps_per_epoch, 4), **window.flush(accelerator),
                                "lr": base_lr * factor,
                                **{f"lr/{g['name']}": g["lr"] for g in optimizer.param_groups}, "time": time.time()}
                if main:
                    metrics_log.write(last_metrics)
                    for key, value in last_metrics.items():
                        if writer is not None and key not in ("step", "time"):
                            writer.add_scalar(_tb_tag(key), value, step)
                    if "loss" in last_metrics:
                        bar.set_postfix(loss=f"{last_metrics['loss']:.4f}")
            keep = cfg.keep_every > 0 and step % cfg.keep_every == 0
            if finished or keep or (cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0):
                if main:
                    checkpoint(step, keep)
                last_saved = step
            if stop_requested:
                status = "stopped"
                log(f"stopped by {signal.Signals(stop_signum).name}: checkpoint written at step {step}; run the "
                    "same command again to resume")
                break
            if at_stop_step:
                status = "stopped_at_step"
                break
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        if metrics_log is not None:
            metrics_log.close()

    checksum = torch.tensor([_checksum(method)], dtype=torch.float64, device=device)
    checksums = [checksum]
    if world > 1:
        checksums = [torch.zeros_like(checksum) for _ in range(world)]
        torch.distributed.all_gather(checksums, checksum)
    summary = {
        "status": status,
        "signal": signal.Signals(stop_signum).name if status == "stopped" else None,  # what stopped it
        "step": step,
        "total_steps": total_steps,
        "steps_per_epoch": steps_per_epoch,
        "epoch": round(step / steps_per_epoch, 4),
        "resumed_from": start_step if start_step else None,
        "seconds": time.time() - started,
        "train_seconds": previous_seconds + time.time() - loop_started,
        "world_size": world,
        "device": device.type,
        "bad_files": len(bad_files),
        "metrics": last_metrics,
        "param_checksums": [float(c) for c in checksums],
        "run_dir": str(run.root),
        "checkpoint": str(run.last),
    }
    if len(set(summary["param_checksums"])) > 1:
        log("warning: the processes ended with different weights")
    if main:
        write_json(run.summary, summary)
        log(f"{status} at step {step}/{total_steps} in {summary['seconds']:.1f} s; checkpoint {run.last}")
    return summary
