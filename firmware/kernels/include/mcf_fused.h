/* mcuformer fused int8 kernels: a transformer block's two halves run token by token, in place.
 *
 * Each fused kernel equals, bit for bit, the corresponding half of mcuformer.quant.reference.run_block
 * (mcf_attention_block_s8 then mcf_mlp_block_s8 is one block). They call the mcf_kernels.h kernels on one
 * token at a time (mcf_layernorm_s8, mcf_linear_s8 with tokens = 1, mcf_lut_s8, mcf_add_s8, and
 * mcf_attention_row_s8 for one query row), so exactness follows from theirs: per-token ops give the same
 * values whether a tensor is computed whole or one row at a time.
 *
 * Memory: the residual stream x [tokens][channels] is updated in place (token t's block output overwrites
 * token t); the only full-sequence buffers besides x are attention's K and V ([tokens][channels] each,
 * caller-provided so that the memory planner places them). Everything else lives in a per-token scratch
 * of mcf_*_block_s8_get_buffer_size bytes (int8 only: any alignment).
 *
 * Conventions as mcf_kernels.h: C99, integer only, no malloc, no global state; MCF_ERR_ARG for NULL
 * pointers, non-positive dimensions, inconsistent dimensions (a low-rank factor without its rank or the
 * reverse, channels not divisible by heads) or out-of-spec parameters (each sub-kernel's own checks).
 * Every parameter check is data independent and happens on the first token, before x is written: on
 * MCF_ERR_ARG x is unchanged (scratch, and for attention K and V, may have been written).
 * Buffers (x, K, V, scratch) must not overlap each other nor any parameter array. tokens * channels and
 * tokens * hidden must fit int32; the attention half needs tokens and head_dim < 33000 (mcf_attention_s8).
 */
#ifndef MCF_FUSED_H
#define MCF_FUSED_H

#include "mcf_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Scratch sizes (the same for every kernel variant, so the memory plan does not depend on the board):
 * sequences of at least MCF_FUSED_BLOCK_MIN_TOKENS tokens get room for blocks of MCF_FUSED_BLOCK_TOKENS
 * tokens (the DSP kernels reuse each weight word across the block: mcf_dsp_fused.h), shorter ones the
 * one-token chain. */
#define MCF_FUSED_BLOCK_TOKENS 4
#define MCF_FUSED_BLOCK_MIN_TOKENS 16
#define MCF_FUSED_BLOCK_ROW_BYTES 12 /* per value of the widest row: 4 tokens x (int16 + int8) */

/* The token block a fused kernel runs (the dims' block_tokens, a memory/speed trade the planner chooses):
 * MCF_FUSED_BLOCKS_DEFAULT, blocks of MCF_FUSED_BLOCK_TOKENS from MCF_FUSED_BLOCK_MIN_TOKENS tokens on;
 * MCF_FUSED_ONE_TOKEN, one token at a time at any length (the one-token chain's scratch: less memory, more
 * instructions on the DSP kernels). Any other value is invalid dims. */
#define MCF_FUSED_BLOCKS_DEFAULT 0
#define MCF_FUSED_ONE_TOKEN 1

static inline int mcf_fused_valid_block(int32_t block_tokens) {
    return block_tokens == MCF_FUSED_BLOCKS_DEFAULT || block_tokens == MCF_FUSED_ONE_TOKEN;
}

/* Whether a fused kernel on `tokens` tokens runs (and sizes its scratch for) blocks of tokens. */
static inline int mcf_fused_uses_blocks(int32_t tokens, int32_t block_tokens) {
    return tokens >= MCF_FUSED_BLOCK_MIN_TOKENS && block_tokens != MCF_FUSED_ONE_TOKEN;
}

/* One quantized linear layer (qmodel.QLinear), [in_ch] -> [out_ch] per token; the sizes come from the
 * dims of the fused kernel that uses it. params and quant are passed to mcf_linear_s8 as they are.
 *
 * The weights come in one of two layouts, exactly one pointer non-NULL (else MCF_ERR_ARG):
 * - weight: int8 [out_ch][in_ch];
 * - weight16: the same values pre-widened to int16 by codegen (twice the flash, fewer instructions: the DSP
 *   kernels' token blocks load them without splitting), word aligned, [out_ch][in_ch] with each group of four
 *   inputs of a row stored as (w0, w2, w1, w3), the pairs SXTB16 makes of an int8 word (mcf_dsp_block.h's x16
 *   pairing), and the in_ch % 4 leftovers in order (mcf_weight16_index, mcf_linear_w16_s8). */
