"""The ONNX front end: our own exports round-trip, timm ViTs and other export forms map, the rest fails in one line."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
import torch
from onnx_models import export, rewritten_vit, timm_vit
from torch import nn

from mcuformer.arch import ArchConfig, LayerRanks
from mcuformer.checkpoint import load_model
from mcuformer.cli import main
from mcuformer.codegen.compiler import compile_model
from mcuformer.codegen.emit import model_hash
from mcuformer.codegen.onnx.errors import OnnxImportError
from mcuformer.codegen.onnx.export import export_fp32
from mcuformer.codegen.onnx.frontend import compile_onnx, read_onnx
from mcuformer.evaluate import evaluate_build

SMALL = ArchConfig.uniform(image_size=28, channels=1, patch_size=7, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2,
                           num_classes=10, rank=LayerRanks(fc1=8, proj=8))  # fmt: skip


def _ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_own_export_reimports_to_the_same_int8_model(micro_run, tmp_path):
    run, model_file = micro_run
    path = export_fp32(model_file, tmp_path / "micro.onnx")
    onnx.checker.check_model(onnx.load(str(path)))
    direct = compile_model(run / "model.pt", "stm32f746", tmp_path / "direct", name="micro")
    via_onnx = compile_onnx(path, "stm32f746", tmp_path / "onnx", name="micro")
    imported = load_model(tmp_path / "onnx" / "model.pt")
    assert imported.arch == model_file.arch and imported.calibration == model_file.calibration
    assert imported.dataset == model_file.dataset
    ours, theirs = model_file.model.state_dict(), imported.model.state_dict()
    # The exporter folds the class token into position 0: class token + position 0 is what the model uses.
    for key in ours:
        if key not in ("cls_token", "pos_embed"):
            assert torch.equal(ours[key], theirs[key]), key
    assert torch.equal(ours["pos_embed"][:, 1:], theirs["pos_embed"][:, 1:])
    cls_row = ours["cls_token"] + ours["pos_embed"][:, :1]
    assert torch.allclose(cls_row, theirs["cls_token"] + theirs["pos_embed"][:, :1], rtol=0, atol=1e-7)
    assert model_hash(via_onnx.graph) == model_hash(direct.graph)
    assert via_onnx.plan.arena_bytes == direct.plan.arena_bytes
    assert via_onnx.report.flash_bytes == direct.report.flash_bytes


@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("gelu", ["erf", "tanh"])
@pytest.mark.parametrize("form", ["conv-layernorm", "matmul-patches", "decomposed-layernorm"])
def test_export_forms_are_recognised(tmp_path, opset, gelu, form):
    arch = dataclasses.replace(SMALL, gelu=gelu, pool="mean" if form == "matmul-patches" else "cls")
    ref, alt = rewritten_vit(arch, matmul_patches=form == "matmul-patches", decomposed_norm=form.startswith("dec"))
    path = export(alt, (1, 28, 28), tmp_path / "alt.onnx", opset)
    ops = _ops(path)
    # Pin which form the exporter really wrote, so each case tests what it says.
    assert ("Conv" in ops) == (form != "matmul-patches")
    assert ("LayerNormalization" in ops) == (form != "decomposed-layernorm")
    assert ("Gelu" in ops) == (opset >= 20)
    assert ("Erf" in ops) == (opset < 20 and gelu == "erf") and ("Tanh" in ops) == (opset < 20 and gelu == "tanh")
    imported = read_onnx(path)
    assert imported.model.arch == arch
    assert imported.max_error < 1e-5
    pixels = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(imported.model(pixels), ref(pixels), atol=1e-5, rtol=0)
    for key, value in ref.state_dict().items():
        if key not in ("cls_token", "pos_embed"):
            assert torch.allclose(imported.model.state_dict()[key], value, atol=1e-7, rtol=1e-6), key


def test_separate_qkv_linears_are_recognised(tmp_path):
    arch = dataclasses.replace(SMALL, ranks=(LayerRanks(proj=8),) * SMALL.depth)
    ref, alt = rewritten_vit(arch, separate_qkv=True)
    imported = read_onnx(export(alt, (1, 28, 28), tmp_path / "qkv.onnx"))
    assert imported.model.arch == arch
    for key, value in ref.state_dict().items():
        if key not in ("cls_token", "pos_embed"):
            assert torch.allclose(imported.model.state_dict()[key], value, atol=1e-7, rtol=1e-6), key


@pytest.mark.parametrize(("pool", "fused", "layer_scale"), [("token", True, None), ("token", False, 0.5),
                                                            ("avg", True, None)])  # fmt: skip
def test_timm_vit_maps_exactly(tmp_path, pool, fused, layer_scale):
    model = timm_vit(pool, fused, init_values=layer_scale)
    path = export(model, (1, 28, 28), tmp_path / "timm.onnx")
    imported = read_onnx(path)
    arch = imported.model.arch
    assert (arch.depth, arch.embed_dim, arch.num_heads, arch.mlp_ratios) == (2, 32, (2, 2), (4.0, 4.0))
    assert arch.pool == ("cls" if pool == "token" else "mean") and arch.norm_eps == 1e-6 and arch.gelu == "erf"
    pixels = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.allclose(imported.model(pixels), model(pixels), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["timm", "matmul-decomposed-tanh"])
def test_dynamo_exporter_output_is_recognised(tmp_path, kind):
    model = _device_model(kind)
    path = export(model, (1, 28, 28), tmp_path / "dynamo.onnx", opset=None, dynamo=True)
    imported = read_onnx(path)
    assert imported.max_error < 1e-5
    pixels = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.allclose(imported.model(pixels), model(pixels), atol=1e-5, rtol=0)


def _device_model(kind: str) -> nn.Module:
    if kind == "timm":
        return timm_vit("token")
    arch = dataclasses.replace(SMALL, gelu="tanh", pool="mean")  # every non-default form in one model
    return rewritten_vit(arch, matmul_patches=True, decomposed_norm=True)[1]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["timm", "matmul-decomposed-tanh"])
def test_onnx_vit_compiles_and_runs_bit_exact_on_qemu(tmp_path, capsys, kind):
    path = export(_device_model(kind), (1, 28, 28), tmp_path / "vit.onnx")
    build = tmp_path / "build"
    args = ["compile", str(path), "--board", "stm32f746", "--calib", "fashion-mnist", "--calib-images", "64",
            "-o", str(build)]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    report = json.loads((build / "memory_report.json").read_text())
    assert report["sram_bytes"] <= report["sram_budget"] and report["flash_bytes"] <= report["flash_budget"]
    result = evaluate_build(build, "qemu-m7", limit=8)
    assert result.images == 8 and result.logits_exact == 1.0
    assert result.memory is not None and result.memory.measured_arena == report["arena_bytes"]
    assert result.top1_agreement_fp32_int8 >= 0.5  # the int8 model follows the fp32 one (random weights)


class _ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def _one_line_error(path) -> str:
    with pytest.raises(OnnxImportError) as err:
        read_onnx(path)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_conv_net_fails_naming_the_node_and_op(tmp_path, capsys):
    path = export(_ConvNet(), (1, 28, 28), tmp_path / "convnet.onnx")
    message = _one_line_error(path)
    assert "(Relu) is not supported" in message and "supported op types:" in message
    assert main(["compile", str(path), "--calib", "fashion-mnist", "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mcuformer: error: node ") and len(err.splitlines()) == 1


def test_vit_with_batchnorm_fails_naming_the_node(tmp_path):
    class BatchNormTokens(nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(x.transpose(1, 2)).transpose(1, 2)

    _, model = rewritten_vit(SMALL)
    model.blocks[0].norm1 = BatchNormTokens(SMALL.embed_dim)  # type: ignore[assignment]
    message = _one_line_error(export(model, (1, 28, 28), tmp_path / "bn.onnx"))
    assert "(BatchNormalization) is not supported" in message


def test_padded_conv_patch_embedding_fails_naming_the_conv(tmp_path):
    _, model = rewritten_vit(SMALL)
    model.patch_embed.proj = nn.Conv2d(1, SMALL.embed_dim, 7, stride=7, padding=3)  # still 4 x 4 tokens
    message = _one_line_error(export(model, (1, 28, 28), tmp_path / "pad.onnx"))
    assert (
        message.startswith("node ")
        and "(Conv) is not supported: a convolution is only supported as the patch" in message
    )


def test_class_token_with_mean_pooling_is_rejected(tmp_path):
    model = timm_vit("token")
    model.global_pool = "avg"  # timm averages the patch tokens and leaves the class token out: no exact mapping
    message = _one_line_error(export(model, (1, 28, 28), tmp_path / "clsavg.onnx"))
    assert "is not supported" in message


def test_input_normalisation_is_read_from_the_graph_or_given(tmp_path):
    ref, alt = rewritten_vit(SMALL)
    imported = read_onnx(export(alt, (1, 28, 28), tmp_path / "m.onnx"))
    assert np.allclose(imported.model.pixel_mean.reshape(-1).numpy(), [0.25])
    assert np.allclose(imported.model.pixel_std.reshape(-1).numpy(), [0.5])
    # A timm model takes normalised input: the user says how the pixels were normalised.
    given = read_onnx(export(timm_vit("token"), (1, 28, 28), tmp_path / "t.onnx"), pixel_mean=(0.3,), pixel_std=(0.2,))
    assert np.allclose(given.model.pixel_mean.reshape(-1).numpy(), [0.3])
    assert np.allclose(given.model.pixel_std.reshape(-1).numpy(), [0.2])
