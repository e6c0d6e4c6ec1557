"""One point of the search space as the choices that made it (a genome), and the seeded moves on genomes.

The genome keeps the raw rank choices (an ArchConfig only has the effective ranks), so mutation and crossover
move in the space's own coordinates. Every move takes an explicit `random.Random`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from mcuformer.arch import ArchConfig
from mcuformer.search.space import Rank, SearchSpace


@dataclass(frozen=True)
class Genome:
    image_size: int
    patch_size: int
    embed_dim: int
    num_heads: tuple[int, ...]
    mlp_ratios: tuple[float, ...]
    attn_ranks: tuple[Rank, ...]
    mlp_ranks: tuple[Rank, ...]

    @property
    def depth(self) -> int:
        return len(self.num_heads)

    def arch(self, space: SearchSpace) -> ArchConfig:
        return space.arch(self.image_size, self.patch_size, self.embed_dim, self.num_heads, self.mlp_ratios,
                          self.attn_ranks, self.mlp_ranks)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "num_heads": list(self.num_heads),
            "mlp_ratios": list(self.mlp_ratios),
            "attn_ranks": ["full" if r is None else r for r in self.attn_ranks],
            "mlp_ranks": ["full" if r is None else r for r in self.mlp_ranks],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Genome:
        def ranks(values: list[Any]) -> tuple[Rank, ...]:
            return tuple(None if v == "full" else int(v) for v in values)

        return cls(int(data["image_size"]), int(data["patch_size"]), int(data["embed_dim"]),
                   tuple(int(h) for h in data["num_heads"]), tuple(float(m) for m in data["mlp_ratios"]),
                   ranks(data["attn_ranks"]), ranks(data["mlp_ranks"]))  # fmt: skip


def random_genome(space: SearchSpace, rng: random.Random) -> Genome:
    image_size, patch_size = rng.choice(space.resolutions)
    depth = rng.choice(space.depths)
    return Genome(
        image_size=image_size,
        patch_size=patch_size,
        embed_dim=rng.choice(space.embed_dims),
        num_heads=tuple(rng.choice(space.num_heads) for _ in range(depth)),
        mlp_ratios=tuple(rng.choice(space.mlp_ratios) for _ in range(depth)),
        attn_ranks=tuple(rng.choice(space.ranks) for _ in range(depth)),
        mlp_ranks=tuple(rng.choice(space.ranks) for _ in range(depth)),
    )


def extreme_genome(space: SearchSpace, largest: bool, resolution: tuple[int, int] | None = None) -> Genome:
    """Every choice at its largest (or smallest) value; the resolution with the most (fewest) tokens by default."""
    pick = (lambda values: values[-1]) if largest else (lambda values: values[0])
    if resolution is None:
        by_tokens = sorted(space.resolutions, key=lambda sp: ((sp[0] // sp[1]) ** 2, sp[0]))
        resolution = pick(by_tokens)
    depth = pick(space.depths)
    return Genome(resolution[0], resolution[1], pick(space.embed_dims), (pick(space.num_heads),) * depth,
                  (pick(space.mlp_ratios),) * depth, (pick(space.ranks),) * depth,
                  (pick(space.ranks),) * depth)  # fmt: skip


def _neighbour(values: tuple[Any, ...], current: Any, rng: random.Random) -> Any:
    """A different value of `values`, the adjacent ones twice as likely (small steps, but any step possible)."""
    others = [v for v in values if v != current]
    if not others:
        return current
    if current not in values:
        return rng.choice(others)
    i = values.index(current)
    weights = [2.0 if abs(values.index(v) - i) == 1 else 1.0 for v in others]
    return rng.choices(others, weights)[0]


def mutate(genome: Genome, space: SearchSpace, rng: random.Random, prob: float) -> Genome:
    """Each global choice and each per-layer choice changes with probability `prob` (at least one changes)."""
    for _ in range(100):
        g = genome
        if rng.random() < prob:
            g = replace(g, image_size=_neighbour(space.image_sizes, g.image_size, rng))
        if rng.random() < prob:
            g = replace(g, patch_size=_neighbour(space.patch_sizes, g.patch_size, rng))
        if (g.image_size, g.patch_size) not in space.resolutions:
            g = replace(g, patch_size=rng.choice([p for s, p in space.resolutions if s == g.image_size]))
        if rng.random() < prob:
            g = replace(g, embed_dim=_neighbour(space.embed_dims, g.embed_dim, rng))
        if rng.random() < prob:
            depth = _neighbour(space.depths, g.depth, rng)
            g = _with_depth(g, depth, space, rng)
        layers = []
        for layer in range(g.depth):
            row = [g.num_heads[layer], g.mlp_ratios[layer], g.attn_ranks[layer], g.mlp_ranks[layer]]
            for k, values in enumerate((space.num_heads, space.mlp_ratios, space.ranks, space.ranks)):
                if rng.random() < prob:
                    row[k] = _neighbour(values, row[k], rng)
            layers.append(row)
        g = replace(g, num_heads=tuple(r[0] for r in layers), mlp_ratios=tuple(r[1] for r in layers),
                    attn_ranks=tuple(r[2] for r in layers), mlp_ranks=tuple(r[3] for r in layers))  # fmt: skip
        if g != genome:
            return g
    return g


def _with_depth(g: Genome, depth: int, space: SearchSpace, rng: random.Random) -> Genome:
    """Drop the last layers, or append layers that copy the last one (a deeper net like the shallower one)."""
    if depth <= g.depth:
        return replace(g, num_heads=g.num_heads[:depth], mlp_ratios=g.mlp_ratios[:depth],
                       attn_ranks=g.attn_ranks[:depth], mlp_ranks=g.mlp_ranks[:depth])  # fmt: skip
    extra = depth - g.depth
    return replace(g, num_heads=g.num_heads + g.num_heads[-1:] * extra,
                   mlp_ratios=g.mlp_ratios + g.mlp_ratios[-1:] * extra,
                   attn_ranks=g.attn_ranks + g.attn_ranks[-1:] * extra,
                   mlp_ranks=g.mlp_ranks + g.mlp_ranks[-1:] * extra)  # fmt: skip


def crossover(a: Genome, b: Genome, space: SearchSpace, rng: random.Random) -> Genome:
    """Uniform crossover: each global choice from either parent, each layer from either parent where both have it."""
    resolution = rng.choice([(a.image_size, a.patch_size), (b.image_size, b.patch_size)])
    depth = rng.choice([a.depth, b.depth])
    pa, pb = _with_depth(a, depth, space, rng), _with_depth(b, depth, space, rng)
    layers = [rng.choice([pa, pb]) for _ in range(depth)]
    return Genome(
        image_size=resolution[0],
        patch_size=resolution[1],
        embed_dim=rng.choice([a.embed_dim, b.embed_dim]),
        num_heads=tuple(p.num_heads[i] for i, p in enumerate(layers)),
        mlp_ratios=tuple(p.mlp_ratios[i] for i, p in enumerate(layers)),
        attn_ranks=tuple(p.attn_ranks[i] for i, p in enumerate(layers)),
        mlp_ranks=tuple(p.mlp_ranks[i] for i, p in enumerate(layers)),
    )
