"""Evaluation suites: a YAML list of protocols run on one encoder, with one combined report.

```yaml
name: ucf101_hmdb51_linear
description: ...
protocols:
  - {protocol: linear-probe, dataset: ucf101, splits: ["1", "2", "3"], clips: 10}
  - {protocol: retrieval, dataset: hmdb51, ks: [1, 5, 10, 20]}
  - {protocol: finetune, dataset: ucf101, clips: 10, finetune: {epochs: 12, crops: 3}}
```
``clips`` is the number of clips per video for features (probe, retrieval) or test views (fine-tune);
``finetune`` holds the fine-tuning settings (:class:`~ssl_video.evaluation.finetune.FinetuneSettings`).
Dataset locations come from the command line (``--root ucf101=/data/ucf101`` or ``--data-root DIR``
holding one folder per dataset name), so one suite file serves every machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from ssl_video.config import load_config
from ssl_video.errors import UserError
from ssl_video.evaluation.finetune import FinetuneSettings, run_finetune
from ssl_video.evaluation.report import write_report
from ssl_video.evaluation.runner import EvalInputs, run_linear_probe, run_retrieval

__all__ = ["SuiteEntry", "Suite", "load_suite", "run_suite"]


@dataclass
class SuiteEntry:
    protocol: Literal["linear-probe", "retrieval", "finetune"]
    dataset: Literal["ucf101", "hmdb51", "synthetic", "kinetics"]
    splits: list[str] | None = None
    clips: int = 10
    frames: int | None = None
    fps: float | None = None
    resize: int | None = None
    crop: int | None = None
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20])
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    name: str | None = None


@dataclass
class Suite:
    name: str
    description: str = ""
    protocols: list[SuiteEntry] = field(default_factory=list)


def load_suite(path: str | Path) -> Suite:
    suite = load_config(Suite, path)
    if not suite.protocols:
        raise UserError(f"suite {path} lists no protocols")
    return suite


def _root_for(dataset: str, roots: dict[str, str], data_root: str | None) -> str:
    if dataset in roots:
        return roots[dataset]
    if data_root is not None:
        return str(Path(data_root) / dataset)
    raise UserError(f"no location for dataset '{dataset}': pass --root {dataset}=DIR or --data-root DIR")


def run_suite(suite: Suite, base: EvalInputs, roots: dict[str, str], data_root: str | None = None) -> dict:
    """Run every protocol of ``suite`` on ``base.encoder``; reports go to ``base.out/<entry name>/``.

    Returns the combined report (``status`` "completed"), or the fine-tuning entry's ``status`` when a signal
    stopped its training (nothing combined is written; rerun to resume).
    """
    started = time.time()
    results, table = {}, []
    for i, entry in enumerate(suite.protocols):
        name = entry.name or f"{i + 1:02d}_{entry.protocol}_{entry.dataset}"
        inputs = replace(base, dataset=entry.dataset, root=_root_for(entry.dataset, roots, data_root),
                         splits=entry.splits, clips=entry.clips, frames=entry.frames, fps=entry.fps,
                         resize=entry.resize, crop=entry.crop, out=str(Path(base.out) / name))
        print(f"[{i + 1}/{len(suite.protocols)}] {entry.protocol} on {entry.dataset}")
        if entry.protocol == "linear-probe":
            report = run_linear_probe(inputs)
            metrics = {"top1": report["mean"]["top1"], "top5": report["mean"]["top5"]}
        elif entry.protocol == "finetune":
            report = run_finetune(inputs, entry.finetune)
            if report["status"] != "completed":  # stopped by a signal: rerunning the suite resumes here
                return {**report, "entry": name}
            metrics = {"top1": report["mean"]["top1"], "top5": report["mean"]["top5"]}
        else:
            report = run_retrieval(inputs, tuple(entry.ks))
            metrics = {k: report["mean"][k] for k in report["mean"]}
        results[name] = report
        table.append({"protocol": entry.protocol, "dataset": entry.dataset, "splits": ",".join(report["splits"]),
                      **{k: round(v, 4) for k, v in metrics.items()},
                      "std_top1": round(report["std"]["top1"], 4) if "top1" in report["std"] else None,
                      "videos": f"{report['videos_evaluated']}/{report['videos_listed']}"})
    combined = {"suite": suite.name, "status": "completed", "description": suite.description,
                "encoder": base.encoder, "results": results, "seconds": round(time.time() - started, 2)}
    write_report(base.out, combined, table, title=f"Evaluation suite {suite.name}",
                 notes=[suite.description, "Each row links to a full report in its own folder; every protocol "
                                           "setting is in report.json."])
    return combined
