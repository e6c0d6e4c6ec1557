/* The body of the DSP per-head attention kernels (mcf_dsp_fused.h), shared by mcf_attention_block_heads_s8
 * and mcf_attention_block_heads_once_s8, which differ only in where the input of q, k and v comes from.
 *
 * Per head, pass 1 runs norm1 (and the qkv V factor) once per token block, or reads it from the normalised
 * copy of every token the once kernel made first, and computes the head's K, V and q from one widened input:
 * K rows into k_head, V transposed (channel-major, [head_dim][tokens]) into v_head, and q into the head's
 * columns of the context rows, which are free until the head's pass 2 writes them.
 * Pass 2 takes four queries at a time: their scores are a 4-token "linear layer" whose weight rows are the
 * keys, and after the softmax their context is one whose weight rows are V's columns, so every K and V byte
 * is loaded and split once for four queries. Zero points leave the inner loops as per-query corrections:
 *   scores:  sum_c (q_c - q_zp)(k_c - k_zp) = sum_c (q_c - q_zp) k_c - k_zp * sum_c (q_c - q_zp)
 *   context: sum_j u_j (v_jc - v_zp)         = sum_j u_j v_jc - v_zp * sum_j u_j,   u_j = p_j + 128
 * Pass 3 runs proj over the context rows and the residual add over x, a block at a time.
 *
 * Scratch (see mcf_attention_block_heads_s8_get_buffer_size): word alignment, the widened input x16 (8 bytes
 * per value of the widest of a norm1/proj row and a score row), MCF_DSP_BLOCK int8 rows of `width`, then
 * MCF_DSP_BLOCK score rows of `tokens`; the once kernel's normalised tokens after them. */
#include <stdint.h>
#include <string.h>

#include "mcf_dsp_fused.h"
#include "mcf_fused_internal.h"

/* The first token of pass 1's block at t0, and in *count its tokens: a full block, or at the end as many as
 * the block rows of q, k and v (mcf_dsp_block_rows of their input width) take, overlapping the block before
 * when fewer are left (only x is read: the same values again). */
static int32_t pass1_block(int32_t t0, int32_t tokens, int32_t in_ch, int32_t *count) {
    *count = mcf_dsp_block_rows(tokens - t0 < MCF_DSP_BLOCK ? tokens - t0 : MCF_DSP_BLOCK, in_ch);
    return t0 + *count <= tokens ? t0 : tokens - *count;
}

/* The once kernel's normalised input of every pass-1 block (after the score rows): the block's x16 (8 * in_ch
 * bytes) when q, k and v share one input zero point (one tensor: the usual case), so that no head widens it
 * again; else its int8 rows at their tokens' place (tokens * in_ch bytes), widened per head. */
typedef struct {
    uint32_t *x16;  /* NULL: the int8 rows */
    int8_t *normed; /* NULL: the per-head kernel, nothing kept */
} pass1_input;

/* Pass 1 for one head and the block of `count` tokens from t0 (pass1_block, the `block`-th): K, V
 * (transposed) and q of the head from the block's input, norm1 (and the qkv V factor) of x computed here, or
 * read from what the once kernel kept of every token's. */
static void head_projections(const mcf_attention_block_params *params, int32_t tokens, int32_t channels,
                             int32_t qkv_rank, int32_t first, int32_t head_dim, int32_t t0, int32_t count,
                             int32_t block, const int8_t *x, pass1_input kept, int8_t *k_head, int8_t *v_head,
                             int8_t *context, const mcf_dsp_scratch *s, const mcf_dsp_attention_fast *fast,
                             int norm1_lean) {
    int32_t in_ch = qkv_rank > 0 ? qkv_rank : channels;
    const mcf_linear_layer k = layer_rows(&params->k, in_ch, first);
    const mcf_linear_layer v = layer_rows(&params->v, in_ch, first);
    const mcf_linear_layer q = layer_rows(&params->q, in_ch, first);
    if (kept.x16 != NULL) { /* widened once, one zero point */
        const uint32_t *x16 = kept.x16 + block * 2 * in_ch;
        mcf_dsp_linear4(x16, in_ch, &k, head_dim, k_head + t0 * head_dim, head_dim, count, fast->k);
        mcf_dsp_linear4_strided(x16, in_ch, &v, head_dim, v_head + t0, 1, tokens, count, fast->v);
        mcf_dsp_linear4(x16, in_ch, &q, head_dim, context + t0 * channels + first, channels, count, fast->q);
        return;
    }
    const int8_t *rows = s->area;
    if (kept.normed != NULL) {
        rows = kept.normed + t0 * in_ch;
    } else {
        mcf_dsp_qkv_input4(params, norm1_lean, channels, qkv_rank, x + t0 * channels, count, s, &in_ch,
                           fast->qkv_v);
    }
    mcf_dsp_widen4(rows, in_ch, count, in_ch, k.params.in_zp, s->x16);
    mcf_dsp_linear4(s->x16, in_ch, &k, head_dim, k_head + t0 * head_dim, head_dim, count, fast->k);
    if (v.params.in_zp != k.params.in_zp) { /* usually one tensor, one zero point: widened once */
        mcf_dsp_widen4(rows, in_ch, count, in_ch, v.params.in_zp, s->x16);
    }
    mcf_dsp_linear4_strided(s->x16, in_ch, &v, head_dim, v_head + t0, 1, tokens, count, fast->v);
    if (q.params.in_zp != v.params.in_zp) {
        mcf_dsp_widen4(rows, in_ch, count, in_ch, q.params.in_zp, s->x16);
    }
    mcf_dsp_linear4(s->x16, in_ch, &q, head_dim, context + t0 * channels + first, channels, count, fast->q);
}

