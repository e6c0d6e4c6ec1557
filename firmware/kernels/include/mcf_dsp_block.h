/* Token blocks of the DSP fused kernels (firmware/kernels/dsp; not part of the public API): the widened
 * input ("x16"), the 4-token dot loop and the 4-token linear layer, whose channel loop on the core is one
 * piece of assembly that keeps its state in registers. The bodies are in dsp/mcf_dsp_block.c: one copy in
 * the image however many kernels call them (a call per token block and layer costs nothing measurable). */
#ifndef MCF_DSP_BLOCK_H
#define MCF_DSP_BLOCK_H

#include "mcf_dsp.h"
#include "mcf_fused.h"

/* The fused DSP kernels run MCF_DSP_BLOCK tokens at a time: each weight word is loaded and split once for
 * four tokens. Their inputs are first widened to int16 with the zero point removed ("x16"), laid out so that
 * one group of four input values of all four tokens is eight consecutive words:
 *   [t0 (x0, x2), t0 (x1, x3), t1 (x0, x2), t1 (x1, x3), ..., t3 (x1, x3)]   (pairs as SXTAB16 makes them)
 * followed by the in_ch % 4 leftover values as int16, value by value: [t0, t1, t2, t3] of leftover 0 (two
 * words), then of leftover 1, ... 8 * in_ch bytes, word aligned. */
#define MCF_DSP_BLOCK 4

/* MCF_DSP_WIDENED=0 (set by codegen for a model with no widened layer) compiles the widened-weight paths out
 * of the token blocks; a layer with weight16 then fails the fused kernels' argument check (MCF_ERR_ARG). */
#ifndef MCF_DSP_WIDENED
#define MCF_DSP_WIDENED 1
#endif

/* `groups` groups of four int8 values from x, minus the zero point (offset = mcf_pack_pair(-zp)), into one
 * token's lane of x16: dst = x16 + 8 * (first group) + 2 * t. */
static inline void mcf_dsp_widen_lane(const int8_t *x, int32_t groups, uint32_t offset, uint32_t *dst) {
    for (int32_t g = 0; g < groups; g++, x += 4, dst += 8) {
        const uint32_t w = mcf_read4(x);
        dst[0] = mcf_sxtab16(offset, w);
        dst[1] = mcf_sxtab16_ror8(offset, w);
    }
}

/* The first token of the block that starts at t0 (tokens >= MCF_DSP_BLOCK): t0, or for the last, partial
 * block tokens - MCF_DSP_BLOCK, a full block that overlaps the one before it. For passes that only read their
 * input, whose outputs for the overlapping tokens come out the same again. */
static inline int32_t mcf_dsp_full_block_start(int32_t t0, int32_t tokens) {
    return t0 + MCF_DSP_BLOCK <= tokens ? t0 : tokens - MCF_DSP_BLOCK;
}

/* MCF_DSP_CHANNEL_TAIL=0 (set by codegen when no token-block layer has an in_ch that is not a multiple of
 * four) compiles out the assembly channel loop for such layers; they then take the C path (same results). */
#ifndef MCF_DSP_CHANNEL_TAIL
#define MCF_DSP_CHANNEL_TAIL 1
#endif

/* MCF_DSP_SPEED_LOOPS=0 (set by codegen for a model with no widened layer: a build that keeps its flash)
 * drops the assembly loops that trade code for speed: the dot loops run 8 groups of four inputs a pass
 * instead of 16 (their compare and branch once more per channel of 9-16 groups), and the last block of a
 * sequence with one or two tokens left takes the four-token loops (mcf_dsp_block_rows). 1.5-3.5 KB less code.
 */
#ifndef MCF_DSP_SPEED_LOOPS
#define MCF_DSP_SPEED_LOOPS 1
#endif

/* The rows mcf_dsp_linear4_strided computes (and writes) for a block of `count` tokens and in_ch inputs so
 * that an assembly loop runs it: two where the two-token loops take it (count <= 2, in_ch a multiple of four;
 * the second row repeats the first when count is 1), else MCF_DSP_BLOCK (rows count..3 repeating the last
 * token). Outputs need room for that many rows. */
static inline int32_t mcf_dsp_block_rows(int32_t count, int32_t in_ch) {
    return MCF_DSP_SPEED_LOOPS && MCF_DSP_ASM && count <= 2 && (in_ch & 3) == 0 ? 2 : MCF_DSP_BLOCK;
}

/* x16 of `count` (1..4) int8 rows of in_ch values, `stride` bytes apart, minus zp; rows count..3 repeat the
 * last row so that every word of x16 is defined. */
void mcf_dsp_widen4(const int8_t *rows, int32_t stride, int32_t count, int32_t in_ch, int32_t zp,
                    uint32_t *x16);

/* sums[t] = sum_k x16(token t)[k] over k < length for the four tokens of a block (SMLAD by (1, 1)). */
void mcf_dsp_x16_sums(const uint32_t *x16, int32_t length, int32_t sums[4]);

