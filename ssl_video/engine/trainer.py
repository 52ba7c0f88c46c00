"""The one training loop every method runs.

``train(recipe, run_dir)`` builds the method and its training set from the registry
(:mod:`ssl_video.methods`), then, on every process: hands the method the global step
(``method.set_step``), samples micro-batches (:mod:`ssl_video.engine.batches`), calls ``method(batch)``
(a dict with ``"loss"`` and terms to log), back-propagates ``loss / grad_accum``, and after
``trainer.grad_accum`` micro-batches sets the learning rates, clips and takes an optimizer step. It never
knows which method it runs: it uses only the :class:`~ssl_video.methods.base.Method` contract. A method
returns the same scalar terms at every step on every process (they are averaged across processes when
logged). Recipe values are valid by construction (:mod:`ssl_video.recipe`); nothing here re-checks them.

The module reads in three parts: :func:`_setup` (run directory, method, data, optimizer, resume state),
:func:`_loop` (one iteration = one optimizer step) and :func:`_finish` (the summary).

Randomness in the loop (dropout, anything a method draws) comes from torch/numpy/python generators reseeded
from (``seed``, rank, step) before every step, so a resumed run is bit-identical to an uninterrupted one on
the CPU without saving any generator state.

Stopping. SIGTERM and SIGUSR2 set a flag; at the next step boundary every process agrees (an all-reduce)
and the run writes a checkpoint and stops: :func:`train` returns ``status="stopped"`` (exit code
:data:`~ssl_video.errors.EXIT_STOPPED`). A non-finite loss, or non-finite gradients behind a finite loss (the
global gradient norm is checked before every optimizer step; under fp16 the gradient scaler skips such steps
instead), on any process stops every process before the optimizer step, writes nothing and raises
:class:`~ssl_video.errors.NonFiniteLoss`; the last checkpoint stays the last good one. A checkpoint that
cannot be written (full disk, I/O error) stops every process with
:class:`~ssl_video.errors.CheckpointWriteError` (one line, exit 2), the previous checkpoint intact. Rerunning
the same command resumes from ``RUN/checkpoints/last.pt``.
"""

from __future__ import annotations

import contextlib
import random
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_video import threads
from ssl_video.engine.batches import EpochBatchSampler, batch_size, close_loader, make_loader, to_device
from ssl_video.engine.checkpoint import (
    EXTENDABLE_KEYS,
    RUNTIME_KEYS,
    check_resume,
    checkpoint_state,
    load_checkpoint,
    remove_stale_tmp,
    save_checkpoint,
)
from ssl_video.engine.progress import MetricWindow, TrainingLog, flat_config, scalar_terms
from ssl_video.engine.run_dir import RunDir, environment, git_revision, write_env
from ssl_video.engine.schedule import lr_factor, schedule_from_config
from ssl_video.engine.validation import BestEpoch, validate, validation_loader
from ssl_video.errors import CheckpointWriteError, NonFiniteLoss, UserError, one_line
from ssl_video.files import write_json, write_text