/* Largest exp_table entry for which softmax_u16 takes its 32-bit path (see there). */
#define SMALL_EXP_ENTRY ((1 << 22) - 1)
#define SMALL_EXP_TOKENS 1024

/* Four scores' exp_table entries from one word of the row: USUB8 gives max - s in each byte, the index. */
#define EXP4(d, i) exp_table[((d) >> (8 * (i))) & 0xFFu]

/* The softmax of one score row written as u = p + 128 in [0, 255] straight into x16 for token t of the block
 * (the layout of mcf_dsp_widen4); returns sum_j u_j. With small table entries (`small_table`: every entry <=
 * SMALL_EXP_ENTRY, and tokens <= SMALL_EXP_TOKENS) each step is 32-bit and exact:
 *   sum = sum_j e_j < 2^10 * 2^22 = 2^32: one 32-bit division for inv = 2^31 / sum (0 when sum is 0);
 *   (e * inv + 2^22) >> 23 == (e * 2^9 * inv + 2^31) >> 32 == SMMULR(e << 9, inv), with e << 9 < 2^31 and
 *   inv < 2^31 unless sum == 1 (that row takes mcf_softmax_s8); when inv < 2^22 (sum > 2^9, the usual case)
 *   the same product is SMMULR(e, inv << 9), one shift per row instead of one per score;
 *   u = min(that, 255), USAT (the value is >= 0).
 * Scores are read four at a time. Otherwise mcf_softmax_s8 writes p over the row and u = p + 128. */
