"""Training throughput on this machine: images per second of the four training steps, and where the time goes.

    python benchmarks/train_speed.py [--preset quick] [--threads 2] [--batch-size B] [--rounds 5] [--steps 8]
                                     [--space SPACE.toml] [--profile] [--compile]

On the largest architecture of the preset's space that fits (the sandwich's top): (a) a standalone
`VisionTransformer` step, (b) the same architecture as a supernet slice (`Supernet.forward`, the `functional_call`
path), (c) one sandwich step of the preset's supernet training (largest, smallest and random fitting subnets,
in-place distillation), (d) one quantization-aware step (`FakeQuantForward`), and the data pipeline alone
(indexing, uint8 -> float, the recipe's augmentation). Each is timed in `--rounds` interleaved rounds of `--steps`
steps on random images; the median round is reported (shared machines are noisy: the spread is printed too).
`--profile` adds torch.profiler's top entries (self CPU time) of each step; `--compile` times (a) under
torch.compile too, with its warm-up."""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mcuformer.arch import ArchConfig
from mcuformer.data import pixels_to_tensor
from mcuformer.model import VisionTransformer
from mcuformer.quant.ptq import calibrate
from mcuformer.quant.qat import FakeQuantForward
from mcuformer.recipe import RECIPE_AUGMENT, make_optimizer
from mcuformer.search.cost import Constraints
from mcuformer.search.run import PRESETS
from mcuformer.search.sampler import FitSampler
from mcuformer.search.space import load_space
from mcuformer.search.supernet import Supernet
from mcuformer.search.train import SandwichStep

Step = Callable[[], None]


def classifier_step(logits: Callable[[], torch.Tensor], labels: torch.Tensor, optimizer: torch.optim.Optimizer) -> Step:
    """One optimizer step on the cross-entropy of `logits()`."""

    def step() -> None:
        loss = F.cross_entropy(logits(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def standalone_step(
    arch: ArchConfig, pixels: torch.Tensor, labels: torch.Tensor, compiled: bool = False, fused: bool = True
) -> Step:
    model = VisionTransformer(arch, [0.286], [0.353])
    optimizer = make_optimizer(model.parameters(), 1e-3, 0.05) if fused else torch.optim.AdamW(model.parameters())
    forward = torch.compile(model) if compiled else model
    return classifier_step(lambda: forward(pixels), labels, optimizer)


def slice_step(net: Supernet, arch: ArchConfig, pixels: torch.Tensor, labels: torch.Tensor) -> Step:
    return classifier_step(lambda: net(pixels, arch), labels, make_optimizer(net.parameters(), 1e-3, 0.05))


def sandwich_step(net: Supernet, sampler: FitSampler, pixels: torch.Tensor, labels: torch.Tensor, preset: str) -> Step:
    config = PRESETS[preset].supernet
    optimizer = make_optimizer(net.parameters(), 1e-3, 0.05)
    sandwich = SandwichStep(net, sampler, config)
    rng = random.Random(0)
    targets = F.one_hot(labels, 10).float()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        sandwich(pixels, targets, rng)
        optimizer.step()

    return step


def qat_step(arch: ArchConfig, pixels: torch.Tensor, labels: torch.Tensor) -> Step:
    model = VisionTransformer(arch, [0.286], [0.353])
    forward = FakeQuantForward(model, calibrate(model, pixels))
    return classifier_step(lambda: forward(model, pixels), labels, make_optimizer(model.parameters(), 1e-4, 0.05))


def data_step(batch: int) -> Step:
    images = np.random.default_rng(0).integers(0, 256, (60_000, 28, 28, 1), dtype=np.uint8)
    labels = torch.randint(0, 10, (len(images),))
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        idx = torch.randperm(len(images), generator=generator)[:batch]
        RECIPE_AUGMENT(pixels_to_tensor(images[idx.numpy()]), labels[idx], 10, generator)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, help="images per step (default: the preset's supernet batch)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top entries per step")
    parser.add_argument("--compile", action="store_true", help="also time (a) under torch.compile (and its warm-up)")
    parser.add_argument("--preset", default="quick", help="the search preset whose space and supernet settings to use")
    parser.add_argument("--space", help="a search-space TOML file instead of the shipped one (its --preset table)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.batch_size is None:
        args.batch_size = PRESETS[args.preset].supernet.batch_size
    torch.manual_seed(0)

    space = load_space("stm32f746", args.preset, args.space).for_data(1, 10)
    sampler = FitSampler(space, Constraints.for_board("stm32f746"))
    arch = sampler.arch(sampler.largest())  # the sandwich's top: the largest architecture that fits
    net = Supernet(space, [0.286], [0.353])
    pixels = torch.rand(args.batch_size, 1, arch.image_size, arch.image_size)
    labels = torch.randint(0, 10, (args.batch_size,))
    sandwich_images = args.batch_size  # images per step; the subnets are extra work on the same images
    steps: dict[str, tuple[Step, int]] = {
        "(a) standalone VisionTransformer": (standalone_step(arch, pixels, labels), args.batch_size),
        "(a) with the unfused (foreach) AdamW": (standalone_step(arch, pixels, labels, fused=False), args.batch_size),
        "(b) supernet slice, same architecture": (slice_step(net, arch, pixels, labels), args.batch_size),
        f"(c) sandwich step (2 + {PRESETS[args.preset].supernet.num_random} subnets)": (
            sandwich_step(net, sampler, pixels, labels, args.preset), sandwich_images),
        "(d) quantization-aware step": (qat_step(arch, pixels, labels), args.batch_size),
        "data pipeline (index, to float, the recipe's augmentation)": (data_step(args.batch_size), args.batch_size),
    }  # fmt: skip
    if args.compile:
        compiled = standalone_step(arch, pixels, labels, compiled=True)
        start = time.perf_counter()
        compiled()
        print(f"torch.compile warm-up (first step): {time.perf_counter() - start:.1f} s")
        steps["(a) under torch.compile"] = (compiled, args.batch_size)
    for step, _ in steps.values():  # warm-up: allocator, lazy inits, planner caches
        step()
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):  # interleaved, so a burst of load hits every step alike
        for name, (step, _) in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - start) / args.steps)

    print(f"architecture: {arch.to_dict()}; batch {args.batch_size}; {torch.get_num_threads()} threads; "
          f"median of {args.rounds} rounds of {args.steps} steps\n")  # fmt: skip
    print("| step | ms per step | images/s | spread (min-max ms) | vs (a) |")
    print("|---|---|---|---|---|")
    base = statistics.median(times["(a) standalone VisionTransformer"])
    for name, (_, images) in steps.items():
        median = statistics.median(times[name])
        print(f"| {name} | {1000 * median:.1f} | {images / median:,.0f} | {1000 * min(times[name]):.1f}-"
              f"{1000 * max(times[name]):.1f} | {median / base:.2f}x |")  # fmt: skip
    if args.profile:
        for name, (step, _) in steps.items():
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(args.steps):
                    step()
            print(f"\n### {name}\n")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()
