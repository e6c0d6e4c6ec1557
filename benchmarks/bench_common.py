"""What several benchmark scripts share: `key=value` settings, runs in parallel processes, a search run folder.

Imported by the scripts next to it (`python benchmarks/<script>.py` puts this folder on the path).
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def parse_value(text: str) -> Any:
    """`3` -> 3, `0.5` -> 0.5, `false` -> False, anything else stays a string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_settings(items: list[str]) -> dict[str, Any]:
    """`["a=1 b=x", "c=0.5"]` -> {"a": 1, "b": "x", "c": 0.5}."""
    settings: dict[str, Any] = {}
    for item in items:
        for part in item.split():
            key, sep, value = part.partition("=")
            if not sep:
                raise SystemExit(f"{part!r} is not key=value")
            settings[key] = parse_value(value)
    return settings


@dataclass(frozen=True)
class Job:
    name: str
    command: list[str]
    folder: Path  # the job's log goes to folder/train.log


def run_parallel(jobs: list[Job], parallel: int) -> dict[str, float]:
    """Run the jobs `parallel` at a time; returns each job's wall seconds. A failed job stops the benchmark."""
    pending, active = list(jobs), []
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    while pending or active:
        while pending and len(active) < parallel:
            job = pending.pop(0)
            job.folder.mkdir(parents=True, exist_ok=True)
            log = (job.folder / "train.log").open("wb")
            active.append((job, subprocess.Popen(job.command, stdout=log, stderr=subprocess.STDOUT)))
            started[job.name] = time.time()
            print(f"started {job.name}", flush=True)
        for job, process in list(active):
            if process.poll() is not None:
                active.remove((job, process))
                seconds[job.name] = time.time() - started[job.name]
                if process.returncode:
                    raise SystemExit(f"run {job.name} failed (exit {process.returncode}); see {job.folder}/train.log")
        time.sleep(2)
    return seconds


def load_search_run(run: Path) -> tuple[Any, Any, Any, Any, Any]:
    """(sampler, resolved preset, data, trained supernet, search.json) of a `mcuformer search` folder."""
    import torch

    from mcuformer.search.data import SearchData
    from mcuformer.search.run import SearchConfig, prepare, resolve_preset
    from mcuformer.search.supernet import Supernet
    from mcuformer.search.train import CHECKPOINT

    result = json.loads((run / "search.json").read_text())
    config = SearchConfig(out=run, sram_budget=result["sram_budget"], flash_budget=result["flash_budget"],
                          board=result["board"], dataset=result["dataset"], preset=result["preset"],
                          seed=result["seed"])  # fmt: skip
    space, _, sampler = prepare(config)
    preset = resolve_preset(config)
    data = SearchData.load(config.dataset, None, preset.val_size, preset.train_limit, config.seed)
    net = Supernet(space, data.mean, data.std, seed=config.seed)
    net.load_state_dict(torch.load(run / CHECKPOINT, map_location="cpu", weights_only=False)["supernet"])
    return sampler, preset, data, net, result
