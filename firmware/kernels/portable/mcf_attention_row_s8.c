/* One query row of ops.attention: see mcf_fused.h. */
#include "mcf_checks.h"
#include "mcf_fused.h"
#include "mcf_math.h"

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
    int8_t *scores = (int8_t *)scratch; /* [tokens]: scores, then probabilities in place */

    for (int32_t h = 0; h < heads; h++) {
        const int32_t col = h * head_dim;
        const int8_t *q_head = q_row + col;
        const int8_t *k_row = k + col;
        for (int32_t j = 0; j < tokens; j++) {
            int32_t acc = 0;
            for (int32_t c = 0; c < head_dim; c++) {
                acc += (q_head[c] - q_zp) * (k_row[c] - k_zp);
            }
            scores[j] = mcf_requantize_s8(acc, score_mult, score_shift, score_zp);
            k_row += channels;
        }
        /* Cannot fail: every argument is valid. */
        (void)mcf_softmax_s8(scores, exp_table, scores, tokens);

        /* Head h of q_row is consumed: its columns of output_row may be written (output_row may alias q_row).
         */
        int8_t *out_head = output_row + col;
        for (int32_t c = 0; c < head_dim; c++) {
            const int8_t *v_col = v + col + c;
            int32_t acc = 0;
            for (int32_t j = 0; j < tokens; j++) {
                acc += (scores[j] + 128) * (v_col[0] - v_zp);
                v_col += channels;
            }
            out_head[c] = mcf_requantize_s8(acc, out_mult, out_shift, out_zp);
        }
    }
    return MCF_OK;
}
