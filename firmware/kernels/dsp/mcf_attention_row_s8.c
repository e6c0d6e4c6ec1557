/* One query row of ops.attention with the DSP extension: see mcf_fused.h (same contract and results as the
 * portable kernel). Zero points come out of the inner loops as constant corrections:
 *   scores:  sum_c (q_c - q_zp)(k_c - k_zp) = sum_c (q_c - q_zp) k_c - k_zp * sum_c (q_c - q_zp)
 *   context: sum_j u_j (v_jc - v_zp)         = sum_j u_j v_jc - v_zp * sum_j u_j,   u_j = p_j + 128 in [0,
 * 255] so each q word is split once (with its offset) for two keys, and the probabilities are stored as u_j
 * bytes: one word of four u_j splits into the pairs (u_j, u_j+2), (u_j+1, u_j+3) that multiply four value
 * rows packed column-wise (PKHBT/PKHTB), two multiply-accumulates per SMLAD. Every sum stays far inside
 * int32. */
#include "mcf_checks.h"
#include "mcf_dsp.h"
#include "mcf_fused.h"
#include "mcf_math.h"

/* acc[0..3] += sum over four keys of u_j * v[j][c..c+3]; v0 points at v[j][c], rows `stride` apart. */
static inline void context_4x4(uint32_t u, const int8_t *v0, int32_t stride, int32_t acc[4]) {
    const uint32_t u02 = mcf_uxtb16(u);      /* (u_j, u_j+2) */
    const uint32_t u13 = mcf_uxtb16_ror8(u); /* (u_j+1, u_j+3) */
    const uint32_t r0 = mcf_read4(v0), r1 = mcf_read4(v0 + stride);
    const uint32_t r2 = mcf_read4(v0 + 2 * stride), r3 = mcf_read4(v0 + 3 * stride);
    uint32_t a = mcf_sxtb16(r0), b = mcf_sxtb16(r2); /* (v_j c0, v_j c2), (v_j+2 c0, v_j+2 c2) */
    int32_t s0 = mcf_smlad(u02, (a & 0xFFFFu) | (b << 16), acc[0]);
    int32_t s2 = mcf_smlad(u02, (a >> 16) | (b & 0xFFFF0000u), acc[2]);
    a = mcf_sxtb16_ror8(r0); /* channels c1, c3 */
    b = mcf_sxtb16_ror8(r2);
    int32_t s1 = mcf_smlad(u02, (a & 0xFFFFu) | (b << 16), acc[1]);
    int32_t s3 = mcf_smlad(u02, (a >> 16) | (b & 0xFFFF0000u), acc[3]);
    a = mcf_sxtb16(r1);
    b = mcf_sxtb16(r3);
    s0 = mcf_smlad(u13, (a & 0xFFFFu) | (b << 16), s0);
    s2 = mcf_smlad(u13, (a >> 16) | (b & 0xFFFF0000u), s2);
    a = mcf_sxtb16_ror8(r1);
    b = mcf_sxtb16_ror8(r3);
    acc[1] = mcf_smlad(u13, (a & 0xFFFFu) | (b << 16), s1);
    acc[3] = mcf_smlad(u13, (a >> 16) | (b & 0xFFFF0000u), s3);
    acc[0] = s0;
    acc[2] = s2;
}

mcf_status mcf_attention_row_s8(const mcf_attention_dims *dims, const mcf_attention_params *params,
                                const int8_t *q_row, const int8_t *k, const int8_t *v,
                                const int32_t *exp_table, int8_t *output_row, void *scratch) {
    if (!mcf_attention_row_args_ok(dims, params, q_row, k, v, exp_table, output_row, scratch)) {
        return MCF_ERR_ARG;
    }
    const int32_t tokens = dims->tokens;
    const int32_t channels = dims->channels;
    const int32_t heads = dims->heads;
    const int32_t q_zp = params->q_zp;
    const int32_t k_zp = params->k_zp;
    const int32_t v_zp = params->v_zp;
    const int32_t score_mult = params->score_mult;
    const int32_t score_shift = params->score_shift;
    const int32_t score_zp = params->score_zp;
    const int32_t out_mult = params->out_mult;
    const int32_t out_shift = params->out_shift;
    const int32_t out_zp = params->out_zp;
    const int32_t head_dim = channels / heads;
    const uint32_t q_offset = mcf_pack_pair(-q_zp);
    const mcf_dsp_requant score_q = mcf_dsp_requant_make(score_mult, score_shift, score_zp);
    const mcf_dsp_requant out_q = mcf_dsp_requant_make(out_mult, out_shift, out_zp);
    int8_t *scores = (int8_t *)scratch; /* [tokens]: scores, probabilities, then u_j = p_j + 128 as bytes */
    uint8_t *u = (uint8_t *)scratch;

    for (int32_t h = 0; h < heads; h++) {
        const int32_t col = h * head_dim;
        const int8_t *q_head = q_row + col;
        int32_t q_sum = 0; /* sum_c (q_c - q_zp) */
        for (int32_t c = 0; c < head_dim; c++) {
            q_sum += q_head[c] - q_zp;
        }
        const int32_t k_fix = -k_zp * q_sum;
        const int8_t *k_row = k + col;
        int32_t j = 0;
        for (; j + 2 <= tokens; j += 2, k_row += 2 * channels) {
            int32_t acc[2] = {k_fix, k_fix};
            mcf_dot_1x2(q_head, k_row, k_row + channels, head_dim, q_offset, acc);
            scores[j] = mcf_dsp_requant_apply(&score_q, acc[0]);
            scores[j + 1] = mcf_dsp_requant_apply(&score_q, acc[1]);
        }
        if (j < tokens) {
            const int32_t acc = mcf_dot_1x1(q_head, k_row, head_dim, q_offset, k_fix);
            scores[j] = mcf_dsp_requant_apply(&score_q, acc);
        }
        /* Cannot fail: every argument is valid. */
        (void)mcf_softmax_s8(scores, exp_table, scores, tokens);
        int32_t u_sum = 0;
        for (j = 0; j < tokens; j++) {
            u[j] = (uint8_t)(scores[j] + 128);
            u_sum += u[j];
        }
        const int32_t v_fix = -v_zp * u_sum;

        /* Head h of q_row is consumed: its columns of output_row may be written (output_row may alias q_row).
         */
        int8_t *out_head = output_row + col;
        const int8_t *v_head = v + col;
        int32_t c = 0;
        for (; c + 4 <= head_dim; c += 4) {
            int32_t acc[4] = {v_fix, v_fix, v_fix, v_fix};
            const int8_t *v0 = v_head + c;
            for (j = 0; j + 4 <= tokens; j += 4, v0 += 4 * channels) {
                context_4x4(mcf_read4((const int8_t *)u + j), v0, channels, acc);
            }
            for (; j < tokens; j++, v0 += channels) {
                acc[0] += u[j] * v0[0];
                acc[1] += u[j] * v0[1];
                acc[2] += u[j] * v0[2];
                acc[3] += u[j] * v0[3];
            }
            for (int32_t i = 0; i < 4; i++) {
                out_head[c + i] = mcf_dsp_requant_apply(&out_q, acc[i]);
            }
        }
        for (; c < head_dim; c++) { /* head_dim not a multiple of 4 */
            const int8_t *v_col = v_head + c;
            int32_t acc = v_fix;
            for (j = 0; j < tokens; j++, v_col += channels) {
                acc += u[j] * v_col[0];
            }
            out_head[c] = mcf_dsp_requant_apply(&out_q, acc);
        }
    }
    return MCF_OK;
}
