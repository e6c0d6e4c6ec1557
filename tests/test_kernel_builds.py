"""The kernel library as a library: its sources, warning-free Cortex-M7 objects with one function each and no
static data, a self-contained public header, and host builds that report compiler errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mcuformer.codegen.host_build import KERNEL_INCLUDE, compile_host, kernel_sources
from mcuformer.errors import McuformerError

ARM_FLAGS = ["-std=c99", "-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16", "-O2"]


def test_kernel_sources_layout() -> None:
    sources = kernel_sources()
    assert [s.stem for s in sources] == sorted(
        ["mcf_linear_s8", "mcf_linear_w16_s8", "mcf_patch_embed_s8", "mcf_add_s8", "mcf_lut_s8", "mcf_layernorm_s8",
         "mcf_softmax_s8",
         "mcf_attention_s8", "mcf_attention_s8_get_buffer_size", "mcf_mean_pool_s8", "mcf_copy_s8",
         "mcf_attention_row_s8", "mcf_attention_block_s8", "mcf_attention_block_s8_get_buffer_size",
         "mcf_attention_block_heads_s8", "mcf_attention_block_heads_s8_get_buffer_size",
         "mcf_attention_block_heads_once_s8", "mcf_attention_block_heads_once_s8_get_buffer_size",
         "mcf_mlp_block_s8", "mcf_mlp_block_s8_get_buffer_size", "mcf_patch_embed_rows_s8",
         "mcf_patch_embed_rows_s8_get_buffer_size"]
    )  # fmt: skip
    for source in sources:
        text = source.read_text()
        assert "float" not in text and "double" not in text and "malloc" not in text, source.name
    with pytest.raises(McuformerError, match="no kernel sources"):
        kernel_sources("no_such_variant")


def test_kernels_cross_compile_for_cortex_m7(tmp_path: Path) -> None:
    """Every kernel builds warning-free for a Cortex-M7, defines exactly one global function (its own) and
    has no static data (.data and .bss empty: no globals, no hidden state)."""
    nm, size = shutil.which("arm-none-eabi-nm"), shutil.which("arm-none-eabi-size")
    for source in kernel_sources():
        obj = tmp_path / f"{source.stem}.o"
        cmd = ["arm-none-eabi-gcc", *ARM_FLAGS, "-Wall", "-Wextra", "-Werror", "-Wconversion", f"-I{KERNEL_INCLUDE}"]
        proc = subprocess.run([*cmd, "-c", str(source), "-o", str(obj)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{source.name}:\n{proc.stderr}"
        if nm:
            symbols = subprocess.run([nm, "--defined-only", "-g", str(obj)], capture_output=True, text=True)
            names = [line.split()[-1] for line in symbols.stdout.splitlines() if line.strip()]
            assert names == [source.stem], f"{source.name} defines {names}"
        if size:
            sizes = subprocess.run([size, str(obj)], capture_output=True, text=True).stdout.splitlines()[1].split()
            text, data, bss = (int(v) for v in sizes[:3])
            assert text > 0 and data == 0 and bss == 0, f"{source.name}: data {data}, bss {bss}"


def test_header_is_self_contained(tmp_path: Path) -> None:
    source = tmp_path / "use.c"
    source.write_text('#include "mcf_fused.h"\n'
                      "int f(void) { mcf_mlp_block_dims d = {1, 8, 16, 0, 0, MCF_FUSED_ONE_TOKEN};\n"
                      "  return mcf_mlp_block_s8_get_buffer_size(&d); }\n")  # fmt: skip
    compile_host([source], tmp_path / "use.o", include_dirs=[KERNEL_INCLUDE], extra_flags=["-c", "-pedantic"])


def test_compile_host_reports_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.c"
    broken.write_text("int f(void) { return undeclared_symbol; }\n")
    with pytest.raises(McuformerError, match="undeclared_symbol"):
        compile_host([broken], tmp_path / "broken.o", extra_flags=["-c"])
    warn = tmp_path / "warn.c"
    warn.write_text("int f(int x) { int unused; return x; }\n")
    with pytest.raises(McuformerError, match="unused"):  # -Werror is on
        compile_host([warn], tmp_path / "warn.o", extra_flags=["-c"])
    ok = tmp_path / "ok.c"
    ok.write_text("int f(int x) { return x; }\n")
    assert compile_host([ok], tmp_path / "sub" / "ok.o", extra_flags=["-c"]).is_file()
