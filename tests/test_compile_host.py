"""End to end on the host: model.pt -> compile -> gcc -> the C equals the numpy reference bit for bit."""

import json
import random
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from mcuformer.arch import PRESETS, ArchConfig
from mcuformer.checkpoint import DatasetMeta, ModelFile, save_model
from mcuformer.cli import SCHEDULE_NAMES, main
from mcuformer.codegen.compiler import compile_model
from mcuformer.codegen.hostrun import build_host_runner, run_host
from mcuformer.codegen.lower import Variants
from mcuformer.data import load_dataset
from mcuformer.evaluate import evaluate_build
from mcuformer.model import VisionTransformer
from mcuformer.quant import reference
from mcuformer.quant.ptq import calibrate


@pytest.fixture(scope="module")
def micro_build(micro_run, tmp_path_factory):
    run, _ = micro_run
    return compile_model(run / "model.pt", "stm32f746", tmp_path_factory.mktemp("build") / "micro")


def test_generated_c_equals_the_reference_on_real_and_random_images(micro_build):
    exe = build_host_runner(micro_build.out_dir)  # -Wall -Wextra -Werror
    test = load_dataset("fashion-mnist", "test")
    images = np.concatenate([test.images[:400], np.random.default_rng(0).integers(0, 256, (100, 28, 28, 1))])
    images = images.astype(np.uint8)
    expected = reference.predict(micro_build.qmodel, images)
    got = run_host(exe, reference.quantize_pixels(images), 10)
    assert got.shape == expected.shape == (500, 10)
    assert np.array_equal(got, expected)
    assert len(np.unique(expected.argmax(1))) > 1  # a model that predicts one class would prove little


@pytest.mark.parametrize("schedule", SCHEDULE_NAMES)
def test_sanitized_build_runs_clean_under_every_schedule(micro_run, schedule, tmp_path):
    """The generated C and the kernels under ASan + UBSan (any report aborts the run), bit-exact, every schedule."""
    compiled = compile_model(micro_run[0] / "model.pt", "stm32f746", tmp_path / schedule, schedule=schedule)
    exe = build_host_runner(compiled.out_dir, sanitize=True)
    images = load_dataset("fashion-mnist", "test").images[:8]
    got = run_host(exe, reference.quantize_pixels(images), 10)
    assert np.array_equal(got, reference.predict(compiled.qmodel, images))


def test_build_folder_is_complete_and_deterministic(micro_run, micro_build, tmp_path):
    out = micro_build.out_dir
    for name in ("src/mcf_model.c", "src/mcf_model.h", "src/mcf_weights.c", "memory_report.json", "model.pt"):
        assert (out / name).is_file(), name
    report = json.loads((out / "memory_report.json").read_text())
    assert report["arena_bytes"] == micro_build.plan.arena_bytes > 0
    assert f"MCF_MODEL_ARENA_BYTES {micro_build.plan.arena_bytes}" in (out / "src/mcf_model.h").read_text()
    again = compile_model(micro_run[0] / "model.pt", "stm32f746", tmp_path / "micro")
    for name in ("mcf_model.c", "mcf_model.h", "mcf_weights.c", "mcf_weights.h"):
        assert (again.out_dir / "src" / name).read_bytes() == (out / "src" / name).read_bytes()


def test_eval_reports_all_three_accuracies(micro_build):
    result = evaluate_build(micro_build.out_dir, limit=300)
    assert result.images == 300 and result.logits_exact == 1.0
    assert result.device_accuracy == result.int8_accuracy
    assert result.fp32_accuracy > 0.3 and abs(result.fp32_accuracy - result.int8_accuracy) < 0.1
    assert (micro_build.out_dir / "eval_host.json").is_file()