static int32_t softmax_u16(int8_t *row, int32_t tokens, const int32_t *exp_table, int small_table,
                           uint32_t *x16, int32_t t) {
    const int32_t groups = tokens >> 2;
    const int32_t tail = tokens & 3;
    int16_t *lanes = (int16_t *)x16 + 4 * t;           /* key 4g + r at lanes[16g + 2 (r & 1) + (r >> 1)] */
    int16_t *rest = (int16_t *)(x16 + 8 * groups) + t; /* leftover r at rest[4 * r] */
    const int32_t max = mcf_dsp_row_max(row, tokens);
    const int32_t *table = exp_table + max; /* table[-s] == exp_table[max - s] */
    const uint32_t maxes = ((uint32_t)max & 0xFFu) * 0x01010101u;
    uint32_t sum = 0;
    if (small_table) {
        const int8_t *end = row + 4 * groups;
        for (const int8_t *p = row; p != end; p += 4) {
            const uint32_t d = mcf_usub8(maxes, mcf_read4(p));
            sum += (uint32_t)EXP4(d, 0) + (uint32_t)EXP4(d, 1) + (uint32_t)EXP4(d, 2) + (uint32_t)EXP4(d, 3);
        }
        for (int32_t r = 0; r < tail; r++) {
            sum += (uint32_t)table[-row[4 * groups + r]];
        }
    }
    int32_t u_sum = 0;
    if (small_table && sum != 1) {
        const int32_t inv = sum == 0 ? 0 : (int32_t)(0x80000000u / sum);
        if (inv < (1 << 22)) {
            const int32_t inv9 = inv << 9;
            uint32_t *words =
                x16 + 2 * t; /* lanes as words: (key 4g, key 4g + 2), (key 4g + 1, key 4g + 3) */
            /* u values (<= 256) paired before USAT16 clamps both; lane sums in two UADD16 accumulators, each
             * lane at most 255 * 256 < 2^16 (tokens <= 1024). */
            uint32_t sums02 = 0, sums13 = 0;
            const int8_t *end = row + 4 * groups;
            for (; row != end; row += 4, words += 8) {
                const uint32_t d = mcf_usub8(maxes, mcf_read4(row));
                const uint32_t u02 = mcf_usat16_8(mcf_pack_low_lanes((uint32_t)mcf_smmulr(EXP4(d, 0), inv9),
                                                                     (uint32_t)mcf_smmulr(EXP4(d, 2), inv9)));
                const uint32_t u13 = mcf_usat16_8(mcf_pack_low_lanes((uint32_t)mcf_smmulr(EXP4(d, 1), inv9),
                                                                     (uint32_t)mcf_smmulr(EXP4(d, 3), inv9)));
                words[0] = u02;
                words[1] = u13;
                sums02 = mcf_uadd16(sums02, u02);
                sums13 = mcf_uadd16(sums13, u13);
            }
            u_sum = (int32_t)((sums02 & 0xFFFFu) + (sums02 >> 16) + (sums13 & 0xFFFFu) + (sums13 >> 16));
        } else {
            for (int32_t g = 0; g < groups; g++, row += 4, lanes += 16) {
                const int32_t u0 = mcf_usat8(mcf_smmulr(table[-row[0]] << 9, inv));
                const int32_t u1 = mcf_usat8(mcf_smmulr(table[-row[1]] << 9, inv));
                const int32_t u2 = mcf_usat8(mcf_smmulr(table[-row[2]] << 9, inv));
                const int32_t u3 = mcf_usat8(mcf_smmulr(table[-row[3]] << 9, inv));
                lanes[0] = (int16_t)u0;
                lanes[1] = (int16_t)u2;
                lanes[2] = (int16_t)u1;
                lanes[3] = (int16_t)u3;
                u_sum += u0 + u1 + u2 + u3;
            }
        }
        for (int32_t r = 0; r < tail; r++) {
            const int32_t u = mcf_usat8(mcf_smmulr(table[-row[r]] << 9, inv));
            rest[4 * r] = (int16_t)u;
            u_sum += u;
        }
        return u_sum;
    }
    (void)mcf_softmax_s8(row, exp_table, row, tokens); /* cannot fail: every argument is valid */
    for (int32_t g = 0; g < groups; g++, row += 4, lanes += 16) {
        lanes[0] = (int16_t)(row[0] + 128);
        lanes[1] = (int16_t)(row[2] + 128);
        lanes[2] = (int16_t)(row[1] + 128);
        lanes[3] = (int16_t)(row[3] + 128);
        u_sum += row[0] + row[1] + row[2] + row[3] + 4 * 128;
    }
    for (int32_t r = 0; r < tail; r++) {
        rest[4 * r] = (int16_t)(row[r] + 128);
        u_sum += row[r] + 128;
    }
    return u_sum;
}

/* Token t's lanes of a u16 block (layout of mcf_dsp_widen4) set to zero: a block of fewer than four queries.
 */
static void zero_u16(uint32_t *x16, int32_t tokens, int32_t t) {
    const int32_t groups = tokens >> 2;
    const int32_t tail = tokens & 3;
    for (int32_t g = 0; g < groups; g++) {
        x16[8 * g + 2 * t] = 0;
        x16[8 * g + 2 * t + 1] = 0;
    }
    int16_t *rest = (int16_t *)(x16 + 8 * groups) + t; /* leftover r at rest[4 * r] */
    for (int32_t r = 0; r < tail; r++) {
        rest[4 * r] = 0;
    }
}

/* Whether softmax_u16 may take its 32-bit path for this table and sequence length. */
static int small_exp_table(const int32_t *exp_table, int32_t tokens) {
    if (tokens > SMALL_EXP_TOKENS) {
        return 0;
    }
    for (int32_t i = 0; i < 256; i++) {
        if (exp_table[i] > SMALL_EXP_ENTRY) {
            return 0;
        }
    }
    return 1;
}

/* The K or V of a head: int8 rows (k_head, v_head), or the once kernel's widened copy of them. */
typedef struct {
    const int8_t *rows;
    const int16_t *wide; /* NULL: the int8 rows */
} head_rows;

