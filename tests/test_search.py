"""The NAS: slicing correctness, planner-exact constraints, determinism, resume (tiny space, few steps)."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mcuformer.errors import McuformerError
from mcuformer.search.cost import BudgetError, Constraints, parse_size
from mcuformer.search.data import SearchData
from mcuformer.search.evolution import EvolutionConfig, Fitness, evolve, random_search, subnet_accuracy
from mcuformer.search.genome import crossover, extreme_genome, mutate, random_genome
from mcuformer.search.sampler import FitSampler
from mcuformer.search.space import PRESETS, SearchSpace, SpaceError, load_space, space_from_dict
from mcuformer.search.supernet import Supernet, resize_patch_kernel
from mcuformer.search.train import SupernetTrainConfig, train_supernet

TINY = {
    "image_sizes": [14, 28],
    "patch_sizes": [7, 14],
    "embed_dims": [16, 32],
    "depths": [1, 2],
    "num_heads": [1, 2],
    "mlp_ratios": [1.0, 2.0],
    "ranks": [8, "full"],
}
# A whole search in about a minute: one supernet epoch on 512 images, 4 x 2 evaluations, a one-epoch finish.
TINY_SEARCH = {"supernet.epochs": 1, "supernet.batch_size": 64, "train_limit": 512, "val_size": 200,
               "test_limit": 200, "evolution.population": 4, "evolution.generations": 1, "evolution.parents": 2,
               "finetune.epochs": 1, "finetune.calibration_images": 64, "finetune.qat_epochs": 1}  # fmt: skip
TINY_TRAIN = SupernetTrainConfig(epochs=2, batch_size=64, lr=3e-3, warmup_epochs=0.2, num_random=1)


def tiny_space() -> SearchSpace:
    return space_from_dict(TINY, "tiny")


def tiny_space_file(folder: Path) -> Path:
    """TINY as a space file (its [quick] table), for run_search."""
    path = folder / "tiny.toml"
    path.write_text("[quick]\n" + "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in TINY.items()) + "\n")
    return path


@pytest.fixture(scope="module")
def tiny_data() -> SearchData:
    return SearchData.load("fashion-mnist", None, val_size=300, train_limit=640, seed=0)


def test_shipped_spaces_load() -> None:
    for board in ("stm32f746", "stm32h743", "qemu-m7", "stm32l432kc", "qemu-l412kb"):
        for preset in PRESETS:
            space = load_space(board, preset)
            assert space.resolutions and all(s % p == 0 for s, p in space.resolutions)


@pytest.mark.parametrize("board", ["stm32l432kc", "stm32l412kb"])
def test_small_boards_spaces_make_their_budgets_bind(board: str) -> None:
    """On the small Cortex-M4 parts the default spaces hold architectures that fit and ones that do not."""
    constraints = Constraints.for_board(board)
    for preset in ("quick", "standard"):
        space = load_space(board, preset).for_data(1, 10)
        smallest, largest = (extreme_genome(space, big).arch(space) for big in (False, True))
        assert constraints.fits(smallest) and not constraints.fits(largest), (board, preset)
    assert load_space(board, "quick") == load_space(f"qemu-{board[5:]}", "quick")  # the stand-in's space


def test_space_errors() -> None:
    with pytest.raises(SpaceError, match="multiple of 8"):
        space_from_dict({**TINY, "ranks": [12, "full"]})
    with pytest.raises(SpaceError, match="unknown field"):
        space_from_dict({**TINY, "widths": [1]})
    with pytest.raises(SpaceError, match="not divisible"):
        space_from_dict({**TINY, "num_heads": [3]})


def test_parse_size() -> None:
    assert parse_size("320KB") == 327_680
    assert parse_size("0.5MB") == 524_288
    assert parse_size("327680") == 327_680
    assert parse_size("1MiB") == 1_048_576
    with pytest.raises(BudgetError, match="320KB"):
        parse_size("lots")


def test_slice_equals_standalone_model() -> None:
    """Every sampled slice computes exactly what the plain VisionTransformer with copied weights computes."""
    space = tiny_space()
    net = Supernet(space, (0.3,), (0.35,), seed=1)
    with torch.no_grad():  # move the norms and biases off their init so slicing them is tested too
        for p in net.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    rng = random.Random(0)
    pixels = {s: torch.rand(3, 1, s, s, generator=torch.Generator().manual_seed(s)) for s in space.image_sizes}
    archs = [extreme_genome(space, True).arch(space), extreme_genome(space, False).arch(space)]
    archs += [random_genome(space, rng).arch(space) for _ in range(12)]
    for arch in archs:
        model = net.extract(arch)
        assert type(model).__name__ == "VisionTransformer" and model.arch == arch
        # Sliced (strided) and copied (contiguous) weights may take different float GEMM kernels, which round
        # differently: each dot product of at most 128 terms is within 128 * 2^-24 (~1e-5) of exact, relative to the
        # sum of |terms|; a few dozen such layers stay far below 1e-3, while a wrong slice moves logits by >= 1e-2.
        torch.testing.assert_close(net(pixels[arch.image_size], arch), model(pixels[arch.image_size]),
                                   rtol=1e-3, atol=1e-3, msg=str(arch))  # fmt: skip


def test_rank_and_width_slices_are_leading_slices() -> None:
    space = tiny_space()
    net = Supernet(space, (0.3,), (0.35,))
    big = extreme_genome(space, True)
    low = replace(big, attn_ranks=(8,) * big.depth, embed_dim=32)
    low_small = replace(low, embed_dim=16)
    state, state_small = net.subnet_state(low.arch(space)), net.subnet_state(low_small.arch(space))
    v, v_small = state["blocks.0.attn.qkv.v.weight"], state_small["blocks.0.attn.qkv.v.weight"]
    assert v.shape == (8, 32) and torch.equal(v[:, :16], v_small)
    # Components in importance order: the leading factor carries the most weight at initialisation.
    norms = net.blocks[0].qkv.u.norm(dim=0) * net.blocks[0].qkv.v.norm(dim=1)
    assert torch.all(norms[:-1] >= norms[1:] - 1e-6)
    # The stored patch size is used as is; other sizes are resized.
    kernel = net.patch_weight[:16]
    assert resize_patch_kernel(kernel, 14) is kernel
    assert resize_patch_kernel(kernel, 7).shape == (16, 1, 7, 7)


def test_genome_moves_stay_in_space() -> None:
    space = load_space("stm32f746", "full")
    rng = random.Random(3)
    genomes = [random_genome(space, rng) for _ in range(30)]
    for a, b in zip(genomes, genomes[1:], strict=False):
        for child in (mutate(a, space, rng, 0.3), crossover(a, b, space, rng)):
            assert space.contains(child.arch(space))


def test_impossible_budget_fails_early_with_smallest_peak() -> None:
    space = tiny_space()
    smallest = FitSampler(space, Constraints.for_board("stm32f746")).smallest()
    peak = Constraints.for_board("stm32f746").cost(smallest.arch(space)).sram_bytes
    with pytest.raises(BudgetError, match=f"smallest has a peak SRAM of {peak:,} B"):
        FitSampler(space, Constraints.for_board("stm32f746", sram=peak - 1)).smallest()
    assert FitSampler(space, Constraints.for_board("stm32f746", sram=peak)).smallest() == smallest


def test_macs_count_of_a_known_model() -> None:
    arch = extreme_genome(tiny_space(), False).arch(tiny_space())  # 14x14, patch 14: 1 patch + cls, d 16
    n, d = 2, 16
    assert arch.ranks[0].qkv == 8 and arch.ranks[0].proj is None  # rank 8 saves nothing on a 16x16 proj
    block = n * (8 * (d + 3 * d) + d * d + d * d + d * d) + 2 * n * n * d
    assert Constraints.for_board("stm32f746").cost(arch).macs == 14 * 14 * d + block + d * 10


@pytest.fixture(scope="module")
def trained(tiny_data: SearchData, tmp_path_factory: pytest.TempPathFactory) -> tuple[Supernet, FitSampler, Path]:
    out = tmp_path_factory.mktemp("supernet")
    space = tiny_space()
    sampler = FitSampler(space, Constraints.for_board("stm32f746", sram="5700"))
    net = Supernet(space, tiny_data.mean, tiny_data.std)
    train_supernet(net, tiny_data, sampler, out, TINY_TRAIN)
    return net, sampler, out


def test_resume_after_interrupt_equals_uninterrupted(trained, tiny_data: SearchData, tmp_path: Path) -> None:
    net, sampler, _ = trained
    resumed = Supernet(sampler.space, tiny_data.mean, tiny_data.std)
    train_supernet(resumed, tiny_data, sampler, tmp_path, TINY_TRAIN, stop_after_epoch=1)
    assert (tmp_path / "supernet.pt").is_file()
    again = Supernet(sampler.space, tiny_data.mean, tiny_data.std)  # a fresh process: weights from the file only
    train_supernet(again, tiny_data, sampler, tmp_path, TINY_TRAIN)
    for (name, a), b in zip(net.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_search_is_deterministic_and_exact(trained, tiny_data: SearchData) -> None:
    net, sampler, _ = trained
    config = EvolutionConfig(population=6, generations=2, parents=3, seed=5)
    runs = [evolve(sampler, Fitness(lambda a: subnet_accuracy(net, tiny_data, a)), config, False) for _ in range(2)]
    assert [c.to_dict() for c in runs[0]] == [c.to_dict() for c in runs[1]]
    other = evolve(sampler, Fitness(lambda a: subnet_accuracy(net, tiny_data, a)), replace(config, seed=6), False)
    assert [c.arch for c in other] != [c.arch for c in runs[0]]
    randoms = random_search(sampler, Fitness(lambda a: subnet_accuracy(net, tiny_data, a)), len(runs[0]), 5, False)
    assert len(randoms) == len(runs[0])
    from mcuformer.codegen.compiler import Budgets, plan_arch

    budget = sampler.constraints.sram_budget
    budgets = Budgets(sram=budget, flash=sampler.constraints.flash_budget)  # what `compile --sram --flash` plans
    for c in runs[0] + randoms:
        report = plan_arch(c.arch, "stm32f746", budgets=budgets)  # a fresh planner call, not the search's cache
        assert report.sram_bytes == c.sram_bytes <= budget and report.flash_bytes == c.flash_bytes


def test_fitness_cache_replays(tmp_path: Path) -> None:
    calls: list[str] = []
    arch = extreme_genome(tiny_space(), False).arch(tiny_space())

    def evaluate(a: object) -> float:
        calls.append("x")
        return 0.5

    Fitness(evaluate, tmp_path / "cache.json")(arch)
    assert Fitness(evaluate, tmp_path / "cache.json")(arch) == 0.5 and len(calls) == 1


def test_search_end_to_end_compiles_within_budget(tmp_path: Path) -> None:
    """`run_search` on a tiny space: the winner's model.pt compiles (the real compile path) to the promised plan."""
    from mcuformer.checkpoint import load_model
    from mcuformer.codegen.compiler import Budgets, compile_model
    from mcuformer.search.run import SearchConfig, run_search

    config = SearchConfig(out=tmp_path / "run", sram_budget="5700", space_file=str(tiny_space_file(tmp_path)),
                          overrides=TINY_SEARCH)  # fmt: skip
    result = run_search(config)
    with pytest.raises(Exception, match="--resume"):
        run_search(config)
    assert run_search(config, resume=True)["winner"] == result["winner"]  # replays from checkpoint and cache
    out = config.out
    for name in ("model.pt", "search.json", "pareto.png", "summary.md"):
        assert (out / name).is_file(), name
    assert result["evaluations"]["evolution"] == result["evaluations"]["random"] > 0
    assert all(c["sram_bytes"] <= 5700 for c in result["candidates"])
    model_file = load_model(out / "model.pt")
    assert model_file.arch.to_dict() | {"name": ""} == result["winner"]["arch"] | {"name": ""}
    final = result["final"]  # the finish tried quantization-aware finetuning and says which int8 model it kept
    assert (out / "qat.pt").is_file() and model_file.metrics["qat"] == final["qat"]
    assert final["qat"] == float(final["qat_val_int8_accuracy"] > final["ptq_val_int8_accuracy"])
    assert "quantization-aware finetuning" in (out / "summary.md").read_text()
    budgets = Budgets(sram=result["sram_budget"], flash=result["flash_budget"])  # as summary.md says to compile
    compiled = compile_model(out / "model.pt", "stm32f746", out / "build", budgets=budgets)
    assert compiled.report.sram_bytes == result["winner"]["sram_bytes"] <= 5700
    assert compiled.report.flash_bytes == result["winner"]["flash_bytes"]

    # Train once, search many: a tighter budget searched with this run's supernet (no training of its own).
    tighter = replace(config, out=tmp_path / "tighter", sram_budget="5500", supernet_from=str(out))
    shared = run_search(tighter)
    assert shared["supernet_log"]["shared_from"] == str(out) and not (tighter.out / "supernet.pt").exists()
    assert all(c["sram_bytes"] <= 5500 for c in shared["candidates"])
    common = {json.dumps(c["arch"], sort_keys=True): c["accuracy"] for c in result["candidates"]}
    same = [c for c in shared["candidates"] if json.dumps(c["arch"], sort_keys=True) in common]
    assert all(c["accuracy"] == common[json.dumps(c["arch"], sort_keys=True)] for c in same)  # the same weights
    other_space = replace(tighter, out=tmp_path / "other", space_file=None, sram_budget=None)
    with pytest.raises(McuformerError, match="another search space"):
        run_search(other_space)


