"""Evolutionary search (and the random-search baseline) under the hard constraints, with a seeded RNG.

Fitness is the held-out validation accuracy of a subnet with weights inherited from the supernet. Every
candidate is checked against the exact planner before it is evaluated, so nothing that does not fit is ever
evaluated or returned. Evaluations go through a `Fitness` cache, so a resumed search replays the same moves
(same seed) without re-evaluating, and both searches are compared at an equal number of evaluations.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mcuformer.arch import ArchConfig
from mcuformer.data import pixels_to_tensor
from mcuformer.progress import progress as progress_bar
from mcuformer.search.data import SearchData
from mcuformer.search.genome import Genome, crossover, mutate
from mcuformer.search.sampler import FitSampler
from mcuformer.search.supernet import Supernet

MAX_ATTEMPTS = 200  # draws per child before a generation gives up on finding a new fitting candidate


@dataclass(frozen=True)
class EvolutionConfig:
    population: int = 20
    generations: int = 6
    parents: int = 8  # the top-k of all candidates so far breed the next generation
    mutation_prob: float = 0.3
    crossover_share: float = 0.5  # share of children made by crossover (then a light mutation), the rest by mutation
    seed: int = 0

    @property
    def evaluations(self) -> int:
        return self.population * (self.generations + 1)


@dataclass(frozen=True)
class Candidate:
    genome: Genome
    arch: ArchConfig
    accuracy: float
    sram_bytes: int
    flash_bytes: int
    macs: int
    instructions: int  # predicted (codegen/cost_model.py)
    params: int
    method: str
    generation: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "generation": self.generation,
            "accuracy": self.accuracy,
            "sram_bytes": self.sram_bytes,
            "flash_bytes": self.flash_bytes,
            "macs": self.macs,
            "instructions": self.instructions,
            "params": self.params,
            "genome": self.genome.to_dict(),
            "arch": self.arch.to_dict(),
        }


@torch.no_grad()
def subnet_accuracy(net: Supernet, data: SearchData, arch: ArchConfig, split: str = "val", batch: int = 500) -> float:
    net.eval()
    images = data.at(split, arch.image_size)
    device = net.pixel_mean.device
    correct = 0
    for start in range(0, len(images), batch):
        pixels = pixels_to_tensor(images.images[start : start + batch]).to(device)
        predicted = net(pixels, arch).argmax(1).cpu()
        correct += int((predicted == torch.from_numpy(images.labels[start : start + batch])).sum())
    return correct / max(len(images), 1)


class Fitness:
    """Validation accuracy per architecture, cached in memory and in a JSON file (resume replays from it)."""

    def __init__(self, evaluate: Callable[[ArchConfig], float], cache_file: Path | None = None) -> None:
        self._evaluate = evaluate
        self._file = cache_file
        self._cache: dict[str, float] = {}
        if cache_file is not None and cache_file.is_file():
            self._cache = json.loads(cache_file.read_text())

    @staticmethod
    def key(arch: ArchConfig) -> str:
        return json.dumps(arch.with_name("").to_dict(), sort_keys=True)

    def __call__(self, arch: ArchConfig) -> float:
        key = self.key(arch)
        if key not in self._cache:
            self._cache[key] = self._evaluate(arch)
            if self._file is not None:
                tmp = self._file.with_name(self._file.name + ".tmp")
                tmp.write_text(json.dumps(self._cache))
                tmp.replace(self._file)
        return self._cache[key]


def _candidate(sampler: FitSampler, fitness: Fitness, genome: Genome, method: str, generation: int) -> Candidate:
    arch = sampler.arch(genome)
    cost = sampler.constraints.cost(arch)
    assert cost.fits, "only fitting architectures are evaluated"
    return Candidate(genome, arch, fitness(arch), cost.sram_bytes, cost.flash_bytes, cost.macs, cost.instructions,
                     cost.params,
                     method, generation)  # fmt: skip


def evolve(sampler: FitSampler, fitness: Fitness, config: EvolutionConfig, progress: bool = True) -> list[Candidate]:
    """All evaluated candidates, in evaluation order; the best is max(accuracy)."""
    rng = random.Random(config.seed)
    seen: set[ArchConfig] = set()
    history: list[Candidate] = []
    bar = progress_bar(total=config.evaluations, desc="evolution", unit="arch", leave=False, disable=not progress)

    def add(genome: Genome, generation: int) -> None:
        history.append(_candidate(sampler, fitness, genome, "evolution", generation))
        seen.add(sampler.arch(genome))
        bar.update(1)
        bar.set_postfix(best=f"{max(c.accuracy for c in history):.4f}", refresh=False)

    # Generation 0: random fitting architectures, plus the largest fitting one (a strong seed under tight budgets).
    first = [sampler.largest()]
    while len(first) < config.population:
        first.append(sampler.random(rng))
    for genome in first:
        if sampler.arch(genome) not in seen:
            add(genome, 0)
    for generation in range(1, config.generations + 1):
        ranked = sorted(history, key=lambda c: (-c.accuracy, c.sram_bytes))
        parents = [c.genome for c in ranked[: config.parents]]
        made = 0
        while made < config.population:
            for _ in range(MAX_ATTEMPTS):
                if len(parents) > 1 and rng.random() < config.crossover_share:
                    a, b = rng.sample(parents, 2)
                    child = mutate(crossover(a, b, sampler.space, rng), sampler.space, rng, config.mutation_prob / 3)
                else:
                    child = mutate(rng.choice(parents), sampler.space, rng, config.mutation_prob)
                if sampler.arch(child) not in seen and sampler.fits(child):
                    break
            else:
                child = sampler.random(rng)  # the neighbourhood is exhausted: explore
                if sampler.arch(child) in seen:
                    made += 1
                    continue
            add(child, generation)
            made += 1
    bar.close()
    return history


def random_search(sampler: FitSampler, fitness: Fitness, evaluations: int, seed: int,
                  progress: bool = True) -> list[Candidate]:  # fmt: skip
    """The baseline: `evaluations` distinct random fitting architectures."""
    rng = random.Random(seed + 7919)  # a different stream from the evolution's generation 0
    seen: set[ArchConfig] = set()
    history: list[Candidate] = []
    for _ in progress_bar(range(evaluations), desc="random search", unit="arch", leave=False, disable=not progress):
        for _ in range(MAX_ATTEMPTS):
            genome = sampler.random(rng)
            if sampler.arch(genome) not in seen:
                break
        seen.add(sampler.arch(genome))
        history.append(_candidate(sampler, fitness, genome, "random", 0))
    return history


def best(history: list[Candidate]) -> Candidate:
    return max(history, key=lambda c: (c.accuracy, -c.sram_bytes, -c.flash_bytes))
