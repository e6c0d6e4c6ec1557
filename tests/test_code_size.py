"""The flash estimate's code table is an upper bound of what the cross compiler really emits."""

import subprocess

import pytest

from mcuformer.arch import PRESETS, ArchConfig
from mcuformer.codegen.code_size import (
    DSP_SWITCHES,
    KERNEL_TEXT_BYTES,
    LEAN_TEXT_BYTES,
    ONE_TOKEN_ONLY_LINKS,
    kernel_defines,
    kind_symbols,
    text_bytes,
)
from mcuformer.codegen.host_build import KERNEL_INCLUDE, kernel_sources
from mcuformer.codegen.ir import Graph
from mcuformer.codegen.lower import Variants, fused_linears, lower
from mcuformer.codegen.ops import OPS
from mcuformer.codegen.scratch import ONE_TOKEN
from mcuformer.quant.placeholder import placeholder_qvit

M7_FLAGS = ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16", "-O2", "-ffunction-sections"]


@pytest.mark.parametrize("variant", ["portable", "dsp"])
def test_kernel_text_sizes_stay_within_the_estimate(tmp_path, variant):
    sizes: dict[str, int] = {}
    for source in kernel_sources(variant):
        obj = tmp_path / f"{source.parent.name}_{source.stem}.o"
        subprocess.run(["arm-none-eabi-gcc", *M7_FLAGS, f"-I{KERNEL_INCLUDE}", "-c", str(source), "-o", str(obj)],
                       check=True)  # fmt: skip
        nm = subprocess.run(["arm-none-eabi-nm", "-S", str(obj)], check=True, capture_output=True, text=True)
        fields = [line.split() for line in nm.stdout.splitlines()]  # address size kind name
        code = [(kind, name, int(size, 16)) for _, size, kind, name in (f for f in fields if len(f) == 4)
                if kind in ("T", "t")]  # fmt: skip
        public = [name for kind, name, _ in code if kind == "T"]
        support = source.stem.startswith(f"mcf_{variant}_")  # helpers shared by the variant's kernels: one unit
        assert support or len(public) == 1, f"{source.name}: one public function per file, got {public}"
        # The file's static helpers (those the compiler did not inline) count towards its one public function.
        sizes[source.stem if support else public[0]] = sum(size for _, _, size in code)
    every_symbol = {s for kind in OPS.values() for s in kind.symbols}
    dsp_support = {s.stem for s in kernel_sources("dsp") if s.stem.startswith("mcf_dsp_")}
    assert dsp_support == {"mcf_dsp_block", "mcf_dsp_fused", "mcf_dsp_heads", "mcf_dsp_layernorm"}
    other_variants_support = dsp_support if variant == "portable" else set()
    assert all(text_bytes(unit, variant) == 0 for unit in other_variants_support)  # not in this variant's image
    assert every_symbol - set(sizes) == other_variants_support, every_symbol - set(sizes)
    for symbol, size in sizes.items():
        assert symbol in KERNEL_TEXT_BYTES, f"{symbol} has no code-size estimate"
        bound = text_bytes(symbol, variant)
        assert size <= bound, f"{symbol}: {size} B > estimate {bound} B in the {variant} kernels"


def _objects(tmp_path, variant: str, defines: dict[str, int]) -> dict[str, tuple[int, set[str], set[str]]]:
    """Per kernel unit (public symbol, or the support file's stem): (.text bytes, symbols defined, undefined)."""
    flags = [f"-D{name}={value}" for name, value in defines.items()]
    units: dict[str, tuple[int, set[str], set[str]]] = {}
    for source in kernel_sources(variant):
        obj = tmp_path / f"{source.parent.name}_{source.stem}.o"
        subprocess.run(["arm-none-eabi-gcc", *M7_FLAGS, *flags, f"-I{KERNEL_INCLUDE}", "-c", str(source), "-o",
                        str(obj)], check=True)  # fmt: skip
        nm = subprocess.run(["arm-none-eabi-nm", "-S", str(obj)], check=True, capture_output=True, text=True)
        fields = [line.split() for line in nm.stdout.splitlines()]
        code = [(kind, name, int(size, 16)) for _, size, kind, name in (f for f in fields if len(f) == 4)
                if kind in ("T", "t")]  # fmt: skip
        public = {name for kind, name, _ in code if kind == "T"}
        undefined = {f[1] for f in fields if len(f) == 2 and f[0] == "U" and f[1].startswith("mcf_")}
        unit = source.stem if source.stem.startswith(f"mcf_{variant}_") else next(iter(public))
        units[unit] = (sum(size for _, _, size in code), public, undefined)
    return units


