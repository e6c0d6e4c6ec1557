/* mcuformer int8 kernels: the public API.
 *
 * Each kernel mcf_<op>_s8 equals, bit for bit, the numpy reference mcuformer.quant.ops.<op> (the spec;
 * scalar rules in mcuformer/quant/spec.py). C99, integer only: no malloc, no float, no global state.
 *
 * Conventions shared by every kernel:
 *   - Tensors are dense, row-major, channels last: [tokens][channels] means element (t, c) at t * channels +
 * c.
 *   - Every kernel returns MCF_OK, or MCF_ERR_ARG (and writes nothing) when a pointer is NULL, a dimension
 *     is not positive, or a parameter lies outside the spec's range (listed per kernel). Zero points of int8
 *     tensors must lie in [-128, 127]; requantization multipliers in [0, 2^31) and shifts in [-32, 30]
 *     (spec.quantize_multiplier's range).
 *   - Requantization (spec.ROUNDING): requant(acc, m, s) = (acc * m + 2^(30 - s)) >> (31 - s) computed in
 *     64 bits with a flooring shift, then + out_zp, then saturation to [-128, 127] (still in 64 bits).
 *   - Dot products accumulate in int32: inputs must keep them in range (|acc| < 2^31), which holds for
 *     reduction lengths below 33000 (65793 for linear and patch_embed, whose weights are int8).
 *     Element counts (tokens * channels and the like) must fit int32.
 *   - Aliasing: an output may alias an input only where the kernel's comment says so, and then only as the
 *     very same pointer (exact aliasing); partially overlapping buffers are never allowed.
 */
#ifndef MCF_KERNELS_H
#define MCF_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { MCF_OK = 0, MCF_ERR_ARG = -1 } mcf_status;

/* A [tokens][channels] tensor. */
typedef struct {
    int32_t tokens;
    int32_t channels;
} mcf_dims;

/* A linear layer applied to each of `tokens` rows: [tokens][in_ch] -> [tokens][out_ch]. */
typedef struct {
    int32_t tokens;
    int32_t in_ch;
    int32_t out_ch;
} mcf_linear_dims;

/* Zero points of a linear layer's input and output (weights are symmetric: no zero point). */
typedef struct {
    int32_t in_zp;
    int32_t out_zp;
} mcf_linear_params;

/* Per output channel requantization: mult[out_ch] in [0, 2^31), shift[out_ch] in [-32, 30] (one byte each:
 * a quarter of the flash an int32 would take, no slower to load). */
typedef struct {
    const int32_t *mult;
    const int8_t *shift;
} mcf_channel_quant;

/* Patch embedding: an HWC image cut into patch x patch squares (height and width multiples of patch).
 * `blocks` concerns mcf_patch_embed_rows_s8 only (the others ignore it): 0 or MCF_PATCH_BLOCKS (mcf_fused.h).
 */
typedef struct {
    int32_t height;
    int32_t width;
    int32_t channels;
    int32_t patch;
    int32_t out_ch;
    int32_t blocks;
} mcf_patch_embed_dims;

/* Residual add (spec.add_multipliers): a_mult, b_mult in [0, 2^15), shift in [1, 30]. */
typedef struct {
    int32_t a_zp;
    int32_t b_zp;
    int32_t a_mult;
    int32_t b_mult;
    int32_t shift;
    int32_t out_zp;
} mcf_add_params;

/* Integer LayerNorm: eps in [0, 2^62] (in units of the squared, D^2-scaled input), one requantization. */
typedef struct {
    int32_t in_zp;
    int64_t eps;
    int32_t mult;
    int32_t shift;
    int32_t out_zp;
} mcf_layernorm_params;

/* Multi-head attention over [tokens][channels] q, k, v; channels divisible by heads. */
typedef struct {
    int32_t tokens;
    int32_t channels;
    int32_t heads;
} mcf_attention_dims;

/* Zero points of q, k, v; score requantization (1/sqrt(head_dim) folded in) and its int8 zero point;
 * output requantization of sum_j (p_j + 128) * (v_j - v_zp) and the output zero point. */
typedef struct {
    int32_t q_zp, k_zp, v_zp;
    int32_t score_mult, score_shift, score_zp;
    int32_t out_mult, out_shift, out_zp;
} mcf_attention_params;

/* Mean pooling over tokens: the 1/tokens factor is folded into mult/shift. */
typedef struct {
    int32_t in_zp;
    int32_t mult;
    int32_t shift;
    int32_t out_zp;
} mcf_pool_params;

/* ops.linear. For every token t and output channel n:
 *   acc = bias[n] + sum_k (input[t][k] - in_zp) * weight[n][k]   (dot product in int32, + bias in int64)
 *   output[t][n] = sat8(requant(acc, quant->mult[n], quant->shift[n]) + out_zp)
 * input [tokens][in_ch], weight [out_ch][in_ch], bias [out_ch], output [tokens][out_ch].
 * Exact when |acc| < 2^31 (PTQ keeps biases far below). output must not overlap any input. */
mcf_status mcf_linear_s8(const mcf_linear_dims *dims, const mcf_linear_params *params,
                         const mcf_channel_quant *quant, const int8_t *input, const int8_t *weight,
                         const int32_t *bias, int8_t *output);

/* Where input k of a row of in_ch inputs sits in the widened weight layout (int16, laid out by codegen:
 * inputs 1 and 2 of each group of four trade places, so that each word holds the pair (w0, w2) or (w1, w3)
 * the DSP kernels multiply with SMLAD; the in_ch % 4 leftovers keep their places). Mirror:
 * mcuformer.codegen.layout.weight16_order. */
