"""`mcuformer search`: train the supernet, search, finish the winner, write the run folder.

Stages, each resumable: supernet training (checkpoint per epoch), evolution and random search (fitness cache:
the seeded searches replay without re-evaluating), finetuning (checkpoint per epoch), packaging.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from mcuformer.boards import DEFAULT_BOARD
from mcuformer.checkpoint import save_model
from mcuformer.errors import McuformerError
from mcuformer.loop import LoopConfig
from mcuformer.model import VisionTransformer
from mcuformer.recipe import Augment
from mcuformer.search.cost import Constraints
from mcuformer.search.data import SearchData
from mcuformer.search.evolution import (
    Candidate,
    EvolutionConfig,
    Fitness,
    best,
    evolve,
    random_search,
    subnet_accuracy,
)
from mcuformer.search.finish import FinetuneConfig, finetune, package, starting_model
from mcuformer.search.report import plot_pareto, summary_markdown, write_json
from mcuformer.search.sampler import FitSampler
from mcuformer.search.space import SearchSpace, load_space
from mcuformer.search.supernet import Supernet
from mcuformer.search.train import CHECKPOINT as SUPERNET_CHECKPOINT
from mcuformer.search.train import SupernetTrainConfig, train_supernet


@dataclass(frozen=True)
class Preset:
    supernet: SupernetTrainConfig
    evolution: EvolutionConfig
    finetune: FinetuneConfig
    train_limit: int | None
    val_size: int
    test_limit: int | None = None  # report on the first N test images only (tests)


PRESETS: dict[str, Preset] = {
    # The README demo on 2 CPU cores (about 10 minutes of training): the whole training set, a supernet of 7x7-patch
    # ViTs, then most of the time in the winner's finetune; docs/search.md ("Recipe") has the measurements.
    "quick": Preset(
        supernet=SupernetTrainConfig(epochs=10, batch_size=128, lr=2e-3, warmup_epochs=1, num_random=1),
        evolution=EvolutionConfig(population=10, generations=3, parents=4),
        finetune=FinetuneConfig(epochs=30, batch_size=128, lr=1e-3, warmup_epochs=1, qat_epochs=0),
        train_limit=None,
        val_size=5_000,
    ),
    # 97 minutes on 2 CPU cores for 91.07% int8 (docs/search.md): a larger space, a longer supernet and finish.
    "standard": Preset(
        supernet=SupernetTrainConfig(epochs=20, batch_size=128, lr=2e-3, warmup_epochs=1, num_random=1),
        evolution=EvolutionConfig(population=16, generations=4, parents=6),
        finetune=FinetuneConfig(
            epochs=25, batch_size=128, lr=1e-3, warmup_epochs=1, qat_epochs=0, augment=Augment(mixup=0.5)
        ),
        train_limit=None,
        val_size=5_000,
    ),
    # The benchmark setting (a GPU for the supernet; hours on a CPU).
    "full": Preset(
        supernet=SupernetTrainConfig(epochs=60, batch_size=256, lr=2e-3, warmup_epochs=3, num_random=2),
        evolution=EvolutionConfig(population=40, generations=15, parents=12),
        finetune=FinetuneConfig(epochs=30, lr=5e-4, warmup_epochs=1, qat_epochs=3, qat_lr=5e-5),
        train_limit=None,
        val_size=5_000,
    ),
}


@dataclass(frozen=True)
class SearchConfig:
    out: Path
    sram_budget: int | str | None = None  # None: the board's SRAM
    flash_budget: int | str | None = None  # None: the board's flash
    board: str = DEFAULT_BOARD
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    preset: str = "quick"
    space_file: str | None = None
    max_instructions: int | None = None  # predicted instructions per inference
    latency: str | None = None  # e.g. "10ms": an instruction limit at the board's clock and cycles per instruction
    seed: int = 0
    device: str = "cpu"
    cutmix: float | None = None  # CutMix probability per batch (None: the preset's)
    compare_random: bool = True
    finish_random: bool = False  # also finetune and quantize the random search's winner (benchmark)
    # A finished search's folder whose supernet (same space) serves this search too: train once, search many budgets.
    supernet_from: str | None = None
    # Train the winner from scratch at the training recipe (`LoopConfig`'s learning rate and warm-up) for as many
    # epochs as supernet and finish together, instead of finetuning inherited weights.
    retrain: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"supernet.epochs": 1} (tests, benchmarks)


def resolve_preset(config: SearchConfig) -> Preset:
    if config.preset not in PRESETS:
        raise McuformerError(f"unknown preset {config.preset!r}; presets: {', '.join(PRESETS)}")
    preset = PRESETS[config.preset]
    parts: dict[str, Any] = {"supernet": preset.supernet, "evolution": preset.evolution, "finetune": preset.finetune}
    for name in ("supernet", "finetune"):
        part = parts[name]
        augment = part.augment if config.cutmix is None else replace(part.augment, cutmix=config.cutmix)
        parts[name] = replace(part, seed=config.seed, device=config.device, augment=augment)
    parts["evolution"] = replace(parts["evolution"], seed=config.seed)
    if config.retrain:
        epochs = parts["supernet"].epochs + parts["finetune"].epochs
        parts["finetune"] = replace(parts["finetune"], inherit=False, epochs=epochs, lr=LoopConfig.lr,
                                    warmup_epochs=LoopConfig.warmup_epochs)  # fmt: skip
    top: dict[str, Any] = {"train_limit": preset.train_limit, "val_size": preset.val_size,
                           "test_limit": preset.test_limit}  # fmt: skip
    for key, value in config.overrides.items():
        section, _, name = key.partition(".")
        if section in parts and name:
            parts[section] = replace(parts[section], **{name: value})
        elif key in top:
            top[key] = value
        else:
            raise McuformerError(f"unknown search setting {key!r}")
    return Preset(parts["supernet"], parts["evolution"], parts["finetune"], **top)


def prepare(config: SearchConfig) -> tuple[SearchSpace, Constraints, FitSampler]:
    """Space and constraints, checked before anything is trained: an impossible budget fails here."""
    from mcuformer.data import load_dataset

    meta = load_dataset(config.dataset, "test", config.data_dir)  # channels and classes only
    space = load_space(config.board, config.preset, config.space_file).for_data(meta.channels, meta.num_classes)
    constraints = Constraints.for_board(config.board, config.sram_budget, config.flash_budget, config.max_instructions,
                                        config.latency)  # fmt: skip
    sampler = FitSampler(space, constraints)
    sampler.smallest()  # raises BudgetError with the smallest feasible peak
    return space, constraints, sampler


RUN_KEY = "run_key.json"
STAGE_SECONDS = "stage_seconds.json"


class StageClock:
    """Wall seconds per stage, summed over every process that worked on the run: a resumed run adds its share
    instead of reporting only its own (a replayed, finished stage adds the seconds it takes to reload)."""

    def __init__(self, out: Path) -> None:
        self.path = out / STAGE_SECONDS
        self.seconds: dict[str, float] = {}
        if self.path.is_file():
            self.seconds = json.loads(self.path.read_text())
        elif (out / "search.json").is_file():  # a run finished before stage seconds had their own file
            self.seconds = dict(json.loads((out / "search.json").read_text()).get("seconds", {}))
        self._started = time.time()

    def start(self) -> None:
        self._started = time.time()

    def stop(self, stage: str) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.time() - self._started
        write_json(self.path, self.seconds)


def run_key(config: SearchConfig, space: SearchSpace, constraints: Constraints) -> dict[str, Any]:
    """What determines a search's result: a resumed run must share all of it (the device and the random finish
    do not change the winner)."""
    return {
        "board": config.board,
        "dataset": config.dataset,
        "data_dir": str(Path(config.data_dir).resolve()) if config.data_dir else None,
        "preset": config.preset,
        "space": repr(space),
        "sram_budget": constraints.sram_budget,
        "flash_budget": constraints.flash_budget,
        "max_instructions": constraints.max_instructions,
        "seed": config.seed,
        "cutmix": config.cutmix,
        "supernet_from": str(Path(config.supernet_from).resolve()) if config.supernet_from else None,
        "overrides": {k: repr(v) for k, v in sorted(config.overrides.items())},
        **({"retrain": True} if config.retrain else {}),  # absent otherwise: runs from before it still resume
    }


def _check_run_key(out: Path, key: dict[str, Any], resume: bool) -> None:
    """Refuses to resume a run started with other settings, naming each difference; records the key otherwise."""
    path = out / RUN_KEY
    if resume and path.is_file():
        old = json.loads(path.read_text())
        changed = [name for name in sorted(set(old) | set(key)) if old.get(name) != key.get(name)]
        if changed:
            diffs = "; ".join(f"{name}: {_short(old.get(name))} then, {_short(key.get(name))} now" for name in changed)
            raise McuformerError(f"{out} was started with other settings ({diffs}): resume it with the same "
                                 "options, or use another --out")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, key)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_shared_supernet(net: Supernet, run: Path) -> dict[str, Any]:
    """The trained supernet of another search over the same space (the one-shot promise: one supernet serves every
    budget of its space; train it under the loosest one). Returns its training log."""
    path = run / SUPERNET_CHECKPOINT
    if not path.is_file():
        raise McuformerError(f"{path} does not exist: --supernet-from names the folder of a finished search")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("space") != repr(net.space):
        raise McuformerError(f"{path} was trained on another search space; share supernets within one space only")
    if state["epoch"] < state["config"]["epochs"]:
        raise McuformerError(f"{path} stopped after epoch {state['epoch']} of {state['config']['epochs']}: "
                             "finish that search first (--resume)")  # fmt: skip
    net.load_state_dict(state["model"] if "model" in state else state["supernet"])
    tqdm.write(f"supernet: shared from {run} ({state['epoch']} epochs)")
    return {"shared_from": str(run), "epochs": state.get("history", []), "config": state["config"]}


def run_search(config: SearchConfig, resume: bool = False) -> dict[str, Any]:
    out = Path(config.out)
    if not resume and (out / SUPERNET_CHECKPOINT).exists():
        raise McuformerError(f"{out} already holds a search; pass --resume to continue it or use another --out")
    space, constraints, sampler = prepare(config)
    preset = resolve_preset(config)
    _check_run_key(out, run_key(config, space, constraints), resume)
    clock = StageClock(out)
    tqdm.write(f"search space {space.name}: {len(space.resolutions)} resolutions, widths {list(space.embed_dims)}, "
               f"depths {list(space.depths)}; constraints: {constraints.describe()}")  # fmt: skip

    clock.start()
    data = SearchData.load(config.dataset, config.data_dir, preset.val_size, preset.train_limit, config.seed,
                           preset.test_limit)  # fmt: skip
    torch.manual_seed(config.seed)
    net = Supernet(space, data.mean, data.std, seed=config.seed)
    if config.supernet_from is None:
        log = train_supernet(net, data, sampler, out, preset.supernet, resume=True)
    else:
        log = load_shared_supernet(net, Path(config.supernet_from))
    clock.stop("supernet")
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return {}  # under torchrun only the first process searches and finishes

    clock.start()
    net.eval()
    fitness = Fitness(lambda arch: subnet_accuracy(net, data, arch), out / "fitness_cache.json")
    evolution = evolve(sampler, fitness, preset.evolution)
    clock.stop("evolution")
    clock.start()
    randoms = random_search(sampler, fitness, len(evolution), config.seed) if config.compare_random else []
    clock.stop("random_search")
    winner = best(evolution)
    tqdm.write(f"winner: val accuracy {100 * winner.accuracy:.2f}% (inherited weights), peak SRAM "
               f"{winner.sram_bytes:,} B, flash {winner.flash_bytes:,} B")  # fmt: skip

    clock.start()
    # The finish's distillation teacher: the largest fitting subnet, already trained (extracted only when used).
    teacher = net.extract(sampler.arch(sampler.largest())) if preset.finetune.distill > 0 else None
    result_final, model_file = _finish(net, data, winner, out, preset.finetune, teacher)
    save_model(model_file, out / "model.pt")
    clock.stop("finetune")
    random_final: dict[str, float] = {}
    if config.finish_random and randoms:
        clock.start()
        random_final, random_file = _finish(net, data, best(randoms), out / "random", preset.finetune, teacher)
        save_model(random_file, out / "random" / "model.pt")
        clock.stop("random_finish")  # the benchmark's comparison, not part of the search's own time

    result = {
        "board": config.board,
        "dataset": config.dataset,
        "preset": config.preset,
        "seed": config.seed,
        "space": space.name,
        "sram_budget": constraints.sram_budget,
        "flash_budget": constraints.flash_budget,
        "max_instructions": constraints.max_instructions,
        "settings": asdict(preset),
        "evaluations": {"evolution": len(evolution), "random": len(randoms)},
        "winner": winner.to_dict(),
        "random_best": best(randoms).to_dict() if randoms else None,
        "final": result_final,
        "random_final": random_final,
        "supernet_log": log,
        "seconds": clock.seconds,
        "candidates": [c.to_dict() for c in evolution + randoms],
    }
    write_json(out / "search.json", result)
    plot_pareto(out / "pareto.png", evolution, randoms, winner, constraints.sram_budget, constraints.flash_budget,
                f"{config.dataset} on {config.board}: {len(evolution)} evolution / {len(randoms)} random "
                "evaluations", constraints.max_instructions)  # fmt: skip
    (out / "summary.md").write_text(summary_markdown(result))
    return result


def _finish(net: Supernet, data: SearchData, winner: Candidate, out: Path, config: FinetuneConfig,
            teacher: VisionTransformer | None) -> tuple[dict[str, float], Any]:  # fmt: skip
    """Finetune, quantize and package `winner`; it learns from `teacher` (per `config.distill`) unless it is the
    teacher itself."""
    model = starting_model(net, winner.arch.with_name("searched"), data, config)
    if teacher is not None and winner.arch == teacher.arch:
        teacher = None
    model = finetune(model, data, out, config, resume=True, teacher=teacher)
    model_file, metrics = package(model, data, out, config)
    how = "quantization-aware" if metrics["qat"] else "post-training"
    tqdm.write(f"finished: fp32 test accuracy {100 * metrics['fp32_accuracy']:.2f}%, "
               f"int8 ({how}) {100 * metrics['int8_accuracy']:.2f}%")  # fmt: skip
    return metrics, model_file