/* mcf_dsp_rows4_shared over `count` tokens (MCF_DSP_BLOCK, or for widened rows mcf_dsp_shared16_rows) with
 * the head's K or V as `rows` weight rows, widened or not. */
static void head_rows4(const uint32_t *x16, int32_t length, head_rows w, int32_t rows,
                       const int32_t start[MCF_DSP_BLOCK], const mcf_dsp_requant *q, int8_t *out,
                       int32_t token_stride, int32_t count) {
#if MCF_DSP_WIDE_KV
    if (w.wide != NULL) {
        mcf_dsp_rows4_shared16(x16, length, w.wide, rows, start, q, out, token_stride, count);
        return;
    }
#endif
    mcf_dsp_rows4_shared(x16, length, w.rows, rows, start, q, out, token_stride, count);
}

/* Pass 2 for one head and one block of queries: the context of `count` queries over their q, in place (the
 * head's columns of their context rows). */
static void head_attention(const mcf_attention_params *att, const int32_t *exp_table, int32_t tokens,
                           int32_t channels, int32_t head_dim, head_rows k, head_rows v, int8_t *q_rows,
                           int32_t count, const mcf_dsp_scratch *s, int8_t *scores, int small_table) {
    const mcf_dsp_requant score_q = mcf_dsp_requant_make(att->score_mult, att->score_shift, att->score_zp);
    const mcf_dsp_requant out_q = mcf_dsp_requant_make(att->out_mult, att->out_shift, att->out_zp);
    int32_t k_fix[MCF_DSP_BLOCK];
    int32_t v_fix[MCF_DSP_BLOCK] = {0, 0, 0, 0};

    /* Scores: x16 holds the queries minus q_zp (a partial block repeats its last query); key j is weight row
     * j. Every block computes `rows` score rows (four, or two on the two-token loop; the score area has
     * four). */
    const int32_t rows = k.wide != NULL ? mcf_dsp_shared16_rows(count) : MCF_DSP_BLOCK;
    mcf_dsp_widen4(q_rows, channels, count, head_dim, att->q_zp, s->x16);
    mcf_dsp_x16_sums(s->x16, head_dim, k_fix); /* sum_c (q_c - q_zp) */
    for (int32_t t = 0; t < MCF_DSP_BLOCK; t++) {
        k_fix[t] *= -att->k_zp;
    }
    head_rows4(s->x16, head_dim, k, tokens, k_fix, &score_q, scores, tokens, rows);
    /* Context: x16 holds u = p + 128 (rows count..3 zero); V's column c is weight row c. A partial block
     * writes its rows into the int8 area (free in pass 2) and copies `count` of them. */
    for (int32_t t = 0; t < MCF_DSP_BLOCK; t++) {
        if (t < count) {
            v_fix[t] =
                -att->v_zp * softmax_u16(scores + t * tokens, tokens, exp_table, small_table, s->x16, t);
        } else {
            zero_u16(s->x16, tokens, t);
        }
    }
    if (count == MCF_DSP_BLOCK) {
        head_rows4(s->x16, tokens, v, head_dim, v_fix, &out_q, q_rows, channels, rows);
        return;
    }
    head_rows4(s->x16, tokens, v, head_dim, v_fix, &out_q, s->area, head_dim, rows);
    for (int32_t t = 0; t < count; t++) {
        memcpy(q_rows + t * channels, s->area + t * head_dim, (size_t)head_dim);
    }
}