__all__ = ["train", "check_run_dir", "STOP_SIGNALS"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


# ---------------------------------------------------------------------------------------------- helpers


# trainer.trackers name -> what Accelerate's log_with takes (a name, or a GeneralTracker instance)
TRACKERS: dict[str, Any] = {"wandb": "wandb", "mlflow": "mlflow"}


def _trackers(names: list[str]) -> list:
    """Accelerate's ``log_with`` for ``trainer.trackers``; a tracker whose package is missing is one line."""
    import importlib.util

    out = []
    for name in names:
        tracker = TRACKERS[name]
        if isinstance(tracker, str) and importlib.util.find_spec(tracker) is None:
            raise UserError(f"trainer.trackers: {name} is not installed (pip install 'ssl_video[{name}]'), or "
                            "remove it from the recipe")
        out.append(tracker)
    return out


def _make_accelerator(cfg, run_dir: Path):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("trainer.device is 'cuda' but no CUDA device is available (use trainer.device=auto)")
    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    precision = cfg.mixed_precision if cuda else ("bf16" if cfg.cpu_autocast else "no")
    if cuda and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise UserError("this GPU has no bf16 support: use trainer.mixed_precision=fp16 (or no)")
    ddp = DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)
    # cpu=True is what makes several CPU processes one gloo job (otherwise they train independently)
    trackers = _trackers(cfg.trackers)
    return Accelerator(cpu=not cuda, mixed_precision=precision, kwargs_handlers=[ddp], log_with=trackers or None,
                       project_dir=str(run_dir) if trackers else None)


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
    per_step = recipe.data.batch_size * world_size * cfg.grad_accum
    steps_per_epoch = dataset_size // per_step
    if steps_per_epoch == 0:
        raise UserError(f"the training set has {dataset_size} clips, fewer than one optimizer step needs "
                        f"({recipe.data.batch_size} per process x {world_size} process(es) x {cfg.grad_accum} "
                        "accumulated): lower data.batch_size or trainer.grad_accum")
    if cfg.max_steps is not None:
        return steps_per_epoch, cfg.max_steps
    return steps_per_epoch, max(1, int(round(cfg.epochs * steps_per_epoch)))


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

    accelerator.free_memory()  # its references to the prepared model and optimizer, then a collection
    if dist.is_available() and dist.is_initialized():
        if clean:
            with contextlib.suppress(Exception):
                accelerator.wait_for_everyone()
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
    # Accelerate keeps its settings (mixed precision) in a process-wide singleton; forget them so that a
    # later train() in the same process (fine-tuning split after split, a notebook) may choose others
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()


def _saved_state(run: RunDir, config: dict, world: int, resume: str | Path = "auto",
                 extend: bool = False, flags: dict | None = None) -> tuple[dict | None, dict | None]:
    """``(checkpoint to resume from, checkpoint to start from)``, after checking that the recipe fits them.

    ``resume``: ``"auto"`` resumes ``run/checkpoints/last.pt`` when present; ``"never"`` refuses a run
    directory that already holds a run; a path (a checkpoint file or another run directory) gives the weights
    and optimizer state of the first start, at step 0 (once the run directory has its own checkpoint, that
    one is resumed). ``extend`` lets ``trainer.max_steps``/``trainer.epochs`` differ from the checkpoint's.
    """
    if resume == "never":
        if run.last.is_file() or run.config.is_file():
            raise UserError(f"--fresh: {run.root} already holds a run; give another --run-dir (or remove it) to "
                            "start from step 0")
        return None, None
    runtime = RUNTIME_KEYS + (EXTENDABLE_KEYS if extend else ())
    if run.last.is_file():
        saved = load_checkpoint(run.last)
        check_resume(saved.get("config") or {}, config, run.root, runtime=runtime, flags=flags)
        if saved.get("world_size", world) != world:
            raise UserError(f"cannot resume {run.root}: it was trained with {saved['world_size']} process(es), "
                            f"this start has {world} (the global batch would change): start it with "
                            f"{saved['world_size']} process(es)")
        return saved, None
    _check_saved_config(run, config, runtime, flags)  # started before but stopped ahead of its first checkpoint
    if resume == "auto":
        return None, None
    source = Path(resume)
    path = RunDir(source).last if source.is_dir() else source
    if not path.is_file():
        raise UserError(f"--resume {resume}: no checkpoint there (a checkpoint file, or a run directory holding "
                        "checkpoints/last.pt)")
    return None, load_checkpoint(path)


def check_run_dir(recipe, run_dir: str | Path, flags: dict | None = None) -> None:
    """Refuse (one-line :class:`UserError`) a recipe that :func:`train` would refuse to resume ``run_dir`` with,
    from the run's ``config.yaml`` (no checkpoint is loaded): what a caller checks before slow work of its own
    (``eval finetune`` before it opens every video)."""
    from ssl_video.recipe import recipe_dict

    _check_saved_config(RunDir(Path(run_dir)), recipe_dict(recipe), RUNTIME_KEYS, flags)


