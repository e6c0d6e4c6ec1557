"""The instruction cost model (codegen/cost_model.py): its fit, its coverage of what the compiler emits, and a
latency-bound search whose winner, compiled and run on QEMU, measures within the limit. (Its error on the test
suite's trained model is checked in test_profile.py, next to the QEMU profile it is compared with.)"""

import random
from pathlib import Path

import pytest
from test_codegen_plan import _random_arch
from test_search import TINY, TINY_SEARCH, tiny_space_file

from mcuformer.codegen.compiler import compile_model, graph_for_arch
from mcuformer.codegen.cost_model import fit_kind, load_cost_model, op_features
from mcuformer.codegen.lower import SCHEDULES
from mcuformer.profile import profile_build
from mcuformer.search.cost import BudgetError, Constraints, parse_latency
from mcuformer.search.genome import extreme_genome
from mcuformer.search.space import space_from_dict


def test_fit_recovers_a_linear_cost_and_keeps_every_coefficient_non_negative() -> None:
    rng = random.Random(0)
    rows = [{"call": 1.0, "macs": float(rng.randint(100, 10_000)), "values": float(rng.randint(10, 500))}
            for _ in range(30)]  # fmt: skip
    counts = [120 + 2.5 * r["macs"] + 0.75 * r["values"] for r in rows]
    fitted = fit_kind(rows, counts)
    assert fitted == pytest.approx({"call": 120, "macs": 2.5, "values": 0.75}, rel=1e-6)
    # Instructions that fall with a size would be a negative cost: that feature is dropped, the rest refitted.
    falling = [120 + 2.5 * r["macs"] - 0.2 * r["values"] for r in rows]
    assert min(fit_kind(rows, falling).values()) >= 0 and "values" not in fit_kind(rows, falling)


@pytest.mark.parametrize("variant", ["dsp", "portable"])
def test_the_shipped_model_covers_every_schedule_and_code_path(variant: str) -> None:
    model = load_cost_model(variant)
    assert 0 < model.margin < 0.2, "the held-out error is recorded"
    for seed in range(8):
        arch = _random_arch(random.Random(seed))
        for schedule in SCHEDULES:
            graph = graph_for_arch(arch, schedule=schedule)
            assert model.covers(graph), (seed, schedule)
            assert model.instructions(graph) > 0
    # A size no calibration model exercised is not silently free.
    graph = graph_for_arch(_random_arch(random.Random(0)))
    op = graph.ops[0]
    stripped = type(model)(variant, model.coefficients, {**model.calibrated, op.kind: []}, model.margin)
    assert op_features(graph, op) and not stripped.covers(graph)


def test_latency_is_read_and_converted_with_the_board() -> None:
    assert parse_latency("5ms") == pytest.approx(0.005) and parse_latency("800us") == pytest.approx(0.0008)
    with pytest.raises(BudgetError, match="write it like 10ms"):
        parse_latency("5")
    f746 = Constraints.for_board("stm32f746", latency="5ms")
    assert f746.max_instructions == 5 * 216_000_000 // 1000  # 216 MHz, 1.0 cycle per instruction (board file)
    assert Constraints.for_board("stm32f746", max_instructions=10**6, latency="5ms").max_instructions == 10**6


def test_a_latency_bound_search_measures_within_its_limit(tmp_path: Path) -> None:
    """`run_search` with an instruction limit between the tiny space's smallest and largest models: every candidate
    respects it (prediction x (1 + the model's held-out error)), the largest does not fit, and the winner,
    compiled and run on QEMU, measures within the limit."""
    from mcuformer.search.run import SearchConfig, run_search

    space = space_from_dict(TINY, "tiny")
    constraints = Constraints.for_board("qemu-m7")
    small, large = (constraints.cost(extreme_genome(space, largest).arch(space)) for largest in (False, True))
    limit = int((small.instructions * large.instructions) ** 0.5)
    config = SearchConfig(out=tmp_path / "run", board="qemu-m7", space_file=str(tiny_space_file(tmp_path)),
                          max_instructions=limit, overrides={**TINY_SEARCH, "finetune.qat_epochs": 0})  # fmt: skip
    result = run_search(config)
    margin = load_cost_model("dsp").margin
    assert result["max_instructions"] == limit
    assert all(c["instructions"] * (1 + margin) <= limit for c in result["candidates"])
    assert large.instructions * (1 + margin) > limit  # the limit binds
    compiled = compile_model(config.out / "model.pt", "qemu-m7", tmp_path / "build")
    assert compiled.report.predicted_instructions == result["winner"]["instructions"]
    measured = profile_build(tmp_path / "build", "qemu-m7").inference_count
    assert measured <= limit, (measured, limit)
