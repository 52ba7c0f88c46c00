"""Run pretraining, evaluation and extraction as Slurm jobs (through submitit).

``profile``: cluster profiles (``slurm/*.yaml``) as a typed dataclass; ``submit``: building the executor,
submitting and recording jobs in their directory; ``tasks``: the callables that run inside a job
(training is preemption-safe: save at a step boundary, then requeue); ``status``: job states from Slurm
accounting plus what the run directory shows (``ssl-video jobs``).
"""

IN_JOB_ENV = "SSL_VIDEO_SLURM_JOB"  # set inside a job: a command line run there never submits again