def _check_saved_config(run: RunDir, config: dict, runtime: tuple, flags: dict | None) -> None:
    """The run's ``config.yaml`` (when there is one) against ``config``: one-line refusal naming what differs."""
    if run.config.is_file():
        from ssl_video.config import read_yaml

        check_resume(read_yaml(run.config), config, run.root, what="config.yaml", runtime=runtime, flags=flags)


def _start_from(method, optimizer, initial: dict, source, log) -> None:
    """Load another run's weights (strict) and, when the optimizer is the same kind with the same parameter
    groups, its optimizer state; the recipe's hyper-parameters (lr, momentum, betas, weight decay) stay."""
    try:
        method.load_state_dict(initial["model"], strict=True)
    except RuntimeError as exc:
        raise UserError(f"--resume {source}: its weights do not fit this recipe's model ({one_line(exc)})") from None
    saved_optim = (initial.get("config") or {}).get("optim", {}).get("name")
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    state = initial.get("optimizer") or {}
    same = (saved_optim == type(optimizer).__name__.lower()
            and [len(g["params"]) for g in state.get("param_groups", [])]
            == [len(g["params"]) for g in optimizer.param_groups])
    if same:
        try:
            optimizer.load_state_dict(state)
        except (ValueError, KeyError):
            same = False
        for group, settings in zip(optimizer.param_groups, groups):
            group.update(settings)
    log.message(f"starting from {source} (step {initial.get('step')}): weights"
                + (" and optimizer state" if same else "; optimizer state not loaded (another optimizer or "
                   "other parameter groups)") + "; this run counts its steps from 0")


def _prepare_run_dir(run: RunDir, config: dict, world: int, device: torch.device) -> None:
    from ssl_video.config import dump_yaml

    run.checkpoints.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(run.checkpoints)
    write_text(run.config, dump_yaml(config))
    write_env(run, environment(world, str(device)))


# ---------------------------------------------------------------------------------------------- train


def train(recipe, run_dir: str | Path, recipe_path: str | Path | None = None, *,
          handle_signals: bool = True, resume: str | Path = "auto", extend: bool = False,
          flags: dict | None = None) -> dict:
    """Train ``recipe`` in ``run_dir`` (resuming from ``run_dir/checkpoints/last.pt`` when present).

    Returns the summary also written to ``run_dir/summary.json``: ``status`` ("completed", "stopped" by a
    signal, or "stopped_at_step"), ``step``, ``total_steps``, ``seconds``, ``train_seconds``, ``metrics``,
    ``param_checksums`` (one per process: equal when the processes hold the same weights), ``signal`` (the
    signal that stopped it: "SIGTERM" or "SIGUSR2", else None)...
    Raises :class:`~ssl_video.errors.NonFiniteLoss` when the loss stops being finite. ``handle_signals=False``
    leaves SIGTERM and SIGUSR2 to the caller.

    ``resume``: ``"auto"`` (resume ``run_dir`` when it holds a checkpoint), ``"never"`` (refuse a run directory
    that holds a run) or the path of another run's checkpoint (or run directory) whose weights and optimizer
    state this run starts from, at step 0. ``extend=True`` lets the recipe lengthen a run
    (``trainer.max_steps`` / ``trainer.epochs``): the schedule is laid over the new length and the run goes on
    from the saved step (see :func:`_saved_state`). A start that is refused leaves ``run_dir`` as it was.
    """
    stop = _StopFlag(handle_signals)  # from the start: a signal during set-up stops after the first step
    threads.configure(workers=recipe.data.num_workers)  # OMP_NUM_THREADS set by a launcher or the user wins
    previous_determinism = torch.are_deterministic_algorithms_enabled()
    accelerator, clean = None, False
    try:
        accelerator = _make_accelerator(recipe.trainer, Path(run_dir))
        run = _setup(recipe, RunDir(Path(run_dir)), recipe_path, accelerator, stop, resume, extend, flags)
        try:
            try:
                status, signum = _loop(run)
            finally:
                close_loader(run.loader)
            summary = _finish(run, status, signum)
        finally:
            run.log.close()
        clean = True
        return summary
    except BaseException as exc:
        # an error every process raised at the same step (a non-finite loss, a failed checkpoint): every
        # process reaches the barrier, and the model is let go of here rather than by the collector at
        # interpreter exit, where the distributed model's process group would go down with it (gloo then
        # aborted the process now and then, after the one-line error)
        if getattr(exc, "every_process", False):
            clean = True
            traceback.clear_frames(exc.__traceback__)
        raise
    finally:
        run = None  # the run (and its model) unreachable before the teardown collects
        stop.restore()
        torch.use_deterministic_algorithms(previous_determinism)
        if accelerator is not None:
            _teardown(accelerator, clean)


