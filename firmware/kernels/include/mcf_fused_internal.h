/* Inline helpers shared by the fused per-token kernels (not part of the public API). */
#ifndef MCF_FUSED_INTERNAL_H
#define MCF_FUSED_INTERNAL_H

#include "mcf_fused.h"

/* Buffer `index` of the per-token chain, `length` bytes: even indices start the scratch, odd ones end it,
 * so consecutive buffers (an op's input and output) never overlap within `size` bytes. */
static inline int8_t *chain_buffer(int8_t *scratch, int32_t size, int32_t index, int32_t length) {
    return index % 2 == 0 ? scratch : scratch + (size - length);
}

/* The attention kernels' parameter check: V factors present exactly where the dims give a rank. */
static inline int attention_ranks_match(const mcf_attention_block_dims *dims,
                                        const mcf_attention_block_params *params) {
    return (dims->qkv_rank > 0) == (params->qkv_v != NULL) &&
           (dims->proj_rank > 0) == (params->proj.v != NULL);
}

/* mcf_attention_block_s8's argument check, shared by its variants: its scratch size, or 0 when an argument is
 * NULL, the dims are invalid or the ranks disagree with the V factors. */
static inline int32_t attention_block_checked_size(const mcf_attention_block_dims *dims,
                                                   const mcf_attention_block_params *params, const int8_t *x,
                                                   const int8_t *k_buf, const int8_t *v_buf,
                                                   const void *scratch) {
    if (dims == NULL || params == NULL || x == NULL || k_buf == NULL || v_buf == NULL || scratch == NULL) {
        return 0;
    }
    const int32_t size = mcf_attention_block_s8_get_buffer_size(dims); /* 0: invalid dims */
    return attention_ranks_match(dims, params) ? size : 0;
}

/* mcf_mlp_block_s8's argument check, shared by its variants: its scratch size, or 0 when an argument is NULL,
 * the dims are invalid or the ranks disagree with the V factors. */
static inline int32_t mlp_block_checked_size(const mcf_mlp_block_dims *dims,
                                             const mcf_mlp_block_params *params, const int8_t *x,
                                             const void *scratch) {
    if (dims == NULL || params == NULL || x == NULL || scratch == NULL) {
        return 0;
    }
    const int32_t size = mcf_mlp_block_s8_get_buffer_size(dims); /* 0: invalid dims */
    const int ranks_match =
        (dims->fc1_rank > 0) == (params->fc1.v != NULL) && (dims->fc2_rank > 0) == (params->fc2.v != NULL);
    return ranks_match ? size : 0;
}

/* A linear on one token, in either weight layout. */
static inline mcf_status linear_row(const mcf_linear_layer *layer, int32_t in_ch, int32_t out_ch,
                                    const int8_t *input, int8_t *output) {
    const mcf_linear_dims dims = {1, in_ch, out_ch};
    if (layer->weight16 != NULL) {
        return layer->weight != NULL ? MCF_ERR_ARG /* exactly one layout */
                                     : mcf_linear_w16_s8(&dims, &layer->params, &layer->quant, input,
                                                         layer->weight16, layer->bias, output);
    }
    return mcf_linear_s8(&dims, &layer->params, &layer->quant, input, layer->weight, layer->bias, output);
}

/* A factored linear on one token: input -> (mid, when low rank) -> output. */
static inline mcf_status factored_row(const mcf_factored_linear *layer, int32_t in_ch, int32_t rank,
                                      int32_t out_ch, const int8_t *input, int8_t *mid, int8_t *output) {
    if (layer->v == NULL) {
        return linear_row(&layer->u, in_ch, out_ch, input, output);
    }
    const mcf_status status = linear_row(layer->v, in_ch, rank, input, mid);
    return status != MCF_OK ? status : linear_row(&layer->u, rank, out_ch, mid, output);
}

/* The input of q, k and v for one token: norm1(x_row) into normed, then the qkv V factor into reduced
 * when there is one. *qkv_in is set to whichever holds the result. */
