"""The search space: a small typed config (one TOML table per preset), and the architectures it contains.

An architecture of the space is a plain `ArchConfig`: the supernet takes it as an argument, the planner plans it,
the compiler compiles it. Per layer the space chooses heads, MLP ratio and two ranks (attention linears, MLP
linears); globally it chooses the input resolution, the patch size, the width and the depth.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from mcuformer.arch import ArchConfig, LayerRanks
from mcuformer.boards import load_board
from mcuformer.errors import McuformerError

FULL = "full"
RANK_MULTIPLE = 8  # the unrolled kernels handle multiples of 4; 8 keeps every rank a whole number of 8-byte rows
PRESETS = ("quick", "standard", "full")


class SpaceError(McuformerError):
    """A search-space file that does not describe a usable space."""


Rank = int | None  # None = full rank


@dataclass(frozen=True)
class SearchSpace:
    image_sizes: tuple[int, ...]
    patch_sizes: tuple[int, ...]
    embed_dims: tuple[int, ...]
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    mlp_ratios: tuple[float, ...]
    ranks: tuple[Rank, ...]
    channels: int = 1
    num_classes: int = 10
    pool: str = "cls"
    name: str = ""

    def __post_init__(self) -> None:
        def fail(msg: str) -> None:
            raise SpaceError(f"search space {self.name or '(unnamed)'}: {msg}")

        for attr in ("image_sizes", "patch_sizes", "embed_dims", "depths", "num_heads", "mlp_ratios", "ranks"):
            values = getattr(self, attr)
            if not values:
                fail(f"{attr} is empty")
            if list(values) != sorted(values, key=lambda v: float("inf") if v is None else v):
                fail(f"{attr} must be sorted ascending (full rank last), got {list(values)}")
            if len(set(values)) != len(values):
                fail(f"{attr} has duplicates: {list(values)}")
        if not self.resolutions:
            fail(f"no patch size in {list(self.patch_sizes)} divides an image size in {list(self.image_sizes)}")
        for d in self.embed_dims:
            for h in self.num_heads:
                if d % h:
                    fail(f"embed dim {d} is not divisible by {h} heads")
            for m in self.mlp_ratios:
                if abs(d * m - round(d * m)) > 1e-9:
                    fail(f"mlp ratio {m} x embed dim {d} is not a whole width")
        for r in self.ranks:
            if r is not None and (r < RANK_MULTIPLE or r % RANK_MULTIPLE):
                fail(f"rank {r} is not a positive multiple of {RANK_MULTIPLE} (the kernels' unroll); use 'full'")
        if self.pool not in ("cls", "mean"):
            fail(f"pool must be 'cls' or 'mean', got {self.pool!r}")

    @property
    def resolutions(self) -> tuple[tuple[int, int], ...]:
        """Every (image size, patch size) pair of the space."""
        return tuple((s, p) for s in self.image_sizes for p in self.patch_sizes if s % p == 0)

    @property
    def max_grid(self) -> int:
        return max(s // p for s, p in self.resolutions)

    @property
    def max_dim(self) -> int:
        return self.embed_dims[-1]

    @property
    def max_depth(self) -> int:
        return self.depths[-1]

    @property
    def max_hidden(self) -> int:
        return max(round(d * m) for d in self.embed_dims for m in self.mlp_ratios)

    def for_data(self, channels: int, num_classes: int) -> SearchSpace:
        return replace(self, channels=channels, num_classes=num_classes)

    def arch(
        self,
        image_size: int,
        patch_size: int,
        embed_dim: int,
        num_heads: tuple[int, ...],
        mlp_ratios: tuple[float, ...],
        attn_ranks: tuple[Rank, ...],
        mlp_ranks: tuple[Rank, ...],
    ) -> ArchConfig:
        """The ArchConfig of one choice per dimension (depth = number of per-layer entries)."""
        ranks = []
        for layer, (ra, rm) in enumerate(zip(attn_ranks, mlp_ranks, strict=True)):
            hidden = round(embed_dim * mlp_ratios[layer])
            ranks.append(
                LayerRanks(
                    qkv=effective_rank(ra, embed_dim, 3 * embed_dim),
                    proj=effective_rank(ra, embed_dim, embed_dim),
                    fc1=effective_rank(rm, embed_dim, hidden),
                    fc2=effective_rank(rm, hidden, embed_dim),
                )
            )
        return ArchConfig(
            image_size=image_size,
            channels=self.channels,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=len(num_heads),
            num_heads=tuple(num_heads),
            mlp_ratios=tuple(float(m) for m in mlp_ratios),
            ranks=tuple(ranks),
            num_classes=self.num_classes,
            pool=self.pool,  # type: ignore[arg-type]
        )

    def contains(self, arch: ArchConfig) -> bool:
        """Whether `arch` is an architecture of this space (ranks compared after `effective_rank`)."""
        if (arch.image_size, arch.patch_size) not in self.resolutions or arch.embed_dim not in self.embed_dims:
            return False
        if arch.depth not in self.depths or arch.channels != self.channels or arch.num_classes != self.num_classes:
            return False
        if any(h not in self.num_heads for h in arch.num_heads):
            return False
        if any(m not in self.mlp_ratios for m in arch.mlp_ratios):
            return False
        d = arch.embed_dim
        for layer, lr in enumerate(arch.ranks):
            hidden = arch.mlp_hidden(layer)
            attn = {effective_rank(r, d, 3 * d) for r in self.ranks}, {effective_rank(r, d, d) for r in self.ranks}
            mlp = {effective_rank(r, d, hidden) for r in self.ranks}, {effective_rank(r, hidden, d) for r in self.ranks}
            if lr.qkv not in attn[0] or lr.proj not in attn[1] or lr.fc1 not in mlp[0] or lr.fc2 not in mlp[1]:
                return False
        return True


def effective_rank(rank: Rank, fan_in: int, fan_out: int) -> Rank:
    """The rank deployed for a linear: full rank when the factors would not save parameters (or MACs)."""
    if rank is None or rank * (fan_in + fan_out) >= fan_in * fan_out:
        return None
    return rank


def _parse_rank(value: Any) -> Rank:
    if value == FULL:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise SpaceError(f'a rank is a positive integer or "full", got {value!r}')


def space_from_dict(data: dict[str, Any], name: str = "") -> SearchSpace:
    known = {"image_sizes", "patch_sizes", "embed_dims", "depths", "num_heads", "mlp_ratios", "ranks", "pool"}
    unknown = set(data) - known
    if unknown:
        raise SpaceError(f"search space {name}: unknown field(s) {sorted(unknown)}; fields are {sorted(known)}")
    missing = known - {"pool"} - set(data)
    if missing:
        raise SpaceError(f"search space {name}: missing field(s) {sorted(missing)}")
    try:
        return SearchSpace(
            image_sizes=tuple(int(v) for v in data["image_sizes"]),
            patch_sizes=tuple(int(v) for v in data["patch_sizes"]),
            embed_dims=tuple(int(v) for v in data["embed_dims"]),
            depths=tuple(int(v) for v in data["depths"]),
            num_heads=tuple(int(v) for v in data["num_heads"]),
            mlp_ratios=tuple(float(v) for v in data["mlp_ratios"]),
            ranks=tuple(_parse_rank(v) for v in data["ranks"]),
            pool=str(data.get("pool", "cls")),
            name=name,
        )
    except (TypeError, ValueError) as err:
        raise SpaceError(f"search space {name}: malformed field ({err})") from None


def load_space(board: str, preset: str, path: str | Path | None = None) -> SearchSpace:
    """The `preset` table of a space file: `path`, else the board's shipped file (its board file's `search_space`,
    else its name), else the shipped default."""
    if preset not in PRESETS:
        raise SpaceError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    if path is not None:
        source = Path(path)
        if not source.is_file():
            raise SpaceError(f"search space file {source} does not exist")
        text, label = source.read_text(), str(source)
    else:
        folder = resources.files("mcuformer.search").joinpath("spaces")
        file = folder.joinpath(f"{load_board(board).search_space or board}.toml")
        if not file.is_file():
            file = folder.joinpath("default.toml")
        text, label = file.read_text(), f"{file.name}"
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpaceError(f"search space file {label} is not valid TOML: {err}") from None
    if preset not in tables:
        raise SpaceError(f"search space file {label} has no [{preset}] table")
    return space_from_dict(tables[preset], f"{label}[{preset}]")