@dataclass
class _Run:
    """Everything the loop works with, made once by :func:`_setup`."""

    recipe: Any
    run: RunDir
    recipe_path: Any
    accelerator: Any
    stop: _StopFlag
    config: dict
    method: Any
    model: Any
    optimizer: Any
    scaler: Any
    loader: Any
    sampler: EpochBatchSampler
    bad_files: Any
    log: TrainingLog
    steps_per_epoch: int
    total_steps: int
    schedule: dict
    base_lr: float
    start_step: int
    previous_seconds: float
    last_metrics: dict
    last_saved: int | None
    revision: str | None
    started: float
    valid_loader: Any = None
    best: Any = None
    val_metrics: dict | None = None
    step: int = 0
    loop_started: float = 0.0

    def checkpoint(self, step: int, keep: bool, path: Path | None = None) -> None:
        state = checkpoint_state(
            method=self.method, optimizer=self.optimizer, scaler=self.scaler, step=step,
            steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps,
            world_size=self.accelerator.num_processes, config=self.config, recipe_path=self.recipe_path,
            git_revision=self.revision, train_seconds=self.previous_seconds + time.time() - self.loop_started,
            metrics=self.last_metrics)
        save_checkpoint(state, path or self.run.last, self.run.kept(step) if keep else None)