static inline mcf_status qkv_input(const mcf_attention_block_params *params, int32_t channels,
                                   int32_t qkv_rank, const int8_t *x_row, int8_t *normed, int8_t *reduced,
                                   const int8_t **qkv_in) {
    const mcf_dims row = {1, channels};
    const mcf_layernorm_layer *norm = &params->norm;
    mcf_status status = mcf_layernorm_s8(&row, &norm->params, x_row, norm->gamma, norm->beta, normed);
    *qkv_in = normed;
    if (status == MCF_OK && params->qkv_v != NULL) {
        status = linear_row(params->qkv_v, channels, qkv_rank, normed, reduced);
        *qkv_in = reduced;
    }
    return status;
}

/* The attention half one token at a time through the chain of mcf_attention_block_s8_get_buffer_size in
 * `size` bytes of scratch: the portable kernel, and the DSP kernel for short sequences. dims and params
 * passed the kernel's checks (size > 0, ranks consistent with the V factors). */
static inline mcf_status attention_block_per_token(const mcf_attention_block_dims *dims,
                                                   const mcf_attention_block_params *params, int8_t *x,
                                                   int8_t *k_buf, int8_t *v_buf, void *scratch,
                                                   int32_t size) {
    const int32_t qkv_rank = dims->qkv_rank;
    const int32_t proj_rank = dims->proj_rank;
    const int32_t tokens = dims->tokens;
    const int32_t channels = dims->channels;
    const int32_t in_ch = qkv_rank > 0 ? qkv_rank : channels; /* input width of q, k, v */

    /* The chain of mcf_attention_block_s8_get_buffer_size: norm1 -> [qkv mid] -> q/context -> [proj mid]
     * -> proj; the score row sits at the end opposite the q/context row. */
    int8_t *base = (int8_t *)scratch;
    int32_t index = 0;
    int8_t *normed = chain_buffer(base, size, index++, channels);
    int8_t *reduced = qkv_rank > 0 ? chain_buffer(base, size, index++, qkv_rank) : NULL;
    const int32_t context_index = index++;
    int8_t *context = chain_buffer(base, size, context_index, channels);
    int8_t *scores = chain_buffer(base, size, context_index + 1, tokens);
    int8_t *proj_mid = proj_rank > 0 ? chain_buffer(base, size, index++, proj_rank) : NULL;
    int8_t *proj_out = chain_buffer(base, size, index, channels);

    /* Pass 1: K and V of every token. */
    for (int32_t t = 0; t < tokens; t++) {
        const int8_t *qkv_in = NULL;
        mcf_status status = qkv_input(params, channels, qkv_rank, x + t * channels, normed, reduced, &qkv_in);
        if (status == MCF_OK) {
            status = linear_row(&params->k, in_ch, channels, qkv_in, k_buf + t * channels);
        }
        if (status == MCF_OK) {
            status = linear_row(&params->v, in_ch, channels, qkv_in, v_buf + t * channels);
        }
        if (status != MCF_OK) {
            return status;
        }
    }

    /* Pass 2: per query token, q (norm1 and the V factor recomputed: the same values), its context row,
     * proj and the residual add over x[t] (x[t] is read by nothing else: K and V are done). Every check is
     * data independent: an error shows on token 0, before the add (which checks first) writes x. */
    const mcf_attention_dims attention_dims = {tokens, channels, dims->heads};
    for (int32_t t = 0; t < tokens; t++) {
        int8_t *x_row = x + t * channels;
        const int8_t *qkv_in = NULL;
        mcf_status status = qkv_input(params, channels, qkv_rank, x_row, normed, reduced, &qkv_in);
        if (status == MCF_OK) {
            status = linear_row(&params->q, in_ch, channels, qkv_in, context);
        }
        if (status == MCF_OK) { /* the context row over the q row, in place */
            status = mcf_attention_row_s8(&attention_dims, &params->attention, context, k_buf, v_buf,
                                          params->exp_table, context, scores);
        }
        if (status == MCF_OK) {
            status = factored_row(&params->proj, channels, proj_rank, channels, context, proj_mid, proj_out);
        }
        if (status == MCF_OK) {
            status = mcf_add_s8(&params->residual, x_row, proj_out, x_row, channels);
        }
        if (status != MCF_OK) {
            return status;
        }
    }
    return MCF_OK;
}

