"""Architectures that fit: rejection sampling under the exact constraints, the smallest and the largest fitting one."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from mcuformer.arch import ArchConfig
from mcuformer.search.cost import BudgetError, Constraints
from mcuformer.search.genome import Genome, extreme_genome, random_genome
from mcuformer.search.space import SearchSpace

MAX_TRIES = 2000  # random draws before a sampler gives up (the feasible share of a space is checked up front)


@dataclass
class FitSampler:
    space: SearchSpace
    constraints: Constraints

    def arch(self, genome: Genome) -> ArchConfig:
        return genome.arch(self.space)

    def fits(self, genome: Genome) -> bool:
        return self.constraints.fits(self.arch(genome))

    def random(self, rng: random.Random) -> Genome:
        for _ in range(MAX_TRIES):
            genome = random_genome(self.space, rng)
            if self.fits(genome):
                return genome
        raise BudgetError(f"no fitting architecture in {MAX_TRIES} random draws ({self.constraints.describe()}); "
                          "the budget admits too small a part of the space: raise it or shrink the space")  # fmt: skip

    def smallest(self) -> Genome:
        """The fitting architecture with the smallest peak SRAM; fails early, with that peak, when none fits."""
        candidates = [
            extreme_genome(self.space, largest=False, resolution=resolution) for resolution in self.space.resolutions
        ]
        best = min(candidates, key=lambda g: (self.constraints.cost(self.arch(g)).sram_bytes, self._macs(g)))
        cost = self.constraints.cost(self.arch(best))
        if not cost.fits:
            c = self.constraints
            raise BudgetError(
                f"no architecture of the search space fits {c.describe()}: the smallest has a peak SRAM of "
                f"{cost.sram_bytes:,} B and {cost.flash_bytes:,} B of flash ({best.image_size}x{best.image_size} "
                f"input, patch {best.patch_size}, width {best.embed_dim}, depth {best.depth}); "
                "raise the budget or use a smaller search space (--space)"
            )
        return best

    def largest(self) -> Genome:
        """The fitting uniform architecture (same choice in every layer) with the most MACs: the sandwich's top."""
        s = self.space
        top = extreme_genome(s, largest=True)
        if self.fits(top):
            return top
        best: tuple[int, int, Genome] | None = None
        for (size, patch), dim, depth, ratio, rank in itertools.product(
            s.resolutions, s.embed_dims, s.depths, s.mlp_ratios, s.ranks
        ):
            heads = max(h for h in s.num_heads if dim % h == 0)
            genome = Genome(size, patch, dim, (heads,) * depth, (ratio,) * depth, (rank,) * depth, (rank,) * depth)
            cost = self.constraints.cost(self.arch(genome))
            if cost.fits and (best is None or (cost.macs, cost.params) > best[:2]):
                best = (cost.macs, cost.params, genome)
        if best is None:
            return self.smallest()
        return best[2]

    def _macs(self, genome: Genome) -> int:
        return self.constraints.cost(self.arch(genome)).macs