def _setup(recipe, run: RunDir, recipe_path, accelerator, stop: _StopFlag, resume: str | Path = "auto",
           extend: bool = False, flags: dict | None = None) -> _Run:
    from ssl_video.data.bad_files import BadFiles
    from ssl_video.methods import build_method
    from ssl_video.recipe import recipe_dict

    started = time.time()
    cfg, optim = recipe.trainer, recipe.optim
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    device = accelerator.device
    cuda = device.type == "cuda"
    config = recipe_dict(recipe)
    _set_determinism(cfg.deterministic, cuda)

    # 1. refuse to continue a run with a recipe that trains something else (nothing written yet)
    saved, initial = _saved_state(run, config, world, resume, extend, flags)
    start_step = int(saved["step"]) if saved is not None else 0

    # 2. the method, its data, the optimizer (same initial weights on every process): every check that can
    # refuse the start runs before the run directory is created
    torch.manual_seed(recipe.seed)
    random.seed(recipe.seed)
    np.random.seed(recipe.seed % 2**32)
    method, dataset = build_method(recipe)
    if saved is not None:
        method.load_state_dict(saved["model"], strict=True)
    if cfg.sync_batchnorm and world > 1 and cuda:
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
    method.to(device).train()
    steps_per_epoch, total_steps = _lengths(recipe, len(dataset), world)
    if start_step > total_steps:
        raise UserError(f"cannot resume {run.root} at step {start_step}: the recipe now trains {total_steps} steps; "
                        "--extend only lengthens a run")
    base_lr = optim.lr * (world if optim.lr_scaling == "world_size" else 1)
    optimizer = _optimizer(method, optim, base_lr)
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
    valid = type(method).validation_dataset(recipe)
    if valid is None and cfg.best_metric is not None:
        raise UserError(f"trainer.best_metric is {cfg.best_metric!r} but method {recipe.method} has no validation "
                        "set in this recipe: give it (e.g. tsp.valid_csv) or set trainer.best_metric=null")
    accelerator.wait_for_everyone()  # every process has read the run directory before it changes
    if main:
        _prepare_run_dir(run, config, world, device)
    if cfg.trackers:
        accelerator.init_trackers(recipe.name, config=flat_config(config))
    log = TrainingLog(run, main=main, start_step=start_step, total_steps=total_steps, name=recipe.name,
                      tensorboard=cfg.tensorboard, progress=cfg.progress, hparams=config,
                      trackers=accelerator.trackers if cfg.trackers else ())
    if initial is not None:
        _start_from(method, optimizer, initial, resume, log)
    model, optimizer = accelerator.prepare(method, optimizer)
    if cfg.compile:
        model = torch.compile(model)
    scaler = getattr(accelerator, "scaler", None)
    if saved is not None and scaler is not None and saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])
    sampler = EpochBatchSampler(len(dataset), recipe.data.batch_size, world, rank, recipe.data.seed,
                                steps_per_epoch * cfg.grad_accum)

    # 3. logging
    log.message(f"{'resuming' if start_step else 'starting'} {recipe.method} in {run.root} at step {start_step}/"
                f"{total_steps} ({steps_per_epoch} steps per epoch, {len(dataset)} clips, {world} process(es) on "
                f"{device.type}, global batch {recipe.data.batch_size * world * cfg.grad_accum})")
    return _Run(
        recipe=recipe, run=run, recipe_path=recipe_path, accelerator=accelerator, stop=stop, config=config,
        method=method, model=model, optimizer=optimizer, scaler=scaler,
        loader=make_loader(dataset, sampler, recipe.data.num_workers, pin_memory=cuda), sampler=sampler,
        bad_files=BadFiles(log=lambda m: print(f"[ssl-video rank {rank}] {m}", flush=True)), log=log,
        steps_per_epoch=steps_per_epoch, total_steps=total_steps,
        schedule=schedule_from_config(optim, total_steps, steps_per_epoch), base_lr=base_lr,
        start_step=start_step,
        previous_seconds=float(saved.get("train_seconds", 0.0)) if saved is not None else 0.0,
        last_metrics=dict(saved.get("metrics") or {}) if saved is not None else {},
        last_saved=start_step if saved is not None else None,
        revision=git_revision() if main else None, started=started,
        valid_loader=None if valid is None else validation_loader(valid, recipe.data.batch_size, world, rank,
                                                                  recipe.data.num_workers, cuda),
        best=BestEpoch(cfg.best_metric, cfg.best_mode, run.best_record))