static inline int32_t mcf_weight16_index(int32_t k, int32_t in_ch) {
    return k < (in_ch & ~3) ? (k & ~3) | ((k & 1) << 1) | ((k >> 1) & 1) : k;
}

/* mcf_linear_s8 with the weights widened to int16 in that layout, word aligned (weight16 [out_ch][in_ch]):
 * the same results, checks and limits. The fused kernels' linears may come this way
 * (mcf_linear_layer.weight16). */
mcf_status mcf_linear_w16_s8(const mcf_linear_dims *dims, const mcf_linear_params *params,
                             const mcf_channel_quant *quant, const int8_t *input, const int16_t *weight16,
                             const int32_t *bias, int8_t *output);

/* ops.patch_embed: the linear layer above applied to each patch of the image.
 * image [height][width][channels] (HWC); height and width multiples of patch (else MCF_ERR_ARG).
 * Patch (gy, gx) of the (height/patch) x (width/patch) grid is token gy * (width/patch) + gx (row-major);
 * its vector is in (row, column, channel) order, so weight is [out_ch][patch][patch][channels].
 * bias [out_ch], output [(height/patch) * (width/patch)][out_ch]; output must not overlap any input. */
mcf_status mcf_patch_embed_s8(const mcf_patch_embed_dims *dims, const mcf_linear_params *params,
                              const mcf_channel_quant *quant, const int8_t *image, const int8_t *weight,
                              const int32_t *bias, int8_t *output);

/* ops.add, element-wise over `size` elements (size > 0):
 *   output[i] = sat8(((a[i] - a_zp) * a_mult + (b[i] - b_zp) * b_mult + 2^(shift - 1)) >> shift + out_zp)
 * in int32 (exact for the parameter ranges of mcf_add_params). output may alias a or b. */
mcf_status mcf_add_s8(const mcf_add_params *params, const int8_t *a, const int8_t *b, int8_t *output,
                      int32_t size);

/* ops.lut: output[i] = table[input[i] + 128] over `size` elements (size > 0); table has 256 entries
 * (spec.lut_table). output may alias input. */
mcf_status mcf_lut_s8(const int8_t *input, const int8_t *table, int8_t *output, int32_t size);

/* ops.layernorm over the channels D of each of `tokens` rows (64-bit statistics):
 *   xi = x - in_zp; S = sum xi; Q = sum xi^2; var = D*Q - S^2 + eps
 *   sd = max(isqrt(var), 1) (exact floor square root); inv = 2^40 / sd
 *   n = ((D*xi - S) * inv + 2^29) >> 30 (Q10); acc = sat32(n * gamma[c] + beta[c])
 *   output = sat8(requant(acc, mult, shift) + out_zp)
 * input, output [tokens][channels]; gamma [channels] int16 (its PTQ range: 2 bytes of flash a value, not 4),
 * beta [channels] int32;
 * eps in [0, 2^62] (else MCF_ERR_ARG); channels < 2^15. output may alias input. */
mcf_status mcf_layernorm_s8(const mcf_dims *dims, const mcf_layernorm_params *params, const int8_t *input,
                            const int16_t *gamma, const int32_t *beta, int8_t *output);

/* ops.softmax on ONE row of `length` values (length > 0); output scale 1/256, zero point -128:
 *   e_j = exp_table[max - s_j] (Q15, 256 entries); sum = sum e_j (int64); inv = 2^31 / sum (0 if sum is 0)
 *   output_j = min(((e_j * inv + 2^22) >> 23) - 128, 127)
 * exp_table (spec.exp_table) entries must be >= 0. output may alias input. */
mcf_status mcf_softmax_s8(const int8_t *input, const int32_t *exp_table, int8_t *output, int32_t length);

/* Bytes of scratch mcf_attention_s8 needs: the int8 score/probability row of one (query row, head),
 * `tokens` bytes rounded up to a multiple of 4; no alignment needed. 0 if dims is NULL or invalid. */
int32_t mcf_attention_s8_get_buffer_size(const mcf_attention_dims *dims);

/* ops.attention: heads are contiguous column groups of head_dim = channels / heads columns (channels not
 * divisible by heads: MCF_ERR_ARG). q, k, v, output are [tokens][channels]; exp_table has 256 entries.
 * Query row by query row and head by head (never a tokens x tokens matrix), for row t of head h:
 *   s_j = sat8(requant(sum_c (q[t][c] - q_zp) * (k[j][c] - k_zp), score_mult, score_shift) + score_zp)
 *   p = mcf_softmax_s8(s, exp_table)
 *   output[t][c] = sat8(requant(sum_j (p_j + 128) * (v[j][c] - v_zp), out_mult, out_shift) + out_zp)
 * with c over head h's columns. scratch: mcf_attention_s8_get_buffer_size(dims) bytes, any alignment,
 * not overlapping anything else. output may alias q (each output row/head is written only after the same
 * q row/head is consumed), never k or v; q, k and v may alias each other. head_dim and tokens < 33000. */
mcf_status mcf_attention_s8(const mcf_attention_dims *dims, const mcf_attention_params *params,
                            const int8_t *q, const int8_t *k, const int8_t *v, const int32_t *exp_table,
                            int8_t *output, void *scratch);

/* ops.mean_pool: input [tokens][channels] -> output [channels]:
 *   output[c] = sat8(requant(sum_t (input[t][c] - in_zp), mult, shift) + out_zp)
 * output must not overlap input. */
mcf_status mcf_mean_pool_s8(const mcf_dims *dims, const mcf_pool_params *params, const int8_t *input,
                            int8_t *output);

/* memmove of `size` bytes (size > 0): input and output may overlap in any way. */
mcf_status mcf_copy_s8(const int8_t *input, int8_t *output, int32_t size);

#ifdef __cplusplus
}
#endif

#endif /* MCF_KERNELS_H */
