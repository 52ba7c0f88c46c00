"""``ssl-video pretrain``: train a recipe's method with the shared training loop."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ssl_video.cli import add_command, add_slurm_option

EXAMPLE = """examples:
  ssl-video pretrain recipes/stica_tiny_synthetic.yaml data.root=data/synth
  ssl-video pretrain recipes/stica_r2p1d18_k400.yaml optim.lr=0.32 --run-dir runs/stica_k400
  ssl-video pretrain recipes/stica_tiny_synthetic.yaml --nproc 2      (2 local processes: gloo on CPU, NCCL on GPUs)
  ssl-video pretrain runs/stica_k400/config.yaml --run-dir runs/stica_k400   (resume with the saved recipe)
  ssl-video pretrain recipes/stica_r2p1d18_k400.yaml --slurm slurm/example.yaml --nodes 4   (a Slurm job)

With --slurm the job runs one task per GPU (CPU profiles: tasks_per_node), saves a checkpoint at a step
boundary on SIGUSR2 (signal_delay_s before the time limit) or SIGTERM (preemption, scancel), and resumes from
the run directory at every start; a timeout requeues it up to max_num_timeout times. `ssl-video jobs RUN`
shows its state, requeues, last step and checkpoint and the end of its log.

The run directory (default runs/<recipe name>-<date>-<time>) receives config.yaml, env.json, metrics.jsonl,
train.log, tb/ (TensorBoard) and checkpoints/last.pt. Rerunning with the same --run-dir resumes from its last
checkpoint (--resume auto, the default); a recipe that changes what is trained (anything but data paths,
num_workers, device, logging and checkpoint intervals, trainer.stop_at_step) is refused. A refused start
leaves no run directory behind.

Starting and extending:
  ssl-video pretrain runs/x/config.yaml trainer.max_steps=2000 --run-dir runs/x --extend
      train a finished (or running) run further: only trainer.max_steps / trainer.epochs may change; the
      learning-rate schedule is laid over the new length and training goes on from the saved step (with a
      cosine schedule the rate at the saved step is the longer schedule's, i.e. higher than where it stopped)
  ssl-video pretrain recipes/stica_tiny_synthetic.yaml --resume runs/x --run-dir runs/y
      start a new run from another run's weights and optimizer state (a run directory or a checkpoint file;
      the model must be the same architecture); the new run counts its steps, schedule and epochs from 0 and
      the recipe's hyper-parameters apply. Rerunning it resumes runs/y once runs/y has a checkpoint.
  ssl-video pretrain recipes/stica_tiny_synthetic.yaml --fresh --run-dir runs/z
      never resume: refused when runs/z already holds a run (nothing is removed)
