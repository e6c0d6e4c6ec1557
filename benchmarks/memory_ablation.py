"""Peak SRAM of the reference architectures, one scheduling technique at a time, against the bound and TFLite Micro.

    python benchmarks/memory_ablation.py [--out docs/memory_ablation.md] [--no-tflm]

Arena bytes from the one planner (`mcuformer.codegen.compiler.plan_arch`, no weights needed), per schedule of
`mcuformer.codegen.lower.SCHEDULES`, each adding one technique to the one before:
- `naive`: layer by layer, every op's input and output live together, attention keeps heads x N x N scores
  (what a layer-by-layer interpreter holds);
- `+integration` (schedule `integrated`): operator integration: LayerNorm, low-rank factors, GELU,
  requantization and the residual add fused so the MLP runs token by token and attention query by query; K and V
  the only full-sequence buffers; each block reads its input and writes a separate output token matrix;
- `+overwriting` (schedule `blocks`): token overwriting: block outputs written over the residual stream, token by
  token, so input and output never coexist;
- `+decomposition` (schedule `fused`, the default): patch-embedding decomposition: patch rows embedded one at a
  time, tokens written over image rows already consumed.
`bound` = the bytes the full schedule cannot avoid, from the architecture alone (no planner): per block the residual
stream + K and V (all heads, or one head's plus every token's context, whichever is smaller) + the kernel's
per-token scratch, the MLP's residual stream + scratch, and max(tokens, image) + one patch row of tokens at the
patch embedding. `SRAM` = the full
schedule's arena + stack reserve + runtime statics (everything our firmware needs). `TFLM arena` = TensorFlow Lite
Micro's recorded tensor arena (activations + persistent data, its stack not counted) for the same architecture,
converted to full-int8 .tflite (tflite-micro from PyPI; the arena does not depend on the weights' values).
`streaming input` (schedule `stream`, optional): the full schedule with the image sent over serial one patch row
at a time, so the device holds one strip of image rows instead of the image; bound: max(attention as above,
tokens + one strip).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from mcuformer.arch import PRESETS, ArchConfig
from mcuformer.codegen.compiler import graph_for_arch, plan_arch
from mcuformer.codegen.lower import decomposed_image_offset
from mcuformer.codegen.planner import plan_memory
from mcuformer.codegen.scratch import (
    attention_block_heads_scratch_bytes,
    attention_block_scratch_bytes,
    mlp_block_scratch_bytes,
    patch_embed_rows_scratch_bytes,
)

REFERENCE = ("cifar-p4-d64", "fmnist-small", "fmnist-lowrank", "mcuformer-240")
LADDER = (("naive", "naive"), ("+integration", "integrated"), ("+overwriting", "blocks"), ("+decomposition", "fused"))
BOARD = "stm32f746"


def _align(n: int) -> int:
    return (n + 3) // 4 * 4


def bound(arch: ArchConfig, schedule: str = "fused") -> int:
    """Bytes the schedule cannot avoid, from the architecture alone: the largest of, per block, the residual
    stream + the cheaper of K and V for all heads or one head's K and V + every token's context, + the kernel's
    per-token scratch; the MLP's residual stream + scratch; and the patch embedding's image (or strip) + tokens."""
    tokens = _align(arch.num_tokens * arch.embed_dim)
    n, d = arch.num_tokens, arch.embed_dim
    peak = 0
    for layer in range(arch.depth):
        heads, ranks = arch.num_heads[layer], arch.ranks[layer]
        qkv, proj = ranks.qkv or 0, ranks.proj or 0
        all_heads = 2 * tokens + attention_block_scratch_bytes(n, d, heads, qkv, proj)
        per_head = tokens + 2 * _align(n * (d // heads)) + attention_block_heads_scratch_bytes(n, d, heads, qkv, proj)
        mlp = mlp_block_scratch_bytes(n, d, arch.mlp_hidden(layer), ranks.fc1 or 0, ranks.fc2 or 0)
        peak = max(peak, tokens + min(all_heads, per_head), tokens + mlp)
    if schedule == "stream":  # the tokens and one strip of patch_size image rows
        return max(peak, tokens + _align(arch.patch_size * arch.image_size * arch.channels))
    image = _align(arch.image_size**2 * arch.channels)
    offset = decomposed_image_offset(arch)
    row = patch_embed_rows_scratch_bytes(arch.image_size, arch.image_size, arch.channels, arch.patch_size, d)
    return max(peak, tokens + image if offset is None else max(tokens, offset + image) + row)


def tflm_arena(arch: ArchConfig) -> int:
    from mcuformer.model import VisionTransformer
    from mcuformer.peers.tflm import TflmModel, convert_int8

    torch.manual_seed(0)
    model = VisionTransformer(arch, [0.5] * arch.channels, [0.25] * arch.channels).eval()
    images = np.random.default_rng(0).integers(0, 256, (8, arch.image_size, arch.image_size, arch.channels))
    return TflmModel(convert_int8(model, images.astype(np.uint8))).arena().total_bytes


def row(name: str, with_tflm: bool) -> str:
    arch = PRESETS[name]
    arenas = [plan_memory(graph_for_arch(arch, "m", schedule)).arena_bytes for _, schedule in LADDER]
    naive, full = arenas[0], arenas[-1]
    steps = " | ".join(f"{a:,}" for a in arenas)
    saved = [before - after for before, after in zip(arenas[:-1], arenas[1:], strict=True)]
    shares = " / ".join(f"{100 * s / naive:.0f}%" for s in saved)
    low = bound(arch)
    report = plan_arch(arch, BOARD)
    stream = plan_arch(arch, BOARD, "stream").arena_bytes
    peer = "n/a | n/a"
    if with_tflm:
        arena = tflm_arena(arch)
        peer = f"{arena:,} | {arena / report.sram_bytes:.1f}x"
    return (f"| {name} | {arch.num_tokens} x {arch.embed_dim} | {steps} | {shares} | {naive / full:.2f}x | {low:,} "
            f"| {full / low:.3f} | {report.sram_bytes:,} | {peer} | {report.peak_op} "
            f"| {stream:,} | {stream / bound(arch, 'stream'):.3f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the table as markdown here")
    parser.add_argument("--no-tflm", action="store_true", help="skip the TFLite Micro column (no tensorflow)")
    args = parser.parse_args()
    names = " | ".join(f"{label} B" for label, _ in LADDER)
    header = (f"| model | tokens x dim | {names} | share of naive saved by each step | total saving | bound B "
              "| full / bound | SRAM B | TFLM arena B | TFLM / SRAM | peak op | streaming input B "
              "| streaming / bound |")  # fmt: skip
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    lines += [row(name, not args.no_tflm) for name in REFERENCE]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        command = f"python benchmarks/memory_ablation.py --out {args.out}"
        notes = __doc__.split(chr(10), 3)[3]
        args.out.write_text(f"# Memory ablation\n\nRegenerate: `{command}`\n\n{notes}\n{table}\n")


if __name__ == "__main__":
    main()
