"""Run pretraining, evaluation and extraction as Slurm jobs (through submitit).

``profile``: cluster profiles (``slurm/*.yaml``) as a typed dataclass; ``jobs``: the record of a directory's
jobs (``DIR/slurm/jobs.json``); ``submit``: building the executor, submitting and recording jobs; ``tasks``:
the callables that run inside a job (training is preemption-safe: save at a step boundary, then requeue);
``state``: job states merged from sacct, squeue and scontrol; ``status``: those states plus what the run
directory shows (``ssl-video jobs``), and cancelling."""

IN_JOB_ENV = "SSL_VIDEO_SLURM_JOB"  # set inside a job: a command line run there never submits again