def _loop(r: _Run) -> tuple[str, int]:
    """Optimizer steps until the end, ``trainer.stop_at_step`` or a stop signal: ``(status, signal number)``."""
    cfg, accum, accelerator, device = r.recipe.trainer, r.recipe.trainer.grad_accum, r.accelerator, r.accelerator.device
    world, rank = accelerator.num_processes, accelerator.process_index
    params = [p for group in r.optimizer.param_groups for p in group["params"]]
    window = MetricWindow()
    step, data_iter = r.start_step, None
    r.step = step
    stop_at = cfg.stop_at_step if cfg.stop_at_step is not None else r.total_steps
    if stop_at <= step < r.total_steps:
        return "stopped_at_step", 0
    r.loop_started = time.time()
    while step < min(r.total_steps, stop_at):
        epoch, position = divmod(step, r.steps_per_epoch)
        if data_iter is None:
            r.sampler.set_position(epoch, position * accum)
            data_iter = iter(r.loader)
        _reseed(r.recipe.seed, rank, step)
        r.method.set_step(step)
        loss_sum = torch.zeros((), device=device)
        for micro in range(accum):
            waited = time.time()
            batch = next(data_iter)
            window.wait += time.time() - waited
            r.bad_files.update(batch.pop("skipped", None) or [])
            window.clips += batch_size(batch) * world
            sync = contextlib.nullcontext() if micro == accum - 1 else accelerator.no_sync(r.model)
            with sync:
                out = r.model(to_device(batch, device))
                accelerator.backward(out["loss"] / accum)
            loss_sum += out["loss"].detach().float()
            for name, value in scalar_terms(out).items():
                window.add(name, value, 1.0 / accum)

        # every process learns whether any loss or gradient went bad, or any process was asked to stop
        # (the stop flag is the signal number: SIGTERM, 15, wins over SIGUSR2, 12, when both arrive)
        clip = r.recipe.optim.clip_grad_norm
        if clip is not None:  # clipping measures the global norm anyway: one pass over the gradients
            grad_norm = accelerator.clip_grad_norm_(params, clip)
        else:
            grad_norm = _gradient_norm(params) if r.scaler is None else None
        checked = grad_norm if r.scaler is None else None  # fp16: the scaler skips bad steps itself
        bad_grad = torch.zeros((), device=device) if checked is None else (~torch.isfinite(checked)).float()
        flags = torch.stack([(~torch.isfinite(loss_sum)).float(), bad_grad,
                             torch.tensor(float(r.stop.signum or 0), device=device)])
        if world > 1:
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        bad_loss, bad_gradient, signum_value = flags.tolist()
        if bad_loss or bad_gradient:
            _raise_non_finite(r, step, epoch, bool(bad_loss), loss_sum, checked, out)

        factor = lr_factor(step, **r.schedule)
        for group in r.optimizer.param_groups:
            group["lr"] = r.base_lr * group["lr_scale"] * factor
        if grad_norm is not None:
            window.add("grad_norm", grad_norm)
        r.optimizer.step()
        r.optimizer.zero_grad(set_to_none=True)
        step += 1
        r.step = step
        window.steps += 1
        r.log.step()
        if position + 1 == r.steps_per_epoch:
            data_iter = None  # the next step starts a new epoch
            _end_epoch(r, step)

        signum = int(signum_value)
        finished = step == r.total_steps or step >= stop_at or signum > 0
        if step % cfg.log_every == 0 or finished:
            r.last_metrics = {"step": step, "epoch": round(step / r.steps_per_epoch, 4),
                              **window.flush(accelerator), "lr": r.base_lr * factor,
                              **{f"lr/{g['name']}": g["lr"] for g in r.optimizer.param_groups}, "time": time.time()}
            r.log.write(r.last_metrics, step)
        keep = cfg.keep_every > 0 and step % cfg.keep_every == 0
        if finished or keep or (cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0):
            _save_everywhere(r, step, keep)
        if signum > 0:
            r.log.message(f"stopped by {signal.Signals(signum).name}: checkpoint written at step {step}; run the "
                          "same command again to resume")
            return "stopped", signum
    return ("completed" if step >= r.total_steps else "stopped_at_step"), 0


def _end_epoch(r: _Run, step: int) -> None:
    """Validation after an epoch (when the method has a validation set); best.pt when it improves."""
    if r.valid_loader is None:
        return
    epoch = step // r.steps_per_epoch
    r.val_metrics = validate(r.method, r.valid_loader, r.accelerator)
    r.log.write({"step": step, "epoch": epoch, **r.val_metrics}, step)
    r.log.message(f"validation after epoch {epoch}: " + ", ".join(f"{k}={v:.4g}" for k, v in r.val_metrics.items()))
    if r.best.improves(r.val_metrics):
        main = r.accelerator.is_main_process
        if main:
            r.checkpoint(step, False, r.run.best)
        r.best.update(r.val_metrics, epoch, step, write=main)
        r.log.message(f"best {r.best.metric} so far ({r.best.value:.4g}): {r.run.best}")


def _gradient_norm(params: list[torch.Tensor]) -> torch.Tensor | None:
    """The global L2 norm of the gradients (non-finite as soon as one gradient is)."""
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else None