/* Whether every channel of a layer does: checked once per kernel call, not per block. */
int mcf_dsp_channels_fast(const int32_t *bias, const mcf_channel_quant *quant, int32_t in_ch, int32_t out_ch);

/* One quantized linear layer on a block of tokens: out[t * token_stride + n * channel_stride] for t < count,
 * from x16 (mcf_dsp_widen4 of the input with the layer's in_zp), with the layer's int8 or widened weights
 * (mcf_linear_layer). A channel stride other than 1 writes the output transposed (channel-major), as the
 * per-head attention kernel keeps V. `fast` is mcf_dsp_channels_fast of the layer's rows: a full block of a
 * fast layer with in_ch >= 4 takes the assembly channel loop (mcf_dsp_channels4, mcf_dsp_channels4_tail
 * when in_ch is not a multiple of four, or for widened weights, whose in_ch must be one,
 * mcf_dsp_channels4_w16: 11 instead of 13 instructions per 16 MACs).
 *
 * Requantization fast path, exact: when |bias| < 2^30 and in_ch < 32896 the accumulator starts at the bias
 * and stays within int32 (|dot| <= 255 * 128 * in_ch < 2^30); when also shift is in [-24, -2], with r =
 * -shift - 2, requant_s8(acc) == ssat8((((acc * mult) >> 32) + 2^r + out_zp * 2^(r + 1)) >> (r + 1)) (floor
 * shifts compose; the sum stays inside int32). Otherwise mcf_dsp_requantize_s8 (exact in all cases). */
void mcf_dsp_linear4_strided(const uint32_t *x16, int32_t in_ch, const mcf_linear_layer *layer,
                             int32_t out_ch, int8_t *out, int32_t token_stride, int32_t channel_stride,
                             int32_t count, int fast);

/* mcf_dsp_linear4_strided with rows of out out_stride bytes apart (channels consecutive). */
static inline void mcf_dsp_linear4(const uint32_t *x16, int32_t in_ch, const mcf_linear_layer *layer,
                                   int32_t out_ch, int8_t *out, int32_t out_stride, int32_t count, int fast) {
    mcf_dsp_linear4_strided(x16, in_ch, layer, out_ch, out, out_stride, 1, count, fast);
}

/* For each of `rows` weight rows n (consecutive, `length` values each): acc[t] = start[t] + x16(t) . w_n,
 * requantized by q into out[t * token_stride + n] for t < count. The scores and the context of four queries
 * in the per-head attention kernel (keys, or V's columns, as weight rows); a full block on the fast path
 * takes mcf_dsp_channels4_shared on the core. */
void mcf_dsp_rows4_shared(const uint32_t *x16, int32_t length, const int8_t *weight, int32_t rows,
                          const int32_t start[MCF_DSP_BLOCK], const mcf_dsp_requant *q, int8_t *out,
                          int32_t token_stride, int32_t count);

/* MCF_DSP_WIDE_KV=0 (set by codegen when no op is a once kernel) compiles out the once kernel's widened K and
 * V (mcf_dsp_heads.c) and what only they call: that kernel then reads them as int8 (same results). */
#ifndef MCF_DSP_WIDE_KV
#define MCF_DSP_WIDE_KV 1
#endif

/* mcf_dsp_rows4_shared over rows widened by mcf_dsp_widen_rows16 (each MCF_WIDE_LENGTH(length) values, word
 * aligned): the assembly loop takes 11 instructions per group of four values instead of 13
 * (mcf_dsp_channels4_shared16); count 2 (a last block of one or two tokens, mcf_dsp_shared16_rows), 7 with
 * the two-token loop. */
void mcf_dsp_rows4_shared16(const uint32_t *x16, int32_t length, const int16_t *weight16, int32_t rows,
                            const int32_t start[MCF_DSP_BLOCK], const mcf_dsp_requant *q, int8_t *out,
                            int32_t token_stride, int32_t count);

/* `count` int8 rows of `length` values, `stride` bytes apart, widened to int16 as the widened loops read
 * weights (mcf_linear_layer.weight16: in each group of four, values 1 and 2 trade places; the length % 4
 * leftovers after the groups in order), each row padded with a zero to an even length (MCF_WIDE_LENGTH) so
 * that every row stays word aligned. */
void mcf_dsp_widen_rows16(const int8_t *rows, int32_t count, int32_t length, int32_t stride, int16_t *out);

/* The rows mcf_dsp_rows4_shared16 computes (and writes) for a block of `count` tokens: two where the
 * two-token loop takes it (count <= 2), else MCF_DSP_BLOCK. */
static inline int32_t mcf_dsp_shared16_rows(int32_t count) {
    return MCF_DSP_SPEED_LOOPS && MCF_DSP_ASM && count <= 2 ? 2 : MCF_DSP_BLOCK;
}

/* The length of a row of mcf_dsp_widen_rows16: `length` rounded up to even. */
#define MCF_WIDE_LENGTH(length) (((length) + 1) & ~1)

#endif /* MCF_DSP_BLOCK_H */