typedef struct {
    mcf_linear_params params; /* input and output zero points */
    mcf_channel_quant quant;  /* mult, shift [out_ch] */
    const int8_t *weight;     /* [out_ch][in_ch], or NULL */
    const int16_t *weight16;  /* [out_ch][in_ch] in the widened layout, or NULL */
    const int32_t *bias;      /* [out_ch] */
} mcf_linear_layer;

/* A linear that may be low rank (qmodel.QFactored): y = u(v(x)), or u(x) when v is NULL (full rank).
 * The rank (v's out_ch, u's in_ch) is given by the fused kernel's dims: rank 0 <=> v == NULL. */
typedef struct {
    const mcf_linear_layer *v; /* [in_ch] -> [rank], NULL: full rank */
    mcf_linear_layer u;        /* [rank or in_ch] -> [out_ch] */
} mcf_factored_linear;

/* One quantized LayerNorm (qmodel.QLayerNorm) over `channels` values. */
typedef struct {
    mcf_layernorm_params params;
    const int16_t *gamma; /* [channels] */
    const int32_t *beta;  /* [channels] */
} mcf_layernorm_layer;

/* Sizes of the attention half: d = channels, divisible by heads; rank 0 means full rank (no V factor). */
typedef struct {
    int32_t tokens;
    int32_t channels;
    int32_t heads;
    int32_t qkv_rank;     /* rank of the V factor shared by q, k, v (qkv_v), 0: none */
    int32_t proj_rank;    /* rank of proj's V factor, 0: none */
    int32_t block_tokens; /* MCF_FUSED_BLOCKS_DEFAULT or MCF_FUSED_ONE_TOKEN */
} mcf_attention_block_dims;

/* The attention half of a QBlock: norm1, qkv_v, q, k, v, attn, proj, res1. */
typedef struct {
    mcf_layernorm_layer norm;       /* norm1, over channels */
    const mcf_linear_layer *qkv_v;  /* [channels] -> [qkv_rank]; NULL iff qkv_rank == 0 */
    mcf_linear_layer q, k, v;       /* [qkv_rank or channels] -> [channels] */
    mcf_attention_params attention; /* as mcf_attention_s8 (heads from the dims) */
    const int32_t *exp_table;       /* [256], spec.exp_table */
    mcf_factored_linear proj;       /* [channels] -> (proj_rank) -> [channels] */
    mcf_add_params residual;        /* res1: a = x, b = proj output */
} mcf_attention_block_params;

/* Sizes of the MLP half: rank 0 means full rank (no V factor). */
typedef struct {
    int32_t tokens;
    int32_t channels;     /* d */
    int32_t hidden;       /* fc1's output width */
    int32_t fc1_rank;     /* 0: none */
    int32_t fc2_rank;     /* 0: none */
    int32_t block_tokens; /* MCF_FUSED_BLOCKS_DEFAULT or MCF_FUSED_ONE_TOKEN */
} mcf_mlp_block_dims;

/* The MLP half of a QBlock: norm2, fc1, gelu_table, fc2, res2. */
typedef struct {
    mcf_layernorm_layer norm; /* norm2, over channels */
    mcf_factored_linear fc1;  /* [channels] -> (fc1_rank) -> [hidden] */
    const int8_t *gelu_table; /* [256], spec.lut_table(spec.gelu, ...) */
    mcf_factored_linear fc2;  /* [hidden] -> (fc2_rank) -> [channels] */
    mcf_add_params residual;  /* res2: a = x, b = fc2 output */
} mcf_mlp_block_params;

/* One query row of ops.attention, for all heads: exactly row t of mcf_attention_s8 when q_row is q[t].
 * dims->tokens is the number of keys; q_row and output_row [channels]; k, v [tokens][channels] (may
 * alias each other). For each head h (columns c of h's head_dim = channels / heads):
 *   s_j = sat8(requant(sum_c (q_row[c] - q_zp) * (k[j][c] - k_zp), score_mult, score_shift) + score_zp)
 *   p = mcf_softmax_s8(s, exp_table)
 *   output_row[c] = sat8(requant(sum_j (p_j + 128) * (v[j][c] - v_zp), out_mult, out_shift) + out_zp)
 * scratch: dims->tokens bytes, any alignment, overlapping nothing else (mcf_attention_s8_get_buffer_size
 * is enough). output_row may alias q_row (same pointer), never k or v. head_dim and tokens < 33000. */
mcf_status mcf_attention_row_s8(const mcf_attention_dims *dims, const mcf_attention_params *params,
                                const int8_t *q_row, const int8_t *k, const int8_t *v,
                                const int32_t *exp_table, int8_t *output_row, void *scratch);

