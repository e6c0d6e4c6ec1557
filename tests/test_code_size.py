"""The flash estimate's code table is an upper bound of what the cross compiler really emits."""

import subprocess

import pytest

from mcuformer.codegen.code_size import KERNEL_TEXT_BYTES, text_bytes
from mcuformer.codegen.host_build import KERNEL_INCLUDE, kernel_sources
from mcuformer.codegen.ops import OPS

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
    assert dsp_support == {"mcf_dsp_block", "mcf_dsp_fused", "mcf_dsp_heads"}
    other_variants_support = dsp_support if variant == "portable" else set()
    assert all(text_bytes(unit, variant) == 0 for unit in other_variants_support)  # not in this variant's image
    assert every_symbol - set(sizes) == other_variants_support, every_symbol - set(sizes)
    for symbol, size in sizes.items():
        assert symbol in KERNEL_TEXT_BYTES, f"{symbol} has no code-size estimate"
        bound = text_bytes(symbol, variant)
        assert size <= bound, f"{symbol}: {size} B > estimate {bound} B in the {variant} kernels"
