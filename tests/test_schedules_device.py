"""Memory schedules on the emulated Cortex-M7: the arena the firmware reserves is the plan, outputs stay exact.

Covers the demo architecture under the default (fused) schedule and the streaming-input schedule, where the host
sends the image one patch row at a time and the device never holds it whole.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

from mcuformer.arch import PRESETS, ArchConfig
from mcuformer.checkpoint import DatasetMeta, ModelFile, save_model
from mcuformer.codegen.build_dir import read_manifest
from mcuformer.codegen.code_size import DSP_SWITCHES
from mcuformer.codegen.compiler import DEFAULT_BUDGETS, Budgets, compile_model, plan_arch
from mcuformer.codegen.lower import Variants
from mcuformer.codegen.scratch import BLOCKS_DEFAULT, ONE_TOKEN
from mcuformer.data import load_dataset, pixels_to_tensor
from mcuformer.device.build import build_firmware
from mcuformer.device.errors import DeviceProtocolError, DeviceRejected
from mcuformer.device.protocol import Msg
from mcuformer.device.qemu import qemu_session
from mcuformer.device.runner import run_images
from mcuformer.model import VisionTransformer
from mcuformer.quant import reference
from mcuformer.quant.ptq import calibrate

N_IMAGES = 12
ONCE, HEADS = "attention_block_heads_once", "attention_block_heads"


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return load_dataset("fashion-mnist", "test").images[:N_IMAGES]


def _model_file(preset: str | ArchConfig, images: np.ndarray) -> ModelFile:
    """The preset with seeded random weights, calibrated on real images: memory and exactness need no training."""
    arch = PRESETS[preset] if isinstance(preset, str) else preset
    torch.manual_seed(0)
    model = VisionTransformer(arch, [0.286], [0.353]).eval()
    meta = DatasetMeta("fashion-mnist", (0.286,), (0.353,), tuple(str(i) for i in range(10)))
    return ModelFile(model, calibrate(model, pixels_to_tensor(images)), meta, {})


def _compile(preset: str | ArchConfig, schedule: str, images: np.ndarray, tmp_path,
             budgets: Budgets = DEFAULT_BUDGETS):  # fmt: skip
    model_path = tmp_path / "model.pt"
    save_model(_model_file(preset, images), model_path)
    name = preset if isinstance(preset, str) else preset.name
    return compile_model(model_path, "qemu-m7", tmp_path / "build", name=name.replace("-", "_"), schedule=schedule,
                         budgets=budgets)  # fmt: skip


@pytest.mark.parametrize(("preset", "schedule"), [("fmnist-small", "fused"), ("fmnist-small", "stream")])
def test_arena_on_the_device_equals_the_plan_and_logits_stay_exact(preset, schedule, images, tmp_path):
    compiled = _compile(preset, schedule, images, tmp_path)
    predicted = plan_arch(PRESETS[preset], "qemu-m7", schedule)
    assert compiled.report.arena_bytes == predicted.arena_bytes  # the weightless plan is what compile emits
    firmware = build_firmware(compiled.out_dir)
    expected = reference.predict(compiled.qmodel, images)
    with qemu_session(firmware.elf) as session:
        hello = session.link.info
        assert hello is not None
        assert hello.stream_rows == (PRESETS[preset].grid if schedule == "stream" else 0)
        run = run_images(session.link, reference.quantize_pixels(images), firmware.manifest)
    np.testing.assert_array_equal(run.logits, expected)
    assert run.memory.arena_bytes == hello.arena_bytes == predicted.arena_bytes  # to the byte
    assert firmware.size.arena_symbol_bytes == predicted.arena_bytes  # mcf_arena in the ELF
    total = run.memory.arena_bytes + run.memory.stack_high_water + run.memory.static_bytes
    assert total <= predicted.sram_bytes  # the prediction's stack reserve and runtime statics bound the rest
    assert firmware.size.flash_bytes <= predicted.flash_bytes == compiled.report.flash_bytes  # the search trusts it
    assert all(count > 0 for count in run.counts)


# The speed plan's SRAM on fmnist-small (every block normalises once), less one byte: the tight budget. Its flash
# with no linear widened, plus 24,000 B: room for the widened paths and speed loops (about 5 KB of code) and four
# 48 x 96 linears (4,608 B each), not five.
FAST_SRAM = plan_arch(PRESETS["fmnist-small"], "qemu-m7").sram_bytes
NARROW_FLASH = plan_arch(PRESETS["fmnist-small"], "qemu-m7", "fused", Budgets(variants=Variants(ONCE))).flash_bytes
LINEARS = 6 * PRESETS["fmnist-small"].depth  # q, k, v, proj, fc1, fc2 (full rank)
# The memory plan's SRAM, less one byte: only one token at a time fits.
MEMORY_SRAM = plan_arch(PRESETS["fmnist-small"], "qemu-m7", "fused", Budgets(optimize="memory")).sram_bytes


@pytest.mark.parametrize(("sram", "flash", "kind", "widened", "block_tokens"),
                         [(None, None, ONCE, LINEARS, BLOCKS_DEFAULT),
                          (FAST_SRAM - 1, None, HEADS, LINEARS, BLOCKS_DEFAULT),
                          (None, NARROW_FLASH + 24_000, ONCE, 4, BLOCKS_DEFAULT),
                          (MEMORY_SRAM - 1, None, HEADS, 0, ONE_TOKEN)])  # fmt: skip
def test_speed_plans_fit_on_the_device_under_loose_and_tight_budgets(sram, flash, kind, widened, block_tokens, images,
                                                                     tmp_path):  # fmt: skip
    """--optimize speed: the board's budget buys the attention kernel that normalises once and widens every
    linear; one byte less SRAM keeps the smaller kernel; a tight flash budget widens only what fits; less SRAM than
    the memory plan's runs one token at a time. Either way the device's SRAM and the ELF's flash stay within what
    the plan promised, the logits exact."""
    budgets = Budgets(sram=sram, flash=flash)
    compiled = _compile("fmnist-small", "fused", images, tmp_path, budgets)
    assert {op.kind for op in compiled.graph.ops if op.kind.startswith("attention")} == {kind}
    assert compiled.graph.meta["block_tokens"] == block_tokens
    assert len(compiled.graph.meta["widened"]) == widened
    predicted = plan_arch(PRESETS["fmnist-small"], "qemu-m7", "fused", budgets)
    assert (predicted.sram_bytes, predicted.flash_bytes) == (compiled.report.sram_bytes, compiled.report.flash_bytes)
    assert compiled.report.sram_bytes <= (sram or compiled.report.sram_budget)
    assert compiled.report.flash_bytes <= (flash or compiled.report.flash_budget)
    firmware = build_firmware(compiled.out_dir)
    with qemu_session(firmware.elf) as session:
        run = run_images(session.link, reference.quantize_pixels(images), firmware.manifest)
    np.testing.assert_array_equal(run.logits, reference.predict(compiled.qmodel, images))
    assert run.memory.arena_bytes == predicted.arena_bytes
    assert run.memory.arena_bytes + run.memory.stack_high_water + run.memory.static_bytes <= predicted.sram_bytes
    assert firmware.size.flash_bytes <= predicted.flash_bytes


# 7 x 7 patches, 8 channels in 2 heads: the patch embedding is the plan's peak, so speed mode buys its token blocks'
# scratch.
PATCH_PEAK = ArchConfig.uniform(image_size=28, channels=1, patch_size=7, embed_dim=8, depth=1, num_heads=2,
                                mlp_ratio=2, num_classes=10, pool="mean", name="patch_peak")  # fmt: skip


@pytest.mark.parametrize("optimize", ["memory", "speed"])
def test_patch_rows_in_token_blocks_at_the_peak_fit_on_the_device(optimize, images, tmp_path):
    """Where the patch embedding is the graph's peak, memory mode leaves its token blocks out and speed mode takes
    them (their scratch raises the arena): the device's arena is the plan's either way, its SRAM and the ELF's flash
    within the promise, the logits exact."""
    budgets = Budgets(optimize=optimize)
    compiled = _compile(PATCH_PEAK, "fused", images, tmp_path, budgets)
    assert compiled.graph.meta["patch_blocks"] is (optimize == "speed")
    predicted = plan_arch(PATCH_PEAK, "qemu-m7", "fused", budgets)
    firmware = build_firmware(compiled.out_dir)
    with qemu_session(firmware.elf) as session:
        run = run_images(session.link, reference.quantize_pixels(images), firmware.manifest)
    np.testing.assert_array_equal(run.logits, reference.predict(compiled.qmodel, images))
    assert run.memory.arena_bytes == predicted.arena_bytes == compiled.report.arena_bytes
    assert run.memory.arena_bytes + run.memory.stack_high_water + run.memory.static_bytes <= predicted.sram_bytes
    assert firmware.size.flash_bytes <= predicted.flash_bytes


def test_streaming_holds_one_strip_and_rejects_a_whole_image(images, tmp_path):
    arch = PRESETS["fmnist-small"]
    compiled = _compile("fmnist-small", "stream", images, tmp_path)
    strip = arch.patch_size * arch.image_size * arch.channels
    image = arch.image_size**2 * arch.channels
    sizes = {b.name: b.size for b in compiled.plan.buffers}
    assert sizes["image_rows"] == strip < image and "image" not in sizes
    assert plan_arch(PRESETS["mcuformer-240"], "stm32f746", "stream").arena_bytes < plan_arch(
        PRESETS["mcuformer-240"], "stm32f746", "fused").arena_bytes  # fmt: skip
    firmware = build_firmware(compiled.out_dir)
    pixels = reference.quantize_pixels(images[:2])
    with qemu_session(firmware.elf) as session:
        link = session.link
        with pytest.raises((DeviceRejected, DeviceProtocolError)):
            link.request(Msg.INFER, pixels[0].tobytes(), retries=0)
        first = link.infer(pixels[0])
        # A HELLO in the middle of an image restarts it: the next strip is row 0 again.
        link.request(Msg.INFER_ROW, pixels[1].tobytes()[:strip])
        link.hello()
        again = link.infer(pixels[0])
    assert first.logits == again.logits == reference.predict(compiled.qmodel, images[:1])[0].tobytes()


# 2 x 2 patches and mean pooling: 4 tokens, under MCF_FUSED_BLOCK_MIN_TOKENS; 15 channels (an odd out_ch).
SHORT = ArchConfig.uniform(image_size=28, channels=1, patch_size=14, embed_dim=15, depth=1, num_heads=3, mlp_ratio=2,
                           num_classes=10, pool="mean", name="short")  # fmt: skip
LEAN = DSP_SWITCHES


# micro (17 tokens) gets widened weights and the once kernel (speed mode, loose flash): the widened paths, speed
# loops and widened K and V stay; the short model has nothing to widen (one token at a time).
@pytest.mark.parametrize(("arch", "kept"),
                         [(SHORT, ("MCF_DSP_FUSED_ONE_TOKEN", "MCF_DSP_PATCH_PAIRS", "MCF_DSP_CHANNEL_TAIL")),
                          (PRESETS["micro"], ("MCF_DSP_WIDENED", "MCF_DSP_CHANNEL_TAIL", "MCF_DSP_SPEED_LOOPS",
                                              "MCF_DSP_WIDE_KV"))],
                         ids=["short", "micro"])  # fmt: skip
def test_kernel_paths_are_in_the_image_exactly_when_a_model_takes_them(arch, kept, images, tmp_path):
    """The paths a model never takes are compiled out (the fused kernels' one-token chain under 16 tokens, the
    linear's pair cores, the pair patch embedding, the widened-weight paths, the channel loop for leftover
    inputs): smaller code, the same logits. A short model with 14 x 14 patches and 15 channels keeps the one-token
    chain, the pair kernel and the leftover loop; micro's speed plan peaks in its attention blocks, so its 7 x 7
    patches (49 inputs) run in token blocks, with the leftover loop. All stay exact, and the flash promise holds
    every way."""
    one_token = "MCF_DSP_FUSED_ONE_TOKEN" in kept
    compiled = _compile(arch, "fused", images, tmp_path)
    defines = read_manifest(compiled.out_dir)["kernel_defines"]
    assert defines == {name: 0 for name in LEAN if name not in kept}
    firmware = build_firmware(compiled.out_dir)
    symbols = subprocess.run(["arm-none-eabi-nm", str(firmware.elf)], check=True, capture_output=True, text=True)
    assert ("mcf_attention_row_s8" in symbols.stdout) == one_token  # only the one-token chain calls it
    assert "__udivmoddi4" not in symbols.stdout  # the DSP kernels divide in 32 bits
    with qemu_session(firmware.elf) as session:
        run = run_images(session.link, reference.quantize_pixels(images), firmware.manifest)
    np.testing.assert_array_equal(run.logits, reference.predict(compiled.qmodel, images))
    assert firmware.size.flash_bytes <= compiled.report.flash_bytes
