"""Graph IR, verifier and memory planner on quantized models (no C compiler needed)."""

import dataclasses
import random

import numpy as np
import pytest
import torch

from mcuformer.arch import PRESETS, ArchConfig, LayerRanks
from mcuformer.boards import Board, load_board
from mcuformer.codegen.compiler import Budgets, graph_for_arch, plan_arch, plan_qmodel
from mcuformer.codegen.emit import render
from mcuformer.codegen.ir import IRError, Op, TensorSpec
from mcuformer.codegen.lower import SCHEDULES, lower
from mcuformer.codegen.planner import check_plan, lifetimes, plan_memory
from mcuformer.codegen.report import BudgetError, check_budget, memory_report
from mcuformer.codegen.verify import verify
from mcuformer.model import VisionTransformer
from mcuformer.quant.ptq import calibrate, quantize_model


def _qmodel(arch: ArchConfig, seed: int = 0):
    torch.manual_seed(seed)
    model = VisionTransformer(arch, [0.5] * arch.channels, [0.25] * arch.channels)
    pixels = torch.rand(16, arch.channels, arch.image_size, arch.image_size)
    return quantize_model(model, calibrate(model, pixels))


def _graph(arch: ArchConfig, seed: int = 0, schedule: str = "layer"):
    return lower(_qmodel(arch, seed), arch.name.replace("-", "_") or "m", schedule)


def _random_arch(rng: random.Random) -> ArchConfig:
    depth = rng.randint(1, 3)
    dim = rng.choice([8, 12, 16, 24, 32])
    heads = tuple(rng.choice([h for h in (1, 2, 4) if dim % h == 0]) for _ in range(depth))
    patch = rng.choice([2, 4, 7])
    size = patch * rng.randint(1, 5)

    def rank(fan_in: int, fan_out: int) -> int | None:
        options = [r for r in (4, 8) if r < min(fan_in, fan_out)]
        return rng.choice([None, *options]) if options else None

    ratios = tuple(rng.choice([1.0, 2.0, 3.0]) for _ in range(depth))
    ranks = tuple(
        LayerRanks(rank(dim, 3 * dim), rank(dim, dim), rank(dim, int(dim * m)), rank(int(dim * m), dim)) for m in ratios
    )
    return ArchConfig(image_size=size, channels=rng.choice([1, 3]), patch_size=patch, embed_dim=dim, depth=depth,
                      num_heads=heads, mlp_ratios=ratios, ranks=ranks, num_classes=rng.randint(2, 12),
                      pool=rng.choice(["cls", "mean"]))  # fmt: skip


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("seed", range(20))
def test_random_architectures_plan_without_overlap_and_deterministically(seed, schedule):
    arch = _random_arch(random.Random(seed))
    graph = _graph(arch, seed, schedule)
    plan = plan_memory(graph)
    check_plan(plan)  # raises on any overlap of live buffers or a buffer outside the arena
    for buffer in plan.buffers:
        for other in plan.buffers:
            if buffer is not other and buffer.overlaps_in_time(other):
                # only the decomposed patch embedding's image may share bytes, with the token matrix it becomes
                intended = {buffer.name, other.name} == {"image", "tokens"} and schedule == "fused"
                assert intended or not buffer.overlaps_in_space(other)
    # Every tensor lies inside its buffer and the arena.
    for name, offset in plan.tensor_offsets.items():
        assert offset >= 0 and offset + graph.tensors[name].nbytes <= plan.arena_bytes
    # The arena is at least the largest set of simultaneously live tensors.
    assert plan.arena_bytes >= max(plan.live_bytes)
    again = plan_memory(_graph(arch, seed, schedule))
    assert again == plan
    assert render(graph, plan) == render(_graph(arch, seed, schedule), again)