/* Bytes of scratch mcf_attention_block_s8 needs (0 if dims is NULL or invalid, or the size exceeds int32).
 * With d = channels, the per-token chain of buffers, each written from the previous one, is
 * c = [d (norm1), qkv_rank (if > 0), d (q, then the context row over it), proj_rank (if > 0), d (proj)];
 * even-indexed ones start the scratch, odd-indexed ones end it, and the score row (tokens bytes) sits at
 * the end opposite the q/context row. So the scratch is max(max_i (c[i] + c[i + 1]), d + tokens), i.e.
 *   size = d + max(qkv_rank or d, proj_rank or d, tokens)   (a rank of 0 counts as d)
 * rounded up to a multiple of 4. From MCF_FUSED_BLOCK_MIN_TOKENS tokens on (unless block_tokens is
 * MCF_FUSED_ONE_TOKEN), the size of the DSP kernel's 4-token blocks instead (which holds that chain): 3 + 12
 * * max(d, qkv_rank, proj_rank) + tokens, rounded up. Mirror:
 * mcuformer.codegen.scratch.attention_block_scratch_bytes. */
int32_t mcf_attention_block_s8_get_buffer_size(const mcf_attention_block_dims *dims);

/* The attention half of run_block, in place on x [tokens][channels]:
 *   h = norm1(x); u = qkv_v(h) (or h); context = attention(q(u), k(u), v(u)); x = res1(x, proj(context))
 * Pass 1, for every token t: k_buf[t] = k(u_t), v_buf[t] = v(u_t).
 * Pass 2, for every token t: u_t again (the same values: deterministic), q = q(u_t), the context row
 * (mcf_attention_row_s8 over k_buf, v_buf), proj, then x[t] = res1(x[t], proj row).
 * k_buf, v_buf: [tokens][channels] each, written (pass 1; they hold the block's K and V on return) then
 * read. scratch:
 * mcf_attention_block_s8_get_buffer_size(dims) bytes, any alignment. x, k_buf, v_buf and scratch must not
 * overlap one another. */
mcf_status mcf_attention_block_s8(const mcf_attention_block_dims *dims,
                                  const mcf_attention_block_params *params, int8_t *x, int8_t *k_buf,
                                  int8_t *v_buf, void *scratch);

/* Bytes of scratch mcf_attention_block_heads_s8 needs (0 if dims is NULL or invalid, or the size exceeds
 * int32): max(d + qkv_rank + head_dim + tokens, proj_rank + d) rounded up to a multiple of 4 (one token at a
 * time). From MCF_FUSED_BLOCK_MIN_TOKENS tokens on (unless block_tokens is MCF_FUSED_ONE_TOKEN), the size of
 * the DSP kernel's 4-token blocks instead, with width = max(d, qkv_rank, proj_rank): 3 + 8 * max(width,
 * tokens) + 4 * (width + tokens), rounded up. Mirror:
 * mcuformer.codegen.scratch.attention_block_heads_scratch_bytes. */
int32_t mcf_attention_block_heads_s8_get_buffer_size(const mcf_attention_block_dims *dims);

/* mcf_attention_block_s8 with K and V one head at a time, for when that needs less memory (heads > 2):
 * instead of K and V for all heads ([tokens][channels] each) it keeps one head's, k_head and v_head
 * ([tokens][head_dim] each), plus the context of every token, context [tokens][channels], because x[t]
 * may only be overwritten once all heads have read it. For each head: pass 1 computes that head's K and V
 * for every token, pass 2 each token's q for that head and its slice of the context row; pass 3 then runs
 * proj and the residual add over x[t]. Same results as mcf_attention_block_s8, bit for bit (each head's
 * scores, softmax and context depend on that head's channels only). scratch:
 * mcf_attention_block_heads_s8_get_buffer_size(dims) bytes, any alignment. x, k_head, v_head, context and
 * scratch must not overlap one another. On return context holds every token's context row (proj's input);
 * what k_head and v_head hold (and in which layout) is the kernel variant's own. */
mcf_status mcf_attention_block_heads_s8(const mcf_attention_block_dims *dims,
                                        const mcf_attention_block_params *params, int8_t *x, int8_t *k_head,
                                        int8_t *v_head, int8_t *context, void *scratch);

/* Bytes of scratch mcf_attention_block_heads_once_s8 needs (0 if dims is NULL or invalid, or the size exceeds
 * int32): mcf_attention_block_heads_s8_get_buffer_size(dims), plus, with token blocks
 * (mcf_fused_uses_blocks), the normalised input of every token widened, 8 * (qkv_rank > 0 ? qkv_rank : d)
 * bytes per block of 4 tokens (ceil(tokens / 4) blocks), then one head's K and V as int16 rows padded to an
 * even length (2 * tokens * even(head_dim) + 2 * head_dim * even(tokens)). Mirror:
 * mcuformer.codegen.scratch.attention_block_heads_once_scratch_bytes. */
