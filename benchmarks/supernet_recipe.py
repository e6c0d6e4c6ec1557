"""Supernet training settings: in-place distillation and random subnets per step, judged by inherited weights.

    python benchmarks/supernet_recipe.py [--preset quick] [--variants "distill=false" "num_random=2"] [--jobs 2]
                                         [--out runs/supernet_recipe]

Trains the preset's supernet (its space on the STM32F746, its settings) once with the preset's settings and once
per variant (`key=value` of `SupernetTrainConfig`, several keys in one quoted variant), `--jobs` at a time with one
thread each; every run resumes from its checkpoint. Then measures, on the validation images held out of the
training set, the inherited-weight accuracy of the largest and the smallest fitting subnet and the mean over 8
random fitting subnets (the same 8 for every run): the numbers the search ranks by and the finish starts from.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench_common import Job, parse_settings, run_parallel

from mcuformer.search.run import SearchConfig, prepare, resolve_preset

RANDOM_SUBNETS = 8


def _setup(preset: str, out: Path) -> tuple[Any, Any, Any, Any]:
    from mcuformer.search.data import SearchData

    config = SearchConfig(out=out, preset=preset)
    space, _, sampler = prepare(config)
    resolved = resolve_preset(config)
    data = SearchData.load(config.dataset, None, resolved.val_size, resolved.train_limit, config.seed)
    return space, sampler, resolved, data


def train_one(preset: str, variant: str, out: Path) -> None:
    import torch

    from mcuformer.search.supernet import Supernet
    from mcuformer.search.train import train_supernet

    torch.set_num_threads(1)
    space, sampler, resolved, data = _setup(preset, out)
    torch.manual_seed(0)
    net = Supernet(space, data.mean, data.std, seed=0)
    train_supernet(net, data, sampler, out, replace(resolved.supernet, **parse_settings([variant])), resume=True)
    (out / "done").write_text("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--variants", nargs="*", default=["distill=false", "num_random=2"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="runs/supernet_recipe")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        train_one(args.preset, args.one, Path(args.out))
        return

    root = Path(args.out) / args.preset  # one folder per preset
    runs = [("base", "")] + [(v.replace(" ", ","), v) for v in args.variants]
    jobs = [
        Job(name, [sys.executable, __file__, "--preset", args.preset, "--out", str(root / name), "--one",
                   variant], root / name)
        for name, variant in runs
        if not (root / name / "done").is_file()
    ]  # fmt: skip
    seconds = run_parallel(jobs, args.jobs)

    import torch

    from mcuformer.search.evolution import subnet_accuracy
    from mcuformer.search.supernet import Supernet
    from mcuformer.search.train import CHECKPOINT

    space, sampler, resolved, data = _setup(args.preset, Path(args.out))
    rng = random.Random(1)
    probes = [sampler.random(rng) for _ in range(RANDOM_SUBNETS)]
    print(f"\npreset {args.preset}: {resolved.supernet}\n")
    print("| change | largest (inherited) | smallest | mean of 8 random | training seconds |")
    print("|---|---|---|---|---|")
    for name, variant in runs:
        net = Supernet(space, data.mean, data.std)
        state = torch.load(root / name / CHECKPOINT, map_location="cpu", weights_only=False)
        if state["config"] != asdict(replace(resolved.supernet, **parse_settings([variant]))):
            raise SystemExit(f"{root / name} was trained with other settings (the preset changed?): delete it")
        net.load_state_dict(state["supernet"])
        net.eval()

        def accuracy(genome: Any, net: Supernet = net) -> float:
            return subnet_accuracy(net, data, sampler.arch(genome))

        mean = sum(accuracy(g) for g in probes) / len(probes)
        took = f"{seconds[name]:.0f}" if name in seconds else "(earlier run)"
        print(f"| {variant or 'base'} | {100 * accuracy(sampler.largest()):.2f}% | "
              f"{100 * accuracy(sampler.smallest()):.2f}% | {100 * mean:.2f}% | {took} |")  # fmt: skip


if __name__ == "__main__":
    main()
