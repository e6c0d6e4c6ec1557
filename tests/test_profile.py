"""`mcuformer profile`: per-op MACs and instruction counts of a build on the emulated Cortex-M7.

Needs arm-none-eabi-gcc and qemu-system-arm (make setup); nothing is skipped.
"""

from __future__ import annotations

import json

import pytest

from mcuformer.cli import main
from mcuformer.codegen.compiler import CompiledModel, compile_model
from mcuformer.codegen.cost_model import load_cost_model
from mcuformer.codegen.ops import graph_macs, op_macs
from mcuformer.profile import CPI_RANGE, Profile, profile_build


@pytest.fixture(scope="module")
def compiled(micro_run, tmp_path_factory) -> CompiledModel:
    run, _ = micro_run
    out = tmp_path_factory.mktemp("profile") / "micro"
    return compile_model(run / "model.pt", "qemu-m7", out, name="micro")


@pytest.fixture(scope="module")
def profiles(compiled) -> dict[str, Profile]:
    return {k: profile_build(compiled.out_dir, "qemu-m7", kernels=k) for k in ("portable", "dsp")}


def test_macs_follow_the_architecture(compiled):
    arch, graph = compiled.qmodel.arch, compiled.graph
    tokens, d = arch.num_tokens, arch.embed_dim
    macs = dict(zip((op.name for op in graph.ops), graph_macs(graph), strict=True))
    patch = next(op for op in graph.ops if op.kind.startswith("patch_embed"))
    grid = (arch.image_size // arch.patch_size) ** 2
    assert macs[patch.name] == grid * arch.patch_size**2 * arch.channels * d
    head = graph.ops[-1]
    assert head.kind == "linear" and macs[head.name] == d * arch.num_classes
    mlp = next(op for op in graph.ops if op.kind == "mlp_block")
    hidden, ranks = arch.mlp_hidden(0), arch.ranks[0]
    fc1 = d * hidden if ranks.fc1 is None else ranks.fc1 * (d + hidden)
    fc2 = d * hidden if ranks.fc2 is None else ranks.fc2 * (d + hidden)
    assert op_macs(graph, mlp) == tokens * (fc1 + fc2)
    for op in graph.ops:
        if op.kind in ("add", "copy", "layernorm", "mean_pool", "lut"):
            assert macs[op.name] == 0


@pytest.mark.parametrize("variant", ["portable", "dsp"])
def test_the_cost_model_predicts_the_measured_instructions(profiles, compiled, variant):
    """The instruction cost model (calibrated on random-weight models by benchmarks/calibrate_cost.py) on this
    trained model, against QEMU's count: within the model's recorded held-out error, and within 10%."""
    model = load_cost_model(variant)
    measured = profiles[variant].inference_count
    error = abs(model.instructions(compiled.graph) / measured - 1)
    assert error <= min(model.margin, 0.10), (variant, error)


def test_profile_counts_every_op_and_dsp_beats_portable(profiles, compiled):
    portable, dsp = profiles["portable"], profiles["dsp"]
    for p in (portable, dsp):
        assert len(p.ops) == len(compiled.graph.ops) and all(op.count > 0 for op in p.ops)
        assert p.counter == "instructions" and p.resolution == 40
        # the per-op deltas add up to the inference's own count, up to one timer tick per op
        assert abs(p.total - p.inference_count) <= 40 * len(p.ops)
        assert p.total_macs == sum(graph_macs(compiled.graph)) > 0
    assert (portable.kernels, dsp.kernels) == ("portable", "dsp")
    assert dsp.total < 0.6 * portable.total
    low, high = dsp.latency_ms()
    assert low == pytest.approx(1e3 * dsp.total * CPI_RANGE[0] / 216e6) and high > low


def test_profile_command_prints_the_table_and_writes_json(compiled, capsys, tmp_path):
    out = tmp_path / "p.json"
    assert main(["profile", str(compiled.out_dir), "--board", "qemu-m7", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "instr/MAC" in text and "share" in text and "mlp_block" in text and "216 MHz" in text
    data = json.loads(out.read_text())
    assert data["kernels"] == "dsp" and data["counter"] == "instructions"
    assert [op["name"] for op in data["ops"]] == [op.name for op in compiled.graph.ops]
    assert sum(op["count"] for op in data["ops"]) == data["total"]
