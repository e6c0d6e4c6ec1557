/* The kernel harness: a bare-metal program for the emulated Cortex-M7 (QEMU mps2-an500 with -icount shift=0,
 * semihosting for output and exit) that checks a kernel variant against the portable reference
 * (mcf_variant_check.c), times both on benchmark shapes (mcf_variant_bench.c), or, built with
 * MCF_HARNESS_PROFILE, runs the variant's fused blocks once for a trace (mcuformer.device.kernel_hotspots).
 *
 * The portable kernels are linked in twice: once as they are (through the variant under test, which falls
 * back to them for every function it does not override) and once with every public symbol renamed ref_mcf_*
 * (objcopy --redefine-sym, see mcuformer/device/kernel_harness.py).
 *
 * Output lines: "CASE <op> <index> MISMATCH ..." for a difference, "CHECKED <op> <cases>" per op,
 * "BENCH <op> <shape> <macs> <ref ticks> <variant ticks> <repeats>", "PHASE <name> <ticks>" in the profile
 * build, and "DONE <mismatches>" last. */
#ifndef MCF_HARNESS_H
#define MCF_HARNESS_H

#include <stdint.h>
#include <string.h>

#include "mcf_fused.h"
#include "mcf_kernels.h"

/* The reference (portable) kernels under their renamed symbols. */
mcf_status ref_mcf_linear_s8(const mcf_linear_dims *, const mcf_linear_params *, const mcf_channel_quant *,
                             const int8_t *, const int8_t *, const int32_t *, int8_t *);
mcf_status ref_mcf_patch_embed_s8(const mcf_patch_embed_dims *, const mcf_linear_params *,
                                  const mcf_channel_quant *, const int8_t *, const int8_t *, const int32_t *,
                                  int8_t *);
mcf_status ref_mcf_patch_embed_rows_s8(const mcf_patch_embed_dims *, const mcf_linear_params *,
                                       const mcf_channel_quant *, const int8_t *, const int8_t *,
                                       const int32_t *, int8_t *, int8_t *);
mcf_status ref_mcf_attention_row_s8(const mcf_attention_dims *, const mcf_attention_params *, const int8_t *,
                                    const int8_t *, const int8_t *, const int32_t *, int8_t *, void *);
mcf_status ref_mcf_layernorm_s8(const mcf_dims *, const mcf_layernorm_params *, const int8_t *,
                                const int16_t *, const int32_t *, int8_t *);
mcf_status ref_mcf_add_s8(const mcf_add_params *, const int8_t *, const int8_t *, int8_t *, int32_t);
mcf_status ref_mcf_lut_s8(const int8_t *, const int8_t *, int8_t *, int32_t);
mcf_status ref_mcf_softmax_s8(const int8_t *, const int32_t *, int8_t *, int32_t);
mcf_status ref_mcf_mlp_block_s8(const mcf_mlp_block_dims *, const mcf_mlp_block_params *, int8_t *, void *);
mcf_status ref_mcf_attention_block_s8(const mcf_attention_block_dims *, const mcf_attention_block_params *,
                                      int8_t *, int8_t *, int8_t *, void *);
mcf_status ref_mcf_attention_block_heads_s8(const mcf_attention_block_dims *,
                                            const mcf_attention_block_params *, int8_t *, int8_t *, int8_t *,
                                            int8_t *, void *);

/* mcf_harness.c: output (a line is put piece by piece, then ended), SysTick counts (1 tick = 40
 * instructions under -icount shift=0) and a seeded xorshift generator. */
void start_ticks(void);
uint64_t ticks(void);
void put(const char *text);
void put_int(int64_t value);
void end_line(void);
uint32_t rnd(void);
int32_t rnd_range(int32_t lo, int32_t hi); /* inclusive */
int chance(int percent);
int32_t rnd_zp(void);
int32_t rnd_size(int32_t hi); /* 1 often, odd sizes as often as even ones */
void rnd_bytes(int8_t *p, int32_t n);
void rnd_requant(int32_t *mult, int32_t *shift);
/* rnd_requant for one channel of a mcf_channel_quant (one-byte shifts). */
void rnd_channel_requant(int32_t *mult, int8_t *shift);
void rnd_bias(int32_t *bias, int32_t n);
void rnd_layer(mcf_linear_layer *layer, int8_t *weight, int32_t *bias, int32_t *mult, int8_t *shift,
               int32_t in_ch, int32_t out_ch);
void rnd_norm(mcf_layernorm_layer *norm, int32_t channels); /* into gamma_a and beta_a */
mcf_add_params rnd_add(void);

/* The buffers (mcf_harness.c): inputs, weights and per-channel parameters, outputs with guard bytes. */
#define GUARD 32
#define MAX_BYTES 32768
extern int8_t in_a[MAX_BYTES], in_b[MAX_BYTES], in_c[MAX_BYTES], weight_a[MAX_BYTES], weight_b[MAX_BYTES];
extern int8_t weight_c[MAX_BYTES], weight_d[MAX_BYTES];
extern int8_t out_ref[MAX_BYTES + GUARD], out_var[MAX_BYTES + GUARD];
extern int8_t scratch_ref[MAX_BYTES], scratch_var[MAX_BYTES];
extern int8_t kv_ref[2][MAX_BYTES], kv_var[2][MAX_BYTES];
extern int32_t bias_a[512], bias_b[512], mult_a[512], mult_b[512];
extern int8_t shift_a[512], shift_b[512];
extern int32_t bias_c[512], bias_d[512], mult_c[512], mult_d[512];
extern int8_t shift_c[512], shift_d[512];
extern int32_t exp_table[256];
extern int16_t gamma_a[8208];
extern int32_t beta_a[8208];
extern int8_t gelu_table[256];

int run_checks(void);      /* mcf_variant_check.c: every op's random and edge cases; returns the mismatches */
void run_benchmarks(void); /* mcf_variant_bench.c */
void run_profile(void); /* mcf_variant_bench.c, profile build: the fused blocks on MCF_PROFILE_SHAPE once */

#endif /* MCF_HARNESS_H */