@pytest.mark.parametrize("seed", range(10))
def test_fused_schedule_needs_less_and_keeps_only_k_and_v_per_sequence(seed):
    arch = _random_arch(random.Random(seed))
    layer, fused = plan_memory(_graph(arch, seed, "layer")), plan_memory(_graph(arch, seed, "fused"))
    assert fused.arena_bytes <= layer.arena_bytes
    tokens, dim = arch.num_tokens, arch.embed_dim
    graph = _graph(arch, seed, "fused")
    for index, op in enumerate(graph.ops):
        if op.kind == "attention_block":  # residual stream + K + V + one token's scratch: nothing else is live
            live = {b.name for b in fused.live_at(index)}
            per_token = graph.tensors[op.scratch[2]].nbytes
            assert fused.live_bytes[index] <= 3 * ((tokens * dim + 3) // 4 * 4) + per_token, live
            # one 4-token block of the DSP kernels (widened input, int8 rows, score row; codegen.scratch), ranks < dim
            assert per_token <= 12 * dim + tokens + 8


def test_residual_adds_and_gelu_run_in_place():
    graph = _graph(PRESETS["micro"])
    plan = plan_memory(graph)
    assert plan.tensor_offsets["b0_res1"] == plan.tensor_offsets["tokens"]
    assert plan.tensor_offsets["b0_res2"] == plan.tensor_offsets["tokens"]
    assert plan.tensor_offsets["b0_gelu"] == plan.tensor_offsets["b0_fc1_u"]
    # patch tokens are written straight into rows 1.. of the token matrix: no concatenation copy
    assert plan.tensor_offsets["patch_tokens"] == plan.tensor_offsets["tokens"] + 16


def test_lifetimes_cover_first_write_to_last_read():
    graph = _graph(PRESETS["micro"])
    span = lifetimes(graph)
    names = [op.name for op in graph.ops]
    assert span["image"] == (0, 0)
    assert span["tokens"][0] == 0 and span["tokens"][1] >= names.index("b0_res2")
    assert span["b0_attn_scratch"] == (names.index("b0_attention"),) * 2


def test_verifier_rejects_broken_graphs():
    graph = _graph(PRESETS["micro"])
    verify(graph)
    reads_too_early = graph.ops[1]
    graph.ops.insert(0, reads_too_early)
    with pytest.raises(IRError, match="before it is written"):
        verify(graph)
    graph.ops.pop(0)
    graph.ops.append(Op("bad", "conv3d", ("image",), "image"))
    with pytest.raises(IRError, match="unknown kind"):
        verify(graph)
    graph.ops.pop()
    graph.ops.append(Op("bad", "lut", ("head", "b0_gelu_table"), "head", {"oops": 1}))
    with pytest.raises(IRError, match="needs attributes"):
        verify(graph)
    graph.ops.pop()
    graph.add_tensor(TensorSpec("wild_view", (10_000,), alias_of="tokens"))
    with pytest.raises(IRError, match="outside"):
        verify(graph)


def test_report_counts_flash_by_kind_and_budget_errors_name_the_peak():
    graph = _graph(PRESETS["micro"])
    plan = plan_memory(graph)
    report = memory_report(graph, plan, load_board("stm32f746"))
    weights = sum(c.nbytes for n, c in graph.consts.items() if c.array.dtype == np.int8 and n.endswith("_w"))
    assert report.flash_by_kind["weights"] == weights
    assert report.flash_bytes == sum(c.nbytes for c in graph.consts.values()) + report.code_bytes
    assert report.sram_bytes == plan.arena_bytes + report.stack_bytes + report.runtime_static_bytes
    check_budget(report)
    tiny = Board("tiny", "test board", "cortex-m0", 1, report.sram_bytes - 1, 1 << 20)
    with pytest.raises(BudgetError, match=f"over by 1 B; the peak .* is set by op {report.peak_op}"):
        check_budget(memory_report(graph, plan, tiny))
    small_flash = Board("tiny", "test board", "cortex-m0", 1, 1 << 20, 1000)
    with pytest.raises(BudgetError, match="flash"):
        check_budget(memory_report(graph, plan, small_flash))


def test_unsupported_layers_are_named():
    torch.manual_seed(0)
    arch = PRESETS["micro"]
    model = VisionTransformer(arch, [0.5], [0.25])
    model.blocks[0].mlp.fc2 = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(32, 16))
    with pytest.raises(Exception, match=r"layer blocks\.0\.mlp\.fc2 \(Sequential\) is not supported"):
        quantize_model(model, {})


