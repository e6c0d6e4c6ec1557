"""`mcuformer export`: fp32 and QDQ int8 ONNX, what the QDQ graph computes, and both read back by the front end."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from mcuformer.arch import ArchConfig, LayerRanks
from mcuformer.checkpoint import DatasetMeta, ModelFile, load_model, save_model
from mcuformer.cli import main
from mcuformer.codegen.compiler import compile_model
from mcuformer.codegen.emit import model_hash
from mcuformer.codegen.onnx.errors import OnnxImportError
from mcuformer.codegen.onnx.export import export_fp32
from mcuformer.codegen.onnx.frontend import compile_onnx, import_onnx
from mcuformer.codegen.onnx.qdq import export_qdq
from mcuformer.data import load_dataset
from mcuformer.evaluate import evaluate_build
from mcuformer.model import VisionTransformer
from mcuformer.quant import reference, spec
from mcuformer.quant.ptq import calibrate, quantize_model

QDQ_IMAGES = 100
# The QDQ graph runs LayerNorm, softmax, GELU and requantization in float where the int8 reference uses
# integer arithmetic and tables: its logits may differ by a few int8 steps, its classes almost never.
QDQ_MEAN_STEPS, QDQ_MAX_STEPS, QDQ_TOP1 = 1.5, 16, 0.95


def _qlinears(qvit):
    for block in qvit.blocks:
        yield from (block.q, block.k, block.v)
        for factored in (block.proj, block.fc1, block.fc2):
            yield factored.u
            if factored.v is not None:
                yield factored.v
    yield qvit.head


def test_qdq_graph_holds_the_int8_model_and_follows_its_reference(micro_run, tmp_path):
    _, model_file = micro_run
    path = export_qdq(model_file, tmp_path / "micro_qdq.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    qvit = quantize_model(model_file.model, model_file.calibration)
    consts = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    int8_weights = [v for v in consts.values() if v.dtype == np.int8 and v.ndim == 2]
    for q in _qlinears(qvit):  # every int8 weight matrix is in the graph as it is on the device
        assert any(w.shape == q.weight.T.shape and np.array_equal(w, q.weight.T) for w in int8_weights)
    quantize_nodes = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    graph_qparams = {(float(consts[n.input[1]]), int(consts[n.input[2]])) for n in quantize_nodes}
    assert (float(np.float32(qvit.logits.scale)), qvit.logits.zero_point) in graph_qparams
    assert (float(np.float32(qvit.blocks[0].attn.score.scale)), qvit.blocks[0].attn.score.zero_point) in graph_qparams

    images = load_dataset("fashion-mnist", "test").images[:QDQ_IMAGES]
    expected = reference.predict(qvit, images).astype(np.int64)
    evaluator = ReferenceEvaluator(model)
    pixels = (images.transpose(0, 3, 1, 2) / 255.0).astype(np.float32)
    logits = np.concatenate([evaluator.run(None, {"pixels": pixels[i : i + 1]})[0] for i in range(len(pixels))])
    got = np.clip(np.round(logits / qvit.logits.scale) + qvit.logits.zero_point, -128, 127).astype(np.int64)
    steps = np.abs(got - expected)
    assert steps.mean() <= QDQ_MEAN_STEPS and steps.max() <= QDQ_MAX_STEPS, (steps.mean(), steps.max())
    assert (got.argmax(1) == expected.argmax(1)).mean() >= QDQ_TOP1


def test_qdq_reimports_to_the_same_int8_weights_and_activation_ranges(micro_run, tmp_path):
    run, model_file = micro_run
    path = export_qdq(model_file, tmp_path / "micro_qdq.onnx")
    imported = import_onnx(path)
    assert imported.arch == model_file.arch and imported.calibration == model_file.calibration
    ours = quantize_model(model_file.model, model_file.calibration)
    theirs = quantize_model(imported.model, imported.calibration)
    assert np.array_equal(ours.patch_embed.weight, theirs.patch_embed.weight)
    assert np.array_equal(ours.pos_embed, theirs.pos_embed) and np.array_equal(ours.cls_row, theirs.cls_row)
    for a, b in zip(_qlinears(ours), _qlinears(theirs), strict=True):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
        assert a.input == b.input and a.output == b.output
        # Weight scales travel as float32 in QDQ: requantization multipliers may move in their last bits.
        assert np.abs(a.mult.astype(np.int64) - b.mult).max() <= 2**31 * 1e-6
    direct = compile_model(run / "model.pt", "stm32f746", tmp_path / "direct", name="micro")
    again = compile_onnx(path, "stm32f746", tmp_path / "again", name="micro")
    assert [op.kind for op in again.graph.ops] == [op.kind for op in direct.graph.ops]
    assert again.plan.arena_bytes == direct.plan.arena_bytes


def test_cli_export_then_compile_runs_exact_on_the_host(micro_run, tmp_path, capsys):
    run, model_file = micro_run
    for flags, name in (([], "micro.onnx"), (["--qdq"], "micro_qdq.onnx")):
        assert main(["export", str(run / "model.pt"), "--onnx", str(tmp_path / name), *flags]) == 0
        assert f"wrote {tmp_path / name}" in capsys.readouterr().out
    build = tmp_path / "build"
    assert main(["compile", str(tmp_path / "micro_qdq.onnx"), "-o", str(build)]) == 0
    assert load_model(build / "model.pt").dataset.name == "fashion-mnist"
    result = evaluate_build(build, limit=50)
    assert result.logits_exact == 1.0
    images = load_dataset("fashion-mnist", "test").images[:50]
    original = reference.predict(quantize_model(model_file.model, model_file.calibration), images).argmax(1)
    reimported = reference.predict(quantize_model(load_model(build / "model.pt").model, model_file.calibration), images)
    assert (reimported.argmax(1) == original).mean() >= 0.95


def test_qdq_model_without_metadata_takes_its_ranges_from_its_qdq_pairs(micro_run, tmp_path):
    _, model_file = micro_run
    model = onnx.load(str(export_qdq(model_file, tmp_path / "q.onnx")))
    del model.metadata_props[:]  # as another tool would leave it: only the graph
    onnx.save(model, str(tmp_path / "bare.onnx"))
    imported = import_onnx(tmp_path / "bare.onnx")
    assert sorted(imported.calibration) == sorted(model_file.calibration)
    for tap, (low, high) in model_file.calibration.items():  # the same parameters, up to float32 scales
        scale, zero_point = spec.activation_qparams(low, high)
        assert spec.activation_qparams(*imported.calibration[tap]) == (float(np.float32(scale)), zero_point), tap
    # Without the pair on the scores, that range is missing: the error names it and asks for images.
    score_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and "scores" in n.name)
    score_dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and score_q.output[0] in n.input)
    for node in model.graph.node:
        node.input[:] = [score_q.input[0] if n == score_dq.output[0] else n for n in node.input]
    model.graph.node.remove(score_q)
    model.graph.node.remove(score_dq)
    onnx.save(model, str(tmp_path / "partial.onnx"))
    try:
        import_onnx(tmp_path / "partial.onnx")
    except OnnxImportError as err:
        assert "blocks.0.attn.scores" in str(err) and "pass --calib <dataset>" in str(err) and "\n" not in str(err)
    else:
        raise AssertionError("a QDQ model missing a quantized tensor must ask for --calib")
    assert import_onnx(tmp_path / "partial.onnx", calib="fashion-mnist", calib_images=32).arch == model_file.arch


def test_low_rank_mean_pooled_tanh_model_round_trips_both_ways(tmp_path):
    base = ArchConfig.uniform(image_size=28, channels=1, patch_size=7, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2,
                              num_classes=10, rank=LayerRanks(qkv=8, proj=8, fc1=8, fc2=8), pool="mean",
                              name="lowrank")  # fmt: skip
    arch = dataclasses.replace(base, norm_eps=1e-6, gelu="tanh")
    torch.manual_seed(0)
    model = VisionTransformer(arch, (0.3,), (0.4,)).eval()
    pixels = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    classes = tuple(str(i) for i in range(10))
    model_file = ModelFile(model, calibrate(model, pixels), DatasetMeta("fashion-mnist", (0.3,), (0.4,), classes))
    save_model(model_file, tmp_path / "model.pt")
    direct = compile_model(tmp_path / "model.pt", "stm32f746", tmp_path / "direct", name="m")
    fp32 = compile_onnx(export_fp32(model_file, tmp_path / "m.onnx"), "stm32f746", tmp_path / "fp32", name="m")
    assert model_hash(fp32.graph) == model_hash(direct.graph)
    imported = import_onnx(export_qdq(model_file, tmp_path / "m_qdq.onnx"))
    assert imported.arch == arch
    ours = quantize_model(model, model_file.calibration)
    theirs = quantize_model(imported.model, imported.calibration)
    for a, b in zip(_qlinears(ours), _qlinears(theirs), strict=True):
        assert np.array_equal(a.weight, b.weight) and a.output == b.output
    assert all(b1.qkv_v is not None and np.array_equal(b1.qkv_v.weight, b2.qkv_v.weight)
               for b1, b2 in zip(ours.blocks, theirs.blocks, strict=True))  # fmt: skip
    assert all(np.array_equal(b1.gelu_table, b2.gelu_table) for b1, b2 in zip(ours.blocks, theirs.blocks, strict=True))
