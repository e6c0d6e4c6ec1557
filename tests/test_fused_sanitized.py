"""The fused block kernels under AddressSanitizer + UBSan: every buffer and parameter array in its own exact-size
heap block, the results equal reference.run_block (every other block with widened weights and one token at a
time)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from fused_blocks import c_block, random_blocks
from kernel_ctypes import (
    ATTENTION_FIELDS,
)

from mcuformer.codegen.host_build import KERNEL_INCLUDE, compile_host, kernel_sources
from mcuformer.codegen.layout import widen_weights
from mcuformer.quant import reference
from mcuformer.quant.qmodel import QAdd, QBlock, QFactored, QLayerNorm, QLinear

SANITIZED_CASES = 12  # random blocks through the sanitized executable

# ---------------------------------------------------------------------------------------- sanitized build

_C_TYPES = {np.dtype(np.int8): "int8_t", np.dtype(np.int16): "int16_t", np.dtype(np.int32): "int32_t"}


class _Emitter:
    """C source of one test: every array in its own exact-size heap block, the structs filled field by field."""

    def __init__(self) -> None:
        self.decls: list[str] = []
        self.body: list[str] = []
        self.count = 0
        self.widened = False

    def array(self, values: np.ndarray, dtype: type) -> str:
        a: np.ndarray = np.ascontiguousarray(values, dtype=dtype).reshape(-1)
        name = f"a{self.count}"
        self.count += 1
        ctype = _C_TYPES[a.dtype]
        self.decls.append(f"static const {ctype} {name}_init[{a.size}] = {{{', '.join(map(str, a.tolist()))}}};")
        self.body.append(f"{ctype} *{name} = dup({name}_init, sizeof {name}_init);")
        return name

    def linear(self, target: str, layer: QLinear) -> None:
        """Every other block's linears with widened weights (the layout codegen can emit)."""
        if self.widened:
            w16, w = self.array(widen_weights(layer.weight), np.int16), "NULL"
        else:
            w16, w = "NULL", self.array(layer.weight, np.int8)
        b = self.array(layer.bias, np.int32)
        m, s = self.array(layer.mult, np.int32), self.array(layer.shift, np.int8)
        self.body += [
            f"{target}.params.in_zp = {layer.input.zero_point}; {target}.params.out_zp = {layer.output.zero_point};",
            f"{target}.quant.mult = {m}; {target}.quant.shift = {s}; {target}.weight = {w}; "
            f"{target}.weight16 = {w16}; {target}.bias = {b};",
        ]

    def linear_ptr(self, target: str, layer: QLinear | None) -> None:
        if layer is None:
            self.body.append(f"{target} = NULL;")
            return
        name = f"layer{self.count}"
        self.count += 1
        self.body.append(f"mcf_linear_layer *{name} = calloc(1, sizeof *{name});")
        self.linear(f"(*{name})", layer)
        self.body.append(f"{target} = {name};")

    def factored(self, target: str, layer: QFactored) -> None:
        self.linear_ptr(f"{target}.v", layer.v)
        self.linear(f"{target}.u", layer.u)

    def norm(self, target: str, n: QLayerNorm) -> None:
        g, b = self.array(n.gamma, np.int16), self.array(n.beta, np.int32)
        p = f"{target}.params"
        self.body += [
            f"{p}.in_zp = {n.input.zero_point}; {p}.eps = {n.eps}LL; {p}.mult = {n.mult}; "
            f"{p}.shift = {n.shift}; {p}.out_zp = {n.output.zero_point};",
            f"{target}.gamma = {g}; {target}.beta = {b};",
        ]

    def add(self, target: str, a: QAdd) -> None:
        values = (a.a.zero_point, a.b.zero_point, a.a_mult, a.b_mult, a.shift, a.output.zero_point)
        fields = ("a_zp", "b_zp", "a_mult", "b_mult", "shift", "out_zp")
        self.body.append(" ".join(f"{target}.{f} = {v};" for f, v in zip(fields, values, strict=True)))

    def block(self, index: int, block: QBlock, x: np.ndarray) -> None:
        tokens, d = x.shape
        cb = c_block(block, tokens)  # only for the dims
        ad, md = cb.attn_dims, cb.mlp_dims
        self.widened = index % 2 == 1
        self.body.append("{")
        self.body.append(
            f"const mcf_attention_block_dims ad = {{{ad.tokens}, {ad.channels}, {ad.heads}, {ad.qkv_rank}, "
            f"{ad.proj_rank}, {index % 2}}};"  # every other block one token at a time (the least-memory variant)
        )
        self.body.append(
            f"const mcf_mlp_block_dims md = {{{md.tokens}, {md.channels}, {md.hidden}, {md.fc1_rank}, {md.fc2_rank}, "
            f"{index % 2}}};"
        )
        self.body.append("mcf_attention_block_params ap; mcf_mlp_block_params mp;")
        self.norm("ap.norm", block.norm1)
        self.linear_ptr("ap.qkv_v", block.qkv_v)
        for part in "qkv":
            self.linear(f"ap.{part}", getattr(block, part))
        at = block.attn
        values = (at.q.zero_point, at.k.zero_point, at.v.zero_point, at.score_mult, at.score_shift,
                  at.score.zero_point, at.out_mult, at.out_shift, at.output.zero_point)  # fmt: skip
        self.body.append(" ".join(f"ap.attention.{f} = {v};" for f, v in zip(ATTENTION_FIELDS, values, strict=True)))
        self.body.append(f"ap.exp_table = {self.array(at.exp_table, np.int32)};")
        self.factored("ap.proj", block.proj)
        self.add("ap.residual", block.res1)
        self.norm("mp.norm", block.norm2)
        self.factored("mp.fc1", block.fc1)
        self.body.append(f"mp.gelu_table = {self.array(block.gelu_table, np.int8)};")
        self.factored("mp.fc2", block.fc2)
        self.add("mp.residual", block.res2)
        xs = self.array(x, np.int8)
        self.body += [
            f"int8_t *k = malloc({tokens * d}); int8_t *v = malloc({tokens * d});",
            "void *s1 = malloc((size_t)mcf_attention_block_s8_get_buffer_size(&ad));",
            "void *s2 = malloc((size_t)mcf_mlp_block_s8_get_buffer_size(&md));",
            f"if (mcf_attention_block_s8(&ad, &ap, {xs}, k, v, s1) != MCF_OK) return 1{index:03d};",
            f"if (mcf_mlp_block_s8(&md, &mp, {xs}, s2) != MCF_OK) return 2{index:03d};",
            f"fwrite({xs}, 1, {tokens * d}, stdout);",
            "free(k); free(v); free(s1); free(s2);",
            "}",
        ]

    def source(self) -> str:
        head = [
            "#include <stdio.h>", "#include <stdlib.h>", "#include <string.h>", '#include "mcf_fused.h"',
            "static void *dup(const void *src, size_t size) { void *p = malloc(size); memcpy(p, src, size); "
            "return p; }",
        ]  # fmt: skip
        # heap blocks stay allocated to the end (the leak checker is off): simpler than tracking them
        return "\n".join([*head, *self.decls, "int main(void) {", *self.body, "return 0; }", ""])


def test_sanitized_build_equals_run_block(tmp_path: Path) -> None:
    """ASan + UBSan: every parameter array, x, K, V and the exactly-sized scratches in exact-size heap blocks."""
    emitter = _Emitter()
    expected = []
    for i, (_, block, x) in enumerate(random_blocks(seed=2, count=SANITIZED_CASES)):
        emitter.block(i, block, x)
        expected.append(reference.run_block(block, x).tobytes())
    source = tmp_path / "fused_san.c"
    source.write_text(emitter.source())
    exe = compile_host([*kernel_sources(), source], tmp_path / "fused_san", include_dirs=[KERNEL_INCLUDE],
                       sanitize=True)  # fmt: skip
    proc = subprocess.run([str(exe)], capture_output=True, timeout=120, env={"ASAN_OPTIONS": "detect_leaks=0"})
    assert proc.returncode == 0, f"sanitized run failed ({proc.returncode}):\n{proc.stderr.decode()[-3000:]}"
    assert proc.stdout == b"".join(expected)