void mcf_dsp_attention_heads(const mcf_attention_block_dims *dims, const mcf_attention_block_params *params,
                             int8_t *x, int8_t *k_head, int8_t *v_head, int8_t *context, void *scratch,
                             int normalise_once) {
    const int32_t tokens = dims->tokens;
    const int32_t channels = dims->channels;
    const int32_t qkv_rank = dims->qkv_rank;
    const int32_t proj_rank = dims->proj_rank;
    const int32_t head_dim = channels / dims->heads;
    int32_t width = channels;
    width = qkv_rank > width ? qkv_rank : width;
    width = proj_rank > width ? proj_rank : width;
    const mcf_dsp_scratch s = mcf_dsp_scratch_layout(scratch, width > tokens ? width : tokens);
    int8_t *scores = s.area + MCF_DSP_BLOCK * width;
    const int small_table = small_exp_table(params->exp_table, tokens);
    const mcf_dsp_attention_fast fast = mcf_dsp_attention_fast_of(dims, params);
    const int norm1_lean = /* once per call, not per head and block */
        mcf_dsp_layernorm_lean(&params->norm.params, params->norm.beta, channels);
    const int32_t in_ch = qkv_rank > 0 ? qkv_rank : channels;
    pass1_input kept = {NULL, NULL}; /* norm1 (and the qkv V factor) of every token: the once kernel */
    int16_t *k16 = NULL; /* the once kernel's K and V widened (mcf_dsp_widen_rows16), after what it kept */
    int16_t *v16 = NULL;
    if (normalise_once) {
        const int32_t zp = params->k.params.in_zp;
        const int one_zp = params->q.params.in_zp == zp && params->v.params.in_zp == zp;
        uint32_t *kept_area = (uint32_t *)(scores + MCF_DSP_BLOCK * tokens); /* word aligned */
        if (one_zp) {
            kept.x16 = kept_area;
        } else {
            kept.normed = (int8_t *)kept_area;
        }
#if MCF_DSP_WIDE_KV
        k16 = (int16_t *)(kept_area + (tokens + MCF_DSP_BLOCK - 1) / MCF_DSP_BLOCK * 2 * in_ch);
        v16 = k16 + tokens * MCF_WIDE_LENGTH(head_dim);
#endif
        for (int32_t t0 = 0; t0 < tokens; t0 += MCF_DSP_BLOCK) { /* the blocks of pass 1 */
            int32_t count;
            const int32_t start = pass1_block(t0, tokens, in_ch, &count);
            int32_t width = in_ch;
            mcf_dsp_qkv_input4(params, norm1_lean, channels, qkv_rank, x + start * channels, count, &s,
                               &width, fast.qkv_v);
            if (one_zp) {
                /* block b's x16 at 2 * in_ch * b words */
                mcf_dsp_widen4(s.area, in_ch, count, in_ch, zp, kept.x16 + t0 / MCF_DSP_BLOCK * 2 * in_ch);
            } else {
                memcpy(kept.normed + start * in_ch, s.area, (size_t)(count * in_ch));
            }
        }
    }

    for (int32_t head = 0; head < dims->heads; head++) {
        const int32_t first = head * head_dim;
        for (int32_t t0 = 0; t0 < tokens; t0 += MCF_DSP_BLOCK) { /* pass 1 */
            int32_t count;
            const int32_t start = pass1_block(t0, tokens, in_ch, &count);
            head_projections(params, tokens, channels, qkv_rank, first, head_dim, start, count,
                             t0 / MCF_DSP_BLOCK, x, kept, k_head, v_head, context, &s, &fast, norm1_lean);
        }
#if MCF_DSP_WIDE_KV
        if (k16 != NULL) {
            mcf_dsp_widen_rows16(k_head, tokens, head_dim, head_dim, k16);
            mcf_dsp_widen_rows16(v_head, head_dim, tokens, tokens, v16);
        }
#endif
        const head_rows k = {k_head, k16};
        const head_rows v = {v_head, v16};
        for (int32_t t0 = 0; t0 < tokens; t0 += MCF_DSP_BLOCK) { /* pass 2 */
            const int32_t count = tokens - t0 < MCF_DSP_BLOCK ? tokens - t0 : MCF_DSP_BLOCK;
            head_attention(&params->attention, params->exp_table, tokens, channels, head_dim, k, v,
                           context + t0 * channels + first, count, &s, scores, small_table);
        }
    }

    /* Pass 3: proj and the residual add over x (written only now, after every head has read it). */
    const mcf_factored_linear *proj = &params->proj;
    for (int32_t t0 = 0; t0 < tokens; t0 += MCF_DSP_BLOCK) {
        const int32_t count = tokens - t0 < MCF_DSP_BLOCK ? tokens - t0 : MCF_DSP_BLOCK;
        int8_t *xb = x + t0 * channels;
        const int8_t *in = context + t0 * channels;
        int32_t in_ch = channels;
        if (proj->v != NULL) {
            mcf_dsp_layer4(proj->v, channels, proj_rank, in, count, s.x16, s.area, proj_rank, fast.proj.v);
            in = s.area;
            in_ch = proj_rank;
        }
        mcf_dsp_layer4(&proj->u, in_ch, channels, in, count, s.x16, s.area, channels, fast.proj.u);
        /* the block's rows are consecutive in x and in the area: one call */
        (void)mcf_add_s8(&params->residual, xb, s.area, xb, count * channels);
    }
}
