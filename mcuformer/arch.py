"""The architecture config: a frozen, typed description of one ViT, validated on construction."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from mcuformer.errors import McuformerError

Pool = Literal["cls", "mean"]
Gelu = Literal["erf", "tanh"]
DEFAULT_NORM_EPS = 1e-5
LINEAR_NAMES = ("qkv", "proj", "fc1", "fc2")


class ArchError(McuformerError):
    """An architecture config that cannot describe a valid model."""


@dataclass(frozen=True)
class LayerRanks:
    """Low-rank ranks of one block's linears (W = U V with rank r); None means full rank."""

    qkv: int | None = None
    proj: int | None = None
    fc1: int | None = None
    fc2: int | None = None

    def get(self, name: str) -> int | None:
        value: int | None = getattr(self, name)
        return value


@dataclass(frozen=True)
class ArchConfig:
    """A ViT: square input, non-overlapping patches, pre-norm blocks with per-layer widths."""

    image_size: int
    channels: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: tuple[int, ...]
    mlp_ratios: tuple[float, ...]
    ranks: tuple[LayerRanks, ...]
    num_classes: int
    pool: Pool = "cls"
    name: str = field(default="", compare=False)
    # Imported models (ONNX, timm) differ here: timm's LayerNorms use eps 1e-6, some exports use tanh GELU.
    norm_eps: float = DEFAULT_NORM_EPS
    gelu: Gelu = "erf"

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        def fail(msg: str) -> None:
            raise ArchError(f"invalid architecture{f' {self.name!r}' if self.name else ''}: {msg}")

        for attr in ("image_size", "channels", "patch_size", "embed_dim", "depth", "num_classes"):
            value = getattr(self, attr)
            if not isinstance(value, int) or value < 1:
                fail(f"{attr} must be a positive integer, got {value!r}")
        if self.image_size % self.patch_size:
            fail(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.pool not in ("cls", "mean"):
            fail(f"pool must be 'cls' or 'mean', got {self.pool!r}")
        if self.gelu not in ("erf", "tanh"):
            fail(f"gelu must be 'erf' or 'tanh', got {self.gelu!r}")
        if not self.norm_eps > 0:
            fail(f"norm_eps must be positive, got {self.norm_eps!r}")
        for attr in ("num_heads", "mlp_ratios", "ranks"):
            if len(getattr(self, attr)) != self.depth:
                fail(f"{attr} has {len(getattr(self, attr))} entries but depth is {self.depth}")
        for layer in range(self.depth):
            heads = self.num_heads[layer]
            if heads < 1 or self.embed_dim % heads:
                fail(f"layer {layer}: embed_dim {self.embed_dim} is not divisible by {heads} heads")
            ratio = self.mlp_ratios[layer]
            hidden = self.embed_dim * ratio
            if ratio <= 0 or abs(hidden - round(hidden)) > 1e-9:
                fail(f"layer {layer}: mlp_ratio {ratio} x embed_dim {self.embed_dim} is not a whole width")
            for linear in LINEAR_NAMES:
                rank = self.ranks[layer].get(linear)
                if rank is None:
                    continue
                fan_in, fan_out = self.linear_shape(layer, linear)
                if not isinstance(rank, int) or rank < 1:
                    fail(f"layer {layer} {linear}: rank must be a positive integer or 'full', got {rank!r}")
                if rank >= min(fan_in, fan_out):
                    fail(f"layer {layer} {linear}: rank {rank} >= min({fan_in}, {fan_out}) saves nothing; use 'full'")

    # Derived sizes -----------------------------------------------------------------------------
    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    @property
    def num_tokens(self) -> int:
        return self.num_patches + (1 if self.pool == "cls" else 0)

    @property
    def patch_dim(self) -> int:
        return self.patch_size * self.patch_size * self.channels

    def head_dim(self, layer: int) -> int:
        return self.embed_dim // self.num_heads[layer]

    def mlp_hidden(self, layer: int) -> int:
        return round(self.embed_dim * self.mlp_ratios[layer])

    def linear_shape(self, layer: int, linear: str) -> tuple[int, int]:
        """(fan_in, fan_out) of one block linear."""
        d, hidden = self.embed_dim, self.mlp_hidden(layer)
        return {"qkv": (d, 3 * d), "proj": (d, d), "fc1": (d, hidden), "fc2": (hidden, d)}[linear]

    def num_params(self) -> int:
        """Parameters of the deployed model (weights and biases; LayerNorm affine included)."""
        d = self.embed_dim
        total = self.patch_dim * d + d + self.num_tokens * d  # patch embed + position (+ class) tokens
        for layer in range(self.depth):
            for linear in LINEAR_NAMES:
                fan_in, fan_out = self.linear_shape(layer, linear)
                rank = self.ranks[layer].get(linear)
                total += fan_in * fan_out if rank is None else rank * (fan_in + fan_out)
                total += fan_out
            total += 4 * d  # two LayerNorms
        return total + 2 * d + d * self.num_classes + self.num_classes

    # Construction and I/O ----------------------------------------------------------------------
    @classmethod
    def uniform(
        cls,
        *,
        image_size: int,
        channels: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        num_classes: int,
        rank: LayerRanks | None = None,
        pool: Pool = "cls",
        name: str = "",
    ) -> ArchConfig:
        """Same heads, MLP ratio and ranks in every layer."""
        return cls(
            image_size=image_size,
            channels=channels,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=(num_heads,) * depth,
            mlp_ratios=(float(mlp_ratio),) * depth,
            ranks=(rank or LayerRanks(),) * depth,
            num_classes=num_classes,
            pool=pool,
            name=name,
        )

    def with_name(self, name: str) -> ArchConfig:
        return replace(self, name=name)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["num_heads"] = list(self.num_heads)
        data["mlp_ratios"] = list(self.mlp_ratios)
        data["ranks"] = [{k: ("full" if v is None else v) for k, v in asdict(r).items()} for r in self.ranks]
        # Written only when not the default, so existing model files, manifests and model hashes stay the same.
        if self.norm_eps == DEFAULT_NORM_EPS:
            del data["norm_eps"]
        if self.gelu == "erf":
            del data["gelu"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchConfig:
        try:
            depth = int(data["depth"])
            per_layer = {k: data[k] for k in ("num_heads", "mlp_ratios")}
            for key, value in per_layer.items():
                per_layer[key] = value if isinstance(value, list) else [value] * depth
            ranks_data = data.get("ranks", [{}] * depth)
            if isinstance(ranks_data, dict):
                ranks_data = [ranks_data] * depth
            ranks = tuple(
                LayerRanks(**{k: (None if v in (None, "full") else int(v)) for k, v in r.items()}) for r in ranks_data
            )
            return cls(
                image_size=int(data["image_size"]),
                channels=int(data["channels"]),
                patch_size=int(data["patch_size"]),
                embed_dim=int(data["embed_dim"]),
                depth=depth,
                num_heads=tuple(int(h) for h in per_layer["num_heads"]),
                mlp_ratios=tuple(float(m) for m in per_layer["mlp_ratios"]),
                ranks=ranks,
                num_classes=int(data["num_classes"]),
                pool=data.get("pool", "cls"),
                name=str(data.get("name", "")),
                norm_eps=float(data.get("norm_eps", DEFAULT_NORM_EPS)),
                gelu=data.get("gelu", "erf"),
            )
        except KeyError as err:
            raise ArchError(f"architecture config is missing the field {err.args[0]!r}") from None
        except (TypeError, ValueError) as err:
            raise ArchError(f"architecture config has a malformed field: {err}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


PRESETS: dict[str, ArchConfig] = {
    # A few seconds per epoch: the test suite's model.
    "micro": ArchConfig.uniform(
        image_size=28,
        channels=1,
        patch_size=7,
        embed_dim=16,
        depth=1,
        num_heads=2,
        mlp_ratio=2,
        num_classes=10,
        rank=LayerRanks(fc1=8),
        name="micro",
    ),
    # The README demo: Fashion-MNIST, 28x28, 7x7 patches of 4 px.
    "fmnist-small": ArchConfig.uniform(
        image_size=28,
        channels=1,
        patch_size=4,
        embed_dim=48,
        depth=3,
        num_heads=3,
        mlp_ratio=2,
        num_classes=10,
        name="fmnist-small",
    ),
    "fmnist-lowrank": ArchConfig.uniform(
        image_size=28,
        channels=1,
        patch_size=4,
        embed_dim=64,
        depth=4,
        num_heads=4,
        mlp_ratio=2,
        num_classes=10,
        rank=LayerRanks(qkv=32, proj=32, fc1=32, fc2=32),
        name="fmnist-lowrank",
    ),
    # The reference models of the memory and kernel benchmarks.
    "cifar-p4-d64": ArchConfig.uniform(
        image_size=32,
        channels=3,
        patch_size=4,
        embed_dim=64,
        depth=4,
        num_heads=4,
        mlp_ratio=2,
        num_classes=10,
        name="cifar-p4-d64",
    ),
    "mcuformer-240": ArchConfig.uniform(
        image_size=240,
        channels=3,
        patch_size=16,
        embed_dim=192,
        depth=6,
        num_heads=3,
        mlp_ratio=2,
        num_classes=1000,
        rank=LayerRanks(qkv=64, proj=64, fc1=64, fc2=64),
        pool="mean",
        name="mcuformer-240",
    ),
}


def load_arch(spec: str | Path) -> ArchConfig:
    """An architecture from a preset name or a JSON file."""
    if str(spec) in PRESETS:
        return PRESETS[str(spec)]
    path = Path(spec)
    if not path.is_file():
        raise ArchError(f"no preset or file named {str(spec)!r}; presets: {', '.join(PRESETS)}")
    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise ArchError(f"architecture file {path} is not text: pass a preset name or a JSON file") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ArchError(f"cannot read architecture file {path}: {err}") from None
    if not isinstance(data, dict):
        raise ArchError(f"architecture file {path} must hold a JSON object")
    return ArchConfig.from_dict(data).with_name(data.get("name") or path.stem)