/* The MLP half one token at a time through the chain of mcf_mlp_block_s8_get_buffer_size in `size` bytes of
 * scratch: the portable kernel, and the DSP kernel for short sequences. dims and params passed the kernel's
 * checks (size > 0, ranks consistent with the V factors). */
static inline mcf_status mlp_block_per_token(const mcf_mlp_block_dims *dims,
                                             const mcf_mlp_block_params *params, int8_t *x, void *scratch,
                                             int32_t size) {
    const int32_t fc1_rank = dims->fc1_rank;
    const int32_t fc2_rank = dims->fc2_rank;
    const int32_t tokens = dims->tokens;
    const int32_t channels = dims->channels;
    const int32_t hidden = dims->hidden;

    /* The chain of mcf_mlp_block_s8_get_buffer_size: norm2 -> [fc1 mid] -> hidden -> [fc2 mid] -> fc2. */
    int8_t *base = (int8_t *)scratch;
    int32_t index = 0;
    int8_t *normed = chain_buffer(base, size, index++, channels);
    int8_t *fc1_mid = fc1_rank > 0 ? chain_buffer(base, size, index++, fc1_rank) : NULL;
    int8_t *act = chain_buffer(base, size, index++, hidden);
    int8_t *fc2_mid = fc2_rank > 0 ? chain_buffer(base, size, index++, fc2_rank) : NULL;
    int8_t *out = chain_buffer(base, size, index, channels);

    const mcf_dims row = {1, channels};
    const mcf_layernorm_layer *norm = &params->norm;
    /* Every check of the kernels below is data independent: an error shows on token 0, before the residual
     * add (which checks its parameters before writing) first writes x. */
    for (int32_t t = 0; t < tokens; t++) {
        int8_t *x_row = x + t * channels;
        mcf_status status = mcf_layernorm_s8(&row, &norm->params, x_row, norm->gamma, norm->beta, normed);
        if (status == MCF_OK) {
            status = factored_row(&params->fc1, channels, fc1_rank, hidden, normed, fc1_mid, act);
        }
        if (status == MCF_OK) {
            status = mcf_lut_s8(act, params->gelu_table, act, hidden);
        }
        if (status == MCF_OK) {
            status = factored_row(&params->fc2, hidden, fc2_rank, channels, act, fc2_mid, out);
        }
        if (status == MCF_OK) {
            status = mcf_add_s8(&params->residual, x_row, out, x_row, channels);
        }
        if (status != MCF_OK) {
            return status;
        }
    }
    return MCF_OK;
}

/* Rows [first, first + count) of a linear layer: the same per-channel arithmetic on fewer outputs. */
static inline mcf_linear_layer layer_rows(const mcf_linear_layer *layer, int32_t in_ch, int32_t first) {
    mcf_linear_layer rows = *layer;
    rows.quant.mult = layer->quant.mult + first;
    rows.quant.shift = layer->quant.shift + first;
    if (layer->weight != NULL) {
        rows.weight = layer->weight + (size_t)first * (size_t)in_ch;
    }
    if (layer->weight16 != NULL) {
        rows.weight16 = layer->weight16 + (size_t)first * (size_t)in_ch;
    }
    rows.bias = layer->bias + first;
    return rows;
}

/* mcf_attention_block_heads_s8's argument check, shared by its variants: no NULL pointer, valid dims, ranks
 * consistent with the V factors. */
static inline int attention_block_heads_args_ok(const mcf_attention_block_dims *dims,
                                                const mcf_attention_block_params *params, const int8_t *x,
                                                const int8_t *k_head, const int8_t *v_head,
                                                const int8_t *context, const void *scratch) {
    if (dims == NULL || params == NULL || x == NULL || k_head == NULL || v_head == NULL || context == NULL ||
        scratch == NULL) {
        return 0;
    }
    return mcf_attention_block_heads_s8_get_buffer_size(dims) != 0 /* valid dims */ &&
           attention_ranks_match(dims, params);
}