def test_finish_distills_from_the_teacher(tiny_data: SearchData, tmp_path: Path) -> None:
    """With distill = 1 the finetune learns the teacher's predictions, not the labels: a teacher that always says
    class 3 makes the student say class 3; without distillation it does not."""
    from mcuformer.data import pixels_to_tensor
    from mcuformer.recipe import Augment
    from mcuformer.search.finish import FinetuneConfig, finetune

    space = tiny_space()
    student_arch = extreme_genome(space, largest=False).arch(space)
    teacher = Supernet(space, tiny_data.mean, tiny_data.std).extract(extreme_genome(space, largest=True).arch(space))
    with torch.no_grad():
        teacher.head.bias.copy_(torch.where(torch.arange(10) == 3, 20.0, 0.0))
    config = FinetuneConfig(epochs=2, batch_size=64, lr=5e-3, warmup_epochs=0.1, qat_epochs=0, distill=1.0,
                            augment=Augment(label_smoothing=0.0))  # fmt: skip
    pixels = pixels_to_tensor(tiny_data.at("val", student_arch.image_size).images)

    def share_of_class_3(distill: float, folder: str) -> float:
        student = Supernet(space, tiny_data.mean, tiny_data.std, seed=2).extract(student_arch)
        student = finetune(student, tiny_data, tmp_path / folder, replace(config, distill=distill), teacher=teacher)
        with torch.no_grad():
            return float((student(pixels).argmax(1) == 3).float().mean())

    assert share_of_class_3(1.0, "taught") > 0.9
    assert share_of_class_3(0.0, "labels") < 0.5