def test_cli_errors_are_one_line(micro_run, tmp_path, capsys):
    assert main(["compile", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a model")
    assert main(["compile", str(corrupt), "-o", str(tmp_path / "b")]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert main(["compile", str(micro_run[0] / "model.pt"), "--board", "nosuchboard"]) == 2
    assert "known boards: " in capsys.readouterr().err
    assert main(["train", "--arch", "nosuchpreset"]) == 2
    assert "presets: micro" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arch, message",
    [
        (PRESETS["mcuformer-240"], r"needs [\d,]+ B flash but stm32f746 has 1,048,576 B, over by [\d,]+ B"),
        (
            ArchConfig.uniform(image_size=240, channels=3, patch_size=8, embed_dim=192, depth=1, num_heads=2,
                               mlp_ratio=2, num_classes=10),
            r"needs [\d,]+ B SRAM .* has 327,680 B, over by [\d,]+ B; the peak \([\d,]+ B live\) is set by op b0_",
        ),
    ],
)  # fmt: skip
def test_over_budget_model_fails_with_the_numbers(arch, message, tmp_path, capsys):
    torch.manual_seed(0)
    model = VisionTransformer(arch, [0.5] * 3, [0.25] * 3)
    calib = calibrate(model, torch.rand(2, 3, 240, 240))
    classes = tuple(str(i) for i in range(arch.num_classes))
    save_model(ModelFile(model, calib, DatasetMeta("imagefolder", (0.5,) * 3, (0.25,) * 3, classes)), tmp_path / "m.pt")
    assert main(["compile", str(tmp_path / "m.pt"), "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    assert not (tmp_path / "b" / "src").exists()


def test_help_reads_well(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("train", "compile", "eval", "boards", "demo"):
        assert command in out


def test_cli_offers_every_schedule():
    from mcuformer.cli import SCHEDULE_NAMES
    from mcuformer.codegen.lower import SCHEDULES

    assert sorted(SCHEDULE_NAMES) == sorted(SCHEDULES)


@pytest.mark.parametrize("seed", range(6))
def test_every_schedule_is_bit_exact_on_random_architectures(seed, tmp_path):
    """Random archs (low rank or not, cls or mean pooling), random weights: every schedule's C equals the reference."""
    from test_codegen_plan import _random_arch

    from mcuformer.codegen.emit import write_sources
    from mcuformer.codegen.lower import ATTENTION_KINDS, SCHEDULES, fused_linears, lower
    from mcuformer.codegen.planner import plan_memory
    from mcuformer.codegen.scratch import ONE_TOKEN
    from mcuformer.quant.ptq import quantize_model

    arch = _random_arch(random.Random(100 + seed))
    torch.manual_seed(seed)
    model = VisionTransformer(arch, [0.5] * arch.channels, [0.25] * arch.channels)
    images = np.random.default_rng(seed).integers(0, 256, (40, arch.image_size, arch.image_size, arch.channels))
    images = images.astype(np.uint8)
    qmodel = quantize_model(model, calibrate(model, torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255))
    expected = reference.predict(qmodel, images)
    graphs = {schedule: lower(qmodel, "m", schedule) for schedule in SCHEDULES}
    for kind in ATTENTION_KINDS:  # every attention kernel, whichever the planner would pick
        graphs[kind] = lower(qmodel, "m", "fused", Variants(kind))
    # One kind per block, mixed, every other linear widened (what the speed plan may choose)
    mixed = [ATTENTION_KINDS[i % 3] for i in range(arch.depth)]
    graphs["mixed"] = lower(qmodel, "m", "fused", Variants(mixed, tuple(fused_linears(qmodel)[::2])))
    graphs["one_token"] = lower(qmodel, "m", "fused", Variants(block_tokens=ONE_TOKEN))  # the least memory
    for schedule, graph in graphs.items():
        build = tmp_path / schedule
        write_sources(graph, plan_memory(graph), build / "src")
        got = run_host(build_host_runner(build), reference.quantize_pixels(images), arch.num_classes)
        assert np.array_equal(got, expected), schedule


def test_host_runs_check_every_scratch_against_the_kernels_own_size(tmp_path):
    """MCF_CHECK_SCRATCH: a plan whose scratch differs from the kernel's _get_buffer_size makes the model fail."""

    from mcuformer.arch import PRESETS
    from mcuformer.codegen.emit import write_sources
    from mcuformer.codegen.lower import ATTENTION_KINDS, lower
    from mcuformer.codegen.planner import plan_memory
    from mcuformer.errors import McuformerError
    from mcuformer.quant.placeholder import placeholder_qvit

    arch = PRESETS["micro"]
    image = np.zeros((1, arch.image_size, arch.image_size, arch.channels), np.int8)
    variants = [(kind, kind) for kind in ATTENTION_KINDS] + [
        ("attention_block", k) for k in ("mlp_block", "patch_embed_rows")
    ]
    for attention, kind in variants:
        graph = lower(placeholder_qvit(arch), "m", "fused", Variants(attention))
        op = next(op for op in graph.ops if op.kind == kind)
        spec = graph.tensors[op.scratch[-1]]
        graph.tensors[spec.name] = replace(spec, shape=(spec.shape[0] + 4,))  # 4 bytes too many: still refused
        build = tmp_path / f"{kind}_{attention}"
        write_sources(graph, plan_memory(graph), build / "src")
        with pytest.raises(McuformerError, match="mcf_model_run failed"):
            run_host(build_host_runner(build), image, arch.num_classes)