int32_t mcf_attention_block_heads_once_s8_get_buffer_size(const mcf_attention_block_dims *dims);

/* mcf_attention_block_heads_s8 that normalises once: the DSP kernel runs norm1 (and the qkv V factor) once
 * per token into its scratch, widened, instead of once per head and token ((heads - 1) LayerNorms and
 * widenings per token fewer, for 2 x tokens x width more bytes of scratch), and widens each head's K and V to
 * int16 once, for score and context loops of 11 instead of 13 instructions per 16 MACs (the planner's
 * speed-for-memory trade). Same arguments,
 * contract and results, bit for bit; the portable kernel computes exactly as mcf_attention_block_heads_s8.
 * scratch: mcf_attention_block_heads_once_s8_get_buffer_size(dims) bytes, any alignment. */
mcf_status mcf_attention_block_heads_once_s8(const mcf_attention_block_dims *dims,
                                             const mcf_attention_block_params *params, int8_t *x,
                                             int8_t *k_head, int8_t *v_head, int8_t *context, void *scratch);

/* Bytes of scratch mcf_mlp_block_s8 needs (0 if dims is NULL or invalid, or the size exceeds int32).
 * With d = channels, the per-token chain is c = [d (norm2), fc1_rank (if > 0), hidden (fc1, GELU in
 * place), fc2_rank (if > 0), d (fc2)], laid out as for attention: the scratch is max_i (c[i] + c[i + 1]),
 * i.e. with w = max(d, hidden) and a rank r contributing r + w (a rank of 0: d + hidden):
 *   size = max(fc1_rank ? fc1_rank + w : d + hidden, fc2_rank ? fc2_rank + w : d + hidden)
 * rounded up to a multiple of 4. From MCF_FUSED_BLOCK_MIN_TOKENS tokens on (unless block_tokens is
 * MCF_FUSED_ONE_TOKEN), the size of the DSP kernel's 4-token blocks instead (which holds that chain): 3 + 12
 * * max(d, hidden, fc1_rank, fc2_rank), rounded up. Mirror:
 * mcuformer.codegen.scratch.mlp_block_scratch_bytes. */
int32_t mcf_mlp_block_s8_get_buffer_size(const mcf_mlp_block_dims *dims);

/* The MLP half of run_block, in place on x [tokens][channels], one token at a time:
 *   x[t] = res2(x[t], fc2(lut(fc1(norm2(x[t])), gelu_table)))
 * scratch: mcf_mlp_block_s8_get_buffer_size(dims) bytes, any alignment, not overlapping x. */
mcf_status mcf_mlp_block_s8(const mcf_mlp_block_dims *dims, const mcf_mlp_block_params *params, int8_t *x,
                            void *scratch);

#ifdef __cplusplus
}
#endif

/* ops.patch_embed computed one patch row at a time through `scratch`, so that output may overlap the image
 * as long as the tokens of patch rows 0..r end at or before the first byte of image patch row r + 1 (the
 * compiler's patch-embedding decomposition places tokens over consumed image rows this way). Dims and results
 * as mcf_patch_embed_s8. The scratch holds one patch row of tokens and, when mcf_patch_rows_in_blocks, a
 * widened block of four patches: the DSP kernel then runs them four at a time through the fused kernels'
 * token blocks (more scratch, fewer instructions: a kernel variant the compiler chooses). blocks other than 0
 * and MCF_PATCH_BLOCKS: MCF_ERR_ARG. */
#define MCF_PATCH_BLOCKS 1
#define MCF_PATCH_BLOCK_INPUTS 64

/* Whether the patch rows of these dims run in token blocks: asked for (blocks == MCF_PATCH_BLOCKS), patches
 * of up to MCF_PATCH_BLOCK_INPUTS values, and at least four patches a row (fewer would fill no block). */
static inline int mcf_patch_rows_in_blocks(const mcf_patch_embed_dims *dims) {
    const int64_t values = (int64_t)dims->patch * dims->patch * dims->channels;
    return dims->blocks == MCF_PATCH_BLOCKS && values <= MCF_PATCH_BLOCK_INPUTS &&
           dims->width / dims->patch >= 4;
}
int32_t mcf_patch_embed_rows_s8_get_buffer_size(const mcf_patch_embed_dims *dims);
mcf_status mcf_patch_embed_rows_s8(const mcf_patch_embed_dims *dims, const mcf_linear_params *params,
                                   const mcf_channel_quant *quant, const int8_t *image, const int8_t *weight,
                                   const int32_t *bias, int8_t *output, int8_t *scratch);

#endif /* MCF_FUSED_H */