def test_compiled_out_paths_shrink_the_kernels_within_their_bounds(tmp_path):
    """Each set of DSP switches off: the kernels it names are within their smaller bounds, and the bounds stay
    tight (within 25% + 16 B of the real size); the portable variant has no switches."""
    full = _objects(tmp_path, "dsp", {})
    assert set(DSP_SWITCHES) == {name for switches in LEAN_TEXT_BYTES for name in switches}
    for switches, bounds in LEAN_TEXT_BYTES.items():
        off = dict.fromkeys(switches, 0)
        units = _objects(tmp_path, "dsp", off)
        for symbol, bound in bounds.items():
            size = units[symbol][0]
            assert size <= bound == text_bytes(symbol, "dsp", off), (switches, symbol, size, bound)
            assert bound <= size * 1.25 + 16, (switches, symbol, size, bound)
            assert size < full[symbol][0], (switches, symbol)  # the switch removes code
            assert text_bytes(symbol, "portable", off) == text_bytes(symbol, "portable", {})  # no switch there


@pytest.mark.parametrize("defines", [{}, dict.fromkeys(DSP_SWITCHES, 0)], ids=["complete", "lean"])
def test_every_kernel_an_op_kind_calls_is_among_the_symbols_it_counts(tmp_path, defines):
    """The closure of what each op kind's kernels call, in the DSP build with and without the switches: every
    kernel unit they reference is in kind_symbols, so dropping links (ONE_TOKEN_ONLY_LINKS) never drops code
    the image still needs."""
    units = _objects(tmp_path, "dsp", defines)
    owner = {symbol: unit for unit, (_, public, _) in units.items() for symbol in public}
    for kind in OPS:
        counted = set(kind_symbols(kind, "dsp", defines))
        for unit in counted:
            needed = {owner[symbol] for symbol in units[unit][2]}
            assert needed <= counted, (kind, unit, needed - counted)
    if defines:  # the one-token links really are gone: nothing the heads kinds count references them
        for kind, dropped in ONE_TOKEN_ONLY_LINKS.items():
            assert set(dropped) <= set(OPS[kind].symbols) and not set(dropped) & set(kind_symbols(kind, "dsp", defines))


def _graph(arch: ArchConfig, schedule: str = "fused") -> Graph:
    return lower(placeholder_qvit(arch), arch.name, schedule)


def test_kernel_defines_turn_off_only_the_paths_a_graph_never_takes():
    long = _graph(PRESETS["fmnist-small"])  # 49 tokens, a 7-patch grid, 48 channels; one linear: the head
    assert kernel_defines(long) == dict.fromkeys(("MCF_DSP_FUSED_ONE_TOKEN", "MCF_DSP_LINEAR_PAIRS",
                                                  "MCF_DSP_PATCH_PAIRS", "MCF_DSP_WIDENED", "MCF_DSP_CHANNEL_TAIL",
                                                  "MCF_DSP_WIDE_KV", "MCF_DSP_SPEED_LOOPS"), 0)  # fmt: skip
    short = _graph(SHORT)  # 4 tokens: the fused kernels take the one-token chain; 14 x 14 patches, 15 channels
    assert kernel_defines(short) == dict.fromkeys(("MCF_DSP_LINEAR_PAIRS", "MCF_DSP_WIDENED", "MCF_DSP_WIDE_KV",
                                                   "MCF_DSP_SPEED_LOOPS"), 0)  # fmt: skip
    qvit = placeholder_qvit(PRESETS["fmnist-small"])  # one widened linear keeps the widened paths
    widened = lower(qvit, "m", "fused", Variants(widened=(fused_linears(qvit)[0],)))
    assert "MCF_DSP_WIDENED" not in kernel_defines(widened) and "MCF_DSP_SPEED_LOOPS" not in kernel_defines(widened)
    once = lower(qvit, "m", "fused", Variants(attention="attention_block_heads_once"))  # its widened K and V
    assert "MCF_DSP_WIDE_KV" not in kernel_defines(once)
    one_token = lower(qvit, "m", "fused", Variants(block_tokens=ONE_TOKEN))  # the variant keeps the chain
    assert "MCF_DSP_FUSED_ONE_TOKEN" not in kernel_defines(one_token)
    layer = _graph(PRESETS["fmnist-small"], "layer")  # linears on every token
    assert "MCF_DSP_LINEAR_PAIRS" not in kernel_defines(layer)


SHORT = ArchConfig.uniform(image_size=28, channels=1, patch_size=14, embed_dim=15, depth=1, num_heads=3, mlp_ratio=2,
                           num_classes=10, pool="mean", name="short")  # fmt: skip