exit codes: 0 done (or trainer.stop_at_step reached); 2 bad recipe, arguments or an incompatible resume;
  3 stopped by SIGTERM/SIGUSR2 after writing a checkpoint (rerun to resume); 4 the loss became NaN/inf
  (nothing written; checkpoints/last.pt is the last good one); 1 an unexpected error."""


def register(subparsers) -> None:
    cmd = add_command(subparsers, "pretrain", "train a recipe (STiCA, TSP, finetune, ...) in a run directory",
                      run_pretrain, EXAMPLE)
    cmd.add_argument("recipe", help="recipe YAML file (or a run's config.yaml)")
    cmd.add_argument("overrides", nargs="*", default=[], help="dotted key=value overrides, e.g. optim.lr=0.1")
    cmd.add_argument("--run-dir", default=None,
                     help="run directory; resumes when it holds checkpoints/last.pt (default: runs/<name>-<time>)")
    start = cmd.add_mutually_exclusive_group()
    start.add_argument("--resume", default="auto", metavar="auto|PATH",
                       help="auto (default): resume the run directory when it holds a checkpoint; PATH: start from "
                            "another run's checkpoint (file or run directory): weights and optimizer state, step 0")
    start.add_argument("--fresh", action="store_true",
                       help="start from step 0; refused when the run directory already holds a run")
    cmd.add_argument("--extend", action="store_true",
                     help="allow a longer trainer.max_steps / trainer.epochs than the run's checkpoint: the schedule "
                          "is laid over the new length, training goes on from the saved step")
    cmd.add_argument("--nproc", type=int, default=1,
                     help="processes on this machine (one per GPU on CUDA; default 1)")
    add_slurm_option(cmd, submit=submit_pretrain, job_dir=False)
    cmd.add_argument("--nodes", type=int, default=None, help="with --slurm: nodes (default: the profile's)")


def submit_pretrain(args, argv: list[str]) -> int:
    """``--slurm PROFILE``: submit the recipe as a training job (its run directory made absolute)."""
    from ssl_video.engine.run_dir import default_run_dir
    from ssl_video.errors import UserError
    from ssl_video.recipe import load_recipe
    from ssl_video.slurm.submit import submit_training

    if args.nproc != 1:
        raise UserError("--nproc is for this machine; with --slurm the profile sets the processes "
                        "(gpus_per_node or tasks_per_node, and --nodes)")
    recipe = load_recipe(args.recipe, args.overrides)
    _check_start(args)
    if not args.dry_run:
        from ssl_video.methods import check_training_data

        check_training_data(recipe)  # the data is there before the job waits in the queue
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(recipe.name)
    return submit_training(recipe, args.recipe, args.overrides, run_dir, args.slurm, args.nodes, args.dry_run,
                           start=_start(args))


def run_pretrain(args) -> int:
    from ssl_video.errors import UserError
    from ssl_video.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.nproc < 1:
        raise UserError("--nproc must be at least 1")
    _check_start(args)
    distributed_child = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if args.run_dir is None and distributed_child:
        raise UserError("give --run-dir when starting several processes yourself (torchrun, srun), so that "
                        "every process writes to the same run directory")
    if args.nproc > 1 and distributed_child:
        raise UserError("--nproc starts the processes itself: do not combine it with torchrun/srun")
    from ssl_video.engine.run_dir import default_run_dir

    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(recipe.name)
    if args.nproc > 1:
        return _launch_local(args, recipe, run_dir)
    return _train_here(recipe, run_dir, args.recipe, _start(args))


def _start(args) -> dict:
    """How the run starts: ``train``'s ``resume`` and ``extend`` arguments."""
    return {"resume": "never" if args.fresh else args.resume, "extend": bool(args.extend)}


def _check_start(args) -> None:
    from ssl_video.errors import UserError

    if args.resume != "auto" and not Path(args.resume).exists():
        raise UserError(f"--resume {args.resume}: no such checkpoint file or run directory (or give --resume auto)")


def _start_flags(args) -> list[str]:
    """The start options, repeated on the command line of the processes --nproc starts."""
    flags = ["--fresh"] if args.fresh else ([] if args.resume == "auto" else ["--resume", args.resume])
    return flags + (["--extend"] if args.extend else [])


def _train_here(recipe, run_dir: Path, recipe_path: str, start: dict) -> int:
    from ssl_video.threads import configure

    configure(workers=recipe.data.num_workers)  # before torch starts: thread count and wait policy
    from ssl_video.engine.trainer import train
    from ssl_video.errors import exit_code_for_status

    return exit_code_for_status(train(recipe, run_dir, recipe_path=recipe_path, **start)["status"])


def _entry_point() -> list[str]:
    """How this process was started, to start the others the same way (a script may register methods)."""
    script = sys.argv[0] if sys.argv else ""
    if script and os.path.isfile(script) and os.path.basename(script) != "__main__.py":
        return [script]
    return ["-m", "ssl_video"]


def _launch_local(args, recipe, run_dir: Path) -> int:
    from ssl_video.engine.launch import launch_local
    from ssl_video.errors import UserError

    if recipe.trainer.device != "cpu":
        import torch

        gpus = torch.cuda.device_count()
        if recipe.trainer.device == "cuda" or gpus:
            if args.nproc > gpus:
                raise UserError(f"--nproc {args.nproc} but this machine has {gpus} GPU(s): one process per GPU "
                                "(or trainer.device=cpu)")
    command = [sys.executable, *_entry_point(), "pretrain", args.recipe, *args.overrides, "--run-dir", str(run_dir),
               *_start_flags(args)]
    print(f"[ssl-video] starting {args.nproc} processes; run directory {run_dir}", flush=True)
    return launch_local(command, args.nproc)