def test_plan_command_prints_the_table_and_draws_the_timeline(tmp_path, capsys):
    from mcuformer.cli import main

    assert main(["plan", "micro", "--plot", str(tmp_path / "plan.svg")]) == 0
    out = capsys.readouterr().out
    assert "b0_attention" in out and "peak" in out and "live buffers" in out
    assert (tmp_path / "plan.svg").read_text().lstrip().startswith("<?xml")
    assert f"arena {plan_arch(PRESETS['micro'], 'stm32f746').arena_bytes:,}" in out  # the speed plan, as compile


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("seed", range(12))
def test_weightless_plan_equals_the_plan_of_the_trained_model(seed, schedule):
    """plan_arch (no weights, what the search calls) and compile (real weights) give the same bytes, in memory
    mode and in speed mode (the same kernel choices)."""
    arch = _random_arch(random.Random(100 + seed))
    board = load_board("stm32f746")
    name = (arch.name or "model").replace("-", "_")  # as plan_arch names it
    speed = plan_qmodel(_qmodel(arch, seed), name, board, schedule, Budgets()).chosen
    assert plan_arch(arch, board, schedule) == speed.report
    graph = _graph(arch, seed, schedule)
    real = memory_report(graph, plan_memory(graph), board)
    predicted = plan_arch(arch, board, schedule, Budgets(optimize="memory"))
    assert plan_memory(graph_for_arch(arch, graph.name, schedule)) == plan_memory(graph)
    assert (predicted.arena_bytes, predicted.sram_bytes, predicted.flash_bytes) == (
        real.arena_bytes, real.sram_bytes, real.flash_bytes)  # fmt: skip
    assert predicted.flash_by_kind == real.flash_by_kind
    assert [row.live_bytes for row in predicted.ops] == [row.live_bytes for row in real.ops]


@pytest.mark.parametrize("seed", range(20))
def test_each_technique_only_ever_lowers_the_peak(seed):
    """The ablation ladder: in-place element-wise ops, token overwriting and the decomposition never add live bytes.

    (The arena itself is first-fit placement over these live sets, a heuristic that may lose a few bytes to
    fragmentation on tiny models; the benchmark reports arena against the live-bytes bound.)"""
    arch = _random_arch(random.Random(300 + seed))
    peak = {name: max(plan_memory(graph_for_arch(arch, "m", name)).live_bytes) for name in SCHEDULES}
    assert peak["fused"] <= peak["blocks"] <= peak["integrated"] <= peak["naive"]
    assert peak["layer"] <= peak["inplace"] <= peak["naive"] and peak["stream"] <= peak["blocks"]


def test_layernorm_gammas_go_to_flash_as_int16_and_out_of_range_ones_fail_loudly():
    """Gammas are int16 in C (half the flash of int32; PTQ scales them into +-LN_GAMMA_MAX), betas stay int32
    (trained models' betas reach 2^24). A gamma outside int16 stops the compile instead of wrapping."""
    qmodel = _qmodel(PRESETS["micro"])
    graph = lower(qmodel, "micro", "fused")
    gammas = [name for name in graph.consts if name.endswith("_gamma")]
    assert gammas and all(graph.consts[name].array.dtype == np.int16 for name in gammas)
    assert all(graph.consts[name].array.dtype == np.int32 for name in graph.consts if name.endswith("_beta"))
    norms = [qmodel.norm, *(n for b in qmodel.blocks for n in (b.norm1, b.norm2))]
    assert len(gammas) == len(norms)
    for name in gammas:  # the values themselves unchanged
        assert any(np.array_equal(graph.consts[name].array.astype(np.int32), n.gamma) for n in norms), name
    norm = qmodel.norm
    weights = render(graph, plan_memory(graph))["mcf_weights.c"]
    assert f"const int16_t mcf_{gammas[0]}[" in weights
    for bad in (32768, -32769):
        gamma = norm.gamma.copy()
        gamma[0] = bad
        broken = dataclasses.replace(qmodel, norm=dataclasses.replace(qmodel.norm, gamma=gamma))
        with pytest.raises(IRError, match="fit int16"):
            lower(broken, "micro", "fused")