def test_stage_seconds_add_up_over_resumed_processes(tmp_path: Path) -> None:
    """A resumed run reports the time every process spent on a stage, not only its own share."""
    from mcuformer.search.run import StageClock

    first = StageClock(tmp_path)
    first.start()
    first.stop("supernet")
    first.seconds["supernet"] = 100.0  # as if the first process had trained for 100 s before it was killed
    first.stop("supernet")
    again = StageClock(tmp_path)  # a new process on the same run folder
    again.start()
    again.stop("supernet")
    assert 100.0 <= again.seconds["supernet"] < 101.0
    (tmp_path / "stage_seconds.json").unlink()
    (tmp_path / "search.json").write_text('{"seconds": {"finetune": 42.0}}')  # a run from before the file existed
    assert StageClock(tmp_path).seconds == {"finetune": 42.0}


def test_retrain_starts_from_fresh_weights_like_train(tiny_data: SearchData, tmp_path: Path) -> None:
    """`search --retrain`: the finish trains the winner at the training recipe for supernet + finish epochs from
    the weights `mcuformer.train.train` would start from, not the supernet's."""
    from mcuformer.model import VisionTransformer
    from mcuformer.search.finish import starting_model
    from mcuformer.search.run import SearchConfig, resolve_preset

    plain = resolve_preset(SearchConfig(out=tmp_path, preset="quick"))
    retrain = resolve_preset(SearchConfig(out=tmp_path, preset="quick", retrain=True, seed=3))
    assert plain.finetune.inherit and not retrain.finetune.inherit
    assert retrain.finetune.epochs == plain.supernet.epochs + plain.finetune.epochs
    assert (retrain.finetune.lr, retrain.finetune.warmup_epochs) == (2e-3, 1.0)  # LoopConfig's, as `train` uses

    space = tiny_space()
    arch = extreme_genome(space, largest=True).arch(space)
    net = Supernet(space, tiny_data.mean, tiny_data.std, seed=1)
    inherited = starting_model(net, arch, tiny_data, plain.finetune).state_dict()
    fresh = starting_model(net, arch, tiny_data, retrain.finetune).state_dict()
    torch.manual_seed(3)
    expected = VisionTransformer(arch, tiny_data.mean, tiny_data.std).state_dict()
    # Exact: both sides are the same seeded initialisation (random draws, no arithmetic that could round apart).
    assert all(torch.equal(fresh[k], expected[k]) for k in expected)
    assert not torch.equal(fresh["head.weight"], inherited["head.weight"])