/* mcf_attention_block_heads_s8 one token at a time through the buffers of its one-token scratch layout
 * (`scratch`, at least d + qkv_rank + head_dim + tokens and proj_rank + d bytes): the portable kernel, and
 * the DSP kernel for short sequences. dims and params passed the kernel's checks (valid dims, ranks
 * consistent with the V factors). */
static inline mcf_status attention_block_heads_per_token(const mcf_attention_block_dims *dims,
                                                         const mcf_attention_block_params *params, int8_t *x,
                                                         int8_t *k_head, int8_t *v_head, int8_t *context,
                                                         void *scratch) {
    const int32_t qkv_rank = dims->qkv_rank;
    const int32_t proj_rank = dims->proj_rank;
    const int32_t tokens = dims->tokens;
    const int32_t channels = dims->channels;
    const int32_t head_dim = channels / dims->heads;
    const int32_t in_ch = qkv_rank > 0 ? qkv_rank : channels; /* input width of q, k, v */

    /* Scratch, passes 1-2: normed [d], reduced [qkv_rank], q row [head_dim], score row [tokens];
     * pass 3 reuses it: proj_mid [proj_rank], proj_out [d]. */
    int8_t *normed = (int8_t *)scratch;
    int8_t *reduced = normed + channels;
    int8_t *q_row = reduced + qkv_rank;
    int8_t *scores = q_row + head_dim;
    int8_t *proj_mid = (int8_t *)scratch;
    int8_t *proj_out = proj_mid + proj_rank;

    const mcf_attention_dims head_dims = {tokens, head_dim, 1};
    for (int32_t head = 0; head < dims->heads; head++) {
        const int32_t first = head * head_dim;
        const mcf_linear_layer q = layer_rows(&params->q, in_ch, first);
        const mcf_linear_layer k = layer_rows(&params->k, in_ch, first);
        const mcf_linear_layer v = layer_rows(&params->v, in_ch, first);
        /* Pass 1: this head's K and V for every token (norm1 and the V factor recomputed: the same values).
         */
        for (int32_t t = 0; t < tokens; t++) {
            const int8_t *qkv_in = NULL;
            mcf_status status =
                qkv_input(params, channels, qkv_rank, x + t * channels, normed, reduced, &qkv_in);
            if (status == MCF_OK) {
                status = linear_row(&k, in_ch, head_dim, qkv_in, k_head + t * head_dim);
            }
            if (status == MCF_OK) {
                status = linear_row(&v, in_ch, head_dim, qkv_in, v_head + t * head_dim);
            }
            if (status != MCF_OK) {
                return status;
            }
        }
        /* Pass 2: per query token, this head's q and its slice of the context row. */
        for (int32_t t = 0; t < tokens; t++) {
            const int8_t *qkv_in = NULL;
            mcf_status status =
                qkv_input(params, channels, qkv_rank, x + t * channels, normed, reduced, &qkv_in);
            if (status == MCF_OK) {
                status = linear_row(&q, in_ch, head_dim, qkv_in, q_row);
            }
            if (status == MCF_OK) {
                status = mcf_attention_row_s8(&head_dims, &params->attention, q_row, k_head, v_head,
                                              params->exp_table, context + t * channels + first, scores);
            }
            if (status != MCF_OK) {
                return status;
            }
        }
    }
    /* Pass 3: proj and the residual add over x[t] (x is written only now: every error shows before). */
    for (int32_t t = 0; t < tokens; t++) {
        int8_t *x_row = x + t * channels;
        mcf_status status = factored_row(&params->proj, channels, proj_rank, channels, context + t * channels,
                                         proj_mid, proj_out);
        if (status == MCF_OK) {
            status = mcf_add_s8(&params->residual, x_row, proj_out, x_row, channels);
        }
        if (status != MCF_OK) {
            return status;
        }
    }
    return MCF_OK;
}

#endif /* MCF_FUSED_INTERNAL_H */
