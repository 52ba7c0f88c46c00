"""Evaluation suites: a YAML list of protocol entries run on one encoder, with one combined report.

```yaml
name: ucf101_hmdb51
description: ...
protocols:
  - {protocol: linear-probe, dataset: ucf101, splits: ["1", "2", "3"], clips: 10}
  - {protocol: retrieval, dataset: hmdb51, settings: {ks: [1, 5, 10, 20]}}
  - {protocol: finetune, dataset: ucf101, frames: 32, fps: 30, resize: 128, crop: 128,
     settings: {crops: 3, overrides: [optim.lr=0.005]}}
  - {protocol: pooling, dataset: ucf101, clips: 10, settings: {heads: [netvlad, avg], epochs: 10}}
  - {protocol: temporal, dataset: tsp, clips: 5}
```
An entry is a registered protocol (:mod:`ssl_video.evaluation.protocols`), a dataset, its splits, the clip
protocol (``clips``, ``frames``, ``fps``, ``resize``, ``crop``; unset: the protocol's and the encoder's
defaults) and ``settings``: the protocol's settings mapping, checked like a recipe. Dataset locations come
from the command line (``--root ucf101=/data/ucf101`` or ``--data-root DIR`` holding one folder per dataset
name), so one suite file serves every machine. Everything that can be checked without running is checked
for every entry before the first one runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ssl_video.config import load_config
from ssl_video.errors import UserError
from ssl_video.evaluation.protocols import get_protocol, load_settings, make_inputs
from ssl_video.evaluation.report import write_report

__all__ = ["SuiteEntry", "Suite", "load_suite", "prepare_suite", "suite_runs", "check_suite_inputs", "run_suite"]


@dataclass
class SuiteEntry:
    protocol: str
    dataset: Literal["ucf101", "hmdb51", "synthetic", "kinetics", "tsp"]
    splits: list[str] | None = None
    clips: int | None = None
    frames: int | None = None
    fps: float | None = None
    resize: int | None = None
    crop: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    name: str | None = None


@dataclass
class Suite:
    name: str
    description: str = ""
    protocols: list[SuiteEntry] = field(default_factory=list)


def load_suite(path: str | Path) -> Suite:
    """Load a suite and check every entry's protocol and settings."""
    suite = load_config(Suite, path)
    if not suite.protocols:
        raise UserError(f"suite {path} lists no protocols")
    prepare_suite(suite)
    return suite


def prepare_suite(suite: Suite) -> list[tuple[str, Any, Any]]:
    """``(entry name, protocol, settings)`` per entry; a bad protocol name or setting fails here, naming its key."""
    prepared = []
    for i, entry in enumerate(suite.protocols):
        protocol = get_protocol(entry.protocol, key=f"protocols[{i}].protocol")
        settings = load_settings(protocol, entry.settings, prefix=f"protocols[{i}].settings")
        prepared.append((entry.name or f"{i + 1:02d}_{entry.protocol}_{entry.dataset}", protocol, settings))
    return prepared


def _root_for(dataset: str, roots: dict[str, str], data_root: str | None) -> str:
    if dataset in roots:
        return roots[dataset]
    if data_root is not None:
        return str(Path(data_root) / dataset)
    raise UserError(f"no location for dataset '{dataset}': pass --root {dataset}=DIR or --data-root DIR")


def check_suite_inputs(runs: list, base: dict) -> None:
    """Before the first entry runs: the encoder reference, and every entry's dataset root, layout and
    splits (each dataset parsed once), so that a late entry cannot fail after hours of the early ones."""
    from ssl_video.data.datasets import load_layout

    encoder = base.get("encoder")
    if encoder:
        _check_encoder_reference(str(encoder))
    layouts: dict[tuple, Any] = {}
    for entry, name, protocol, _settings, inputs in runs:
        if "dataset" not in protocol.groups or entry.dataset == "tsp":
            continue
        where = (entry.dataset, inputs.root)
        if where not in layouts:
            flag = f"--root {entry.dataset}=DIR (or --data-root DIR)"
            if not Path(inputs.root).is_dir():
                raise UserError(f"suite entry {name}: dataset {entry.dataset} not found at {inputs.root}: give {flag}")
            layouts[where] = load_layout(entry.dataset, root=inputs.root, names={"root": flag})
        layout = layouts[where]
        unknown = [s for s in (entry.splits or []) if str(s) not in layout.splits]
        if unknown:
            raise UserError(f"suite entry {name}: {entry.dataset} has no split {', '.join(map(str, unknown))} "
                            f"(available: {', '.join(layout.splits)})")


def _check_encoder_reference(ref: str) -> None:
    """An exported encoder directory that exists, or a zoo name (``timm:<model>`` included)."""
    from ssl_video.errors import ConfigError
    from ssl_video.models.registry import list_encoders
    from ssl_video.recipe.encoders import check_encoder_name

    list_encoders()  # the zoo registers its names (plugins too)
    try:
        errors = []
        for modality in ("video", "audio"):
            try:
                check_encoder_name(ref, "--encoder", modality)
                return
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    except ConfigError as exc:
        raise UserError(f"--encoder: {exc.detail}") from None


def suite_runs(suite: Suite, base: dict, roots: dict[str, str], data_root: str | None = None,
               check_device: bool = True) -> list:
    """``(entry, name, protocol, settings, inputs)`` per entry, every input checked (see :func:`check_suite_inputs`)."""
    prepared = prepare_suite(suite)
    out = Path(base["out"])
    runs = []
    for entry, (name, protocol, settings) in zip(suite.protocols, prepared):
        clip = {k: getattr(entry, k) for k in ("clips", "frames", "fps", "resize", "crop")}
        inputs = make_inputs(protocol, **{**base, **clip, "dataset": entry.dataset, "splits": entry.splits,
                                          "root": _root_for(entry.dataset, roots, data_root), "out": str(out / name)},
                             check_device=check_device)
        runs.append((entry, name, protocol, settings, inputs))
    check_suite_inputs(runs, base)
    return runs


def run_suite(suite: Suite, base: dict, roots: dict[str, str], data_root: str | None = None) -> dict:
    """Run every entry of ``suite`` on ``base["encoder"]``; reports go to ``base["out"]/<entry name>/``.

    ``base`` holds the run options shared by every entry (:func:`~ssl_video.evaluation.protocols.make_inputs`
    keywords; ``None``: each protocol's default). Returns the combined report (``status`` "completed"), or a
    fine-tuning entry's ``status`` when a signal stopped its training (nothing combined is written; rerun to
    resume).
    """
    started = time.time()
    out = Path(base["out"])
    runs = suite_runs(suite, base, roots, data_root)
    results, table = {}, []
    for i, (entry, name, protocol, settings, inputs) in enumerate(runs):
        print(f"[{i + 1}/{len(runs)}] {entry.protocol} on {entry.dataset}", flush=True)
        report = protocol.run(inputs, settings)
        if report.get("status", "completed") != "completed":  # stopped by a signal: rerunning resumes here
            return {**report, "entry": name}
        for line in protocol.lines(report):
            print(line)
        results[name] = report
        table.append({"protocol": entry.protocol, "dataset": entry.dataset,
                      **{k: round(v, 4) if isinstance(v, float) else v for k, v in protocol.metrics(report).items()}})
    combined = {"suite": suite.name, "status": "completed", "description": suite.description,
                "encoder": base["encoder"], "results": results, "table": table, "seconds": round(time.time() - started, 2)}
    write_report(out, combined, table, title=f"Evaluation suite {suite.name}",
                 notes=[suite.description, "Each row links to a full report in its own folder; every protocol "
                                           "setting is in report.json."])
    return combined