def _save_everywhere(r: _Run, step: int, keep: bool) -> None:
    """Rank 0 writes the checkpoint; every process learns whether it could (a full or failing disk stops
    the whole run with one line, the previous checkpoint intact)."""
    failure = ""
    if r.accelerator.is_main_process:
        try:
            r.checkpoint(step, keep)
        except OSError as exc:
            failure = exc.strerror or one_line(exc)
    failed = torch.tensor(float(bool(failure)), device=r.accelerator.device)
    if r.accelerator.num_processes > 1:
        torch.distributed.all_reduce(failed, op=torch.distributed.ReduceOp.MAX)
    if bool(failed):
        kept = (f"the previous checkpoint {r.run.last} (step {r.last_saved}) is intact" if r.last_saved is not None
                else "no earlier checkpoint exists")
        raise CheckpointWriteError(f"cannot write the checkpoint of step {step} ({failure or 'failed on rank 0'}); "
                                   f"{kept}: free the disk and run the same command again to resume")
    r.last_saved = step


def _raise_non_finite(r: _Run, step: int, epoch: int, any_loss: bool, loss_sum: torch.Tensor,
                      grad_norm: torch.Tensor | None, out: dict) -> None:
    """Stop with one line: the loss when any process's loss went bad (its gradients then poison every
    process's through the all-reduce), else the gradient norm; this process's terms when it is the culprit."""
    if any_loss:
        what, mine = "loss", not bool(torch.isfinite(loss_sum))
    else:
        what, mine = "gradient norm", grad_norm is not None and not bool(torch.isfinite(grad_norm))
    shown = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in scalar_terms(out).items()) if mine \
        else "on another process"
    if mine and not any_loss:
        shown += f", grad_norm={float(grad_norm):.4g}"
    kept = (f"the last good checkpoint is {r.run.last} (step {r.last_saved})" if r.last_saved is not None
            else "no checkpoint had been written yet")
    raise NonFiniteLoss(f"{what} is not finite at step {step} (epoch {epoch}; {shown}): stopped without saving; "
                        f"{kept}")


def _finish(r: _Run, status: str, signum: int) -> dict:
    """The summary (``summary.json``), with every process's parameter checksum."""
    accelerator, device = r.accelerator, r.accelerator.device
    world = accelerator.num_processes
    checksum = torch.tensor([_checksum(r.method)], dtype=torch.float64, device=device)
    checksums = [checksum]
    if world > 1:
        checksums = [torch.zeros_like(checksum) for _ in range(world)]
        torch.distributed.all_gather(checksums, checksum)
    step = r.step
    loop_seconds = time.time() - r.loop_started if r.loop_started else 0.0
    summary = {
        "status": status,
        "signal": signal.Signals(signum).name if status == "stopped" else None,  # what stopped it
        "step": step,
        "total_steps": r.total_steps,
        "steps_per_epoch": r.steps_per_epoch,
        "epoch": round(step / r.steps_per_epoch, 4),
        "resumed_from": r.start_step if r.start_step else None,
        "seconds": time.time() - r.started,
        "train_seconds": r.previous_seconds + loop_seconds,
        "world_size": world,
        "device": device.type,
        "bad_files": len(r.bad_files),
        "metrics": r.last_metrics,
        "validation": r.val_metrics,
        "best": None if r.best.epoch is None else {"metric": r.best.metric, "value": r.best.value,
                                                   "epoch": r.best.epoch, "checkpoint": str(r.run.best)},
        "param_checksums": [float(c) for c in checksums],
        "run_dir": str(r.run.root),
        "checkpoint": str(r.run.last),
    }
    if len(set(summary["param_checksums"])) > 1:
        r.log.message("warning: the processes ended with different weights")
    if accelerator.is_main_process:
        write_json(r.run.summary, summary)
        r.log.message(f"{status} at step {step}/{r.total_steps} in {summary['seconds']:.1f} s; checkpoint {r.run.last}")
    return summary
