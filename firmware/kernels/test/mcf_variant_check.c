/* The checks of the kernel harness (mcf_harness.h): each case draws its shapes, parameters and data from the
 * seeded generator, with edge values (one token, odd widths, zero points -128 and 127, extreme multipliers,
 * shifts and biases) drawn often, runs the portable reference and the variant, and compares status, output
 * and the guard bytes behind the output. The fused blocks' variant runs with half of its layers' weights
 * widened (mcf_linear_layer.weight16), the reference with int8 weights. */
#include "mcf_harness.h"

static int mismatches;

static void clear_outputs(int32_t n) {
    memset(out_ref, 0x5A, (size_t)n + GUARD);
    memset(out_var, 0x5A, (size_t)n + GUARD);
}

static void compare(const char *op, int index, mcf_status ref, mcf_status var, int32_t n) {
    if (ref != var || memcmp(out_ref, out_var, (size_t)n + GUARD) != 0) {
        int32_t first = 0;
        while (first < n + GUARD && out_ref[first] == out_var[first]) {
            first++;
        }
        put("CASE ");
        put(op);
        put(" ");
        put_int(index);
        put(" MISMATCH status ");
        put_int(ref);
        put(" ");
        put_int(var);
        put(" first byte ");
        put_int(first);
        end_line();
        mismatches++;
    }
}

static void checked(const char *op, int cases) {
    put("CHECKED ");
    put(op);
    put(" ");
    put_int(cases);
    end_line();
}

static void check_linear(int cases) {
    for (int i = 0; i < cases; i++) {
        /* One case in ten with rows wider than the DSP kernel's stack row (MCF_DSP_ROW_MAX, 256). */
        const mcf_linear_dims dims = {rnd_size(6), (i % 10 == 9 ? 256 : 0) + rnd_size(80), rnd_size(40)};
        const mcf_linear_params params = {rnd_zp(), rnd_zp()};
        for (int32_t n = 0; n < dims.out_ch; n++) {
            rnd_channel_requant(&mult_a[n], &shift_a[n]);
        }
        const mcf_channel_quant quant = {mult_a, shift_a};
        rnd_bytes(in_a, dims.tokens * dims.in_ch);
        rnd_bytes(weight_a, dims.out_ch * dims.in_ch);
        rnd_bias(bias_a, dims.out_ch);
        const int32_t n_out = dims.tokens * dims.out_ch;
        clear_outputs(n_out);
        const mcf_status r = ref_mcf_linear_s8(&dims, &params, &quant, in_a, weight_a, bias_a, out_ref);
        const mcf_status v = mcf_linear_s8(&dims, &params, &quant, in_a, weight_a, bias_a, out_var);
        compare("linear", i, r, v, n_out);
    }
    checked("linear", cases);
}

/* The patch embedding: the pair kernel, or (`rows`) the patch-row kernel with its scratch. */
static void check_patch_embed(int cases, int rows) {
    const char *op = rows ? "patch_embed_rows" : "patch_embed";
    for (int i = 0; i < cases; i++) {
        const int32_t patch = rnd_range(1, 5);
        /* The patch-row kernel: token blocks in three cases of four, pairs, or now and then an invalid value.
         */
        const int32_t blocks = !rows ? 0 : chance(5) ? 2 : chance(75) ? MCF_PATCH_BLOCKS : 0;
        const mcf_patch_embed_dims dims = {
            patch * rnd_size(5), patch * rnd_size(5), rnd_range(1, 3), patch, rnd_size(24), blocks};
        const mcf_linear_params params = {rnd_zp(), rnd_zp()};
        for (int32_t n = 0; n < dims.out_ch; n++) {
            rnd_channel_requant(&mult_a[n], &shift_a[n]);
        }
        const mcf_channel_quant quant = {mult_a, shift_a};
        rnd_bytes(in_a, dims.height * dims.width * dims.channels);
        rnd_bytes(weight_a, dims.out_ch * patch * patch * dims.channels);
        rnd_bias(bias_a, dims.out_ch);
        const int32_t n_out = (dims.height / patch) * (dims.width / patch) * dims.out_ch;
        clear_outputs(n_out);
        mcf_status r, v;
        if (rows) {
            r = ref_mcf_patch_embed_rows_s8(&dims, &params, &quant, in_a, weight_a, bias_a, out_ref,
                                            scratch_ref);
            v = mcf_patch_embed_rows_s8(&dims, &params, &quant, in_a, weight_a, bias_a, out_var, scratch_var);
        } else {
            r = ref_mcf_patch_embed_s8(&dims, &params, &quant, in_a, weight_a, bias_a, out_ref);
            v = mcf_patch_embed_s8(&dims, &params, &quant, in_a, weight_a, bias_a, out_var);
        }
        compare(op, i, r, v, n_out);
    }
    checked(op, cases);
}

/* Softmax tables: all zero, all 2^15, entries up to 2^31 - 1 (past the DSP kernels' 32-bit paths), a lone 1
 * at index 0 (sums of 1), or (most often) random Q15 values decaying with the index. */
static void rnd_exp_table(void) {
    const int kind = rnd_range(0, 7);
    for (int i = 0; i < 256; i++) {
        const int32_t q15 = (int32_t)(rnd() % 32769u) >> (i / 32);
        exp_table[i] = kind == 0   ? 0
                       : kind == 1 ? 32768
                       : kind == 2 ? (int32_t)(rnd() >> 1)
                       : kind == 3 ? (i == 0)
                       : kind == 4
                           ? (int32_t)(rnd() % 8u) /* row sums up to 2^9: the softmax's unshifted path */
                           : q15;
    }
}

static void rnd_attention_params(mcf_attention_params *p) {
    p->q_zp = rnd_zp();
    p->k_zp = rnd_zp();
    p->v_zp = rnd_zp();
    rnd_requant(&p->score_mult, &p->score_shift);
    p->score_zp = rnd_zp();
    rnd_requant(&p->out_mult, &p->out_shift);
    p->out_zp = rnd_zp();
}

static void check_attention_row(int cases) {
    for (int i = 0; i < cases; i++) {
        const int32_t heads = rnd_range(1, 4);
        const mcf_attention_dims dims = {rnd_size(70), heads * rnd_size(20), heads};
        mcf_attention_params params;
        rnd_attention_params(&params);
        rnd_exp_table();
        rnd_bytes(in_a, dims.channels);
        rnd_bytes(in_b, dims.tokens * dims.channels);
        rnd_bytes(in_c, dims.tokens * dims.channels);
        clear_outputs(dims.channels);
        const mcf_status r =
            ref_mcf_attention_row_s8(&dims, &params, in_a, in_b, in_c, exp_table, out_ref, scratch_ref);
        const mcf_status v =
            mcf_attention_row_s8(&dims, &params, in_a, in_b, in_c, exp_table, out_var, scratch_var);
        compare("attention_row", i, r, v, dims.channels);
        if (chance(30)) { /* in place over the q row, as the fused attention block calls it */
            memcpy(out_ref, in_a, (size_t)dims.channels);
            memcpy(out_var, in_a, (size_t)dims.channels);
            const mcf_status r2 = ref_mcf_attention_row_s8(&dims, &params, out_ref, in_b, in_c, exp_table,
                                                           out_ref, scratch_ref);
            const mcf_status v2 =
                mcf_attention_row_s8(&dims, &params, out_var, in_b, in_c, exp_table, out_var, scratch_var);
            compare("attention_row_inplace", i, r2, v2, dims.channels);
        }
    }
    checked("attention_row", cases);
}

/* rnd_layer for the checks: one layer in ten has a channel off the requantization fast path (shift -1 or -25,
 * bias +-2^30), so the DSP kernels take their C channel loop for it. */
static void rnd_check_layer(mcf_linear_layer *layer, int8_t *weight, int32_t *bias, int32_t *mult,
                            int8_t *shift, int32_t in_ch, int32_t out_ch) {
    rnd_layer(layer, weight, bias, mult, shift, in_ch, out_ch);
    if (chance(10)) {
        const int32_t n = rnd_range(0, out_ch - 1);
        const int kind = rnd_range(0, 3);
        if (kind < 2) {
            shift[n] = (int8_t)(kind == 0 ? -1 : -25);
        } else {
            bias[n] = kind == 2 ? (1 << 30) : -(1 << 30);
        }
    }
}

/* The widened copies of the variant's layers (mcf_linear_layer.weight16, codegen's layout), from a pool
 * reset per case. */
#define WIDENED_VALUES (8 * 4096)
static int16_t widened_pool[WIDENED_VALUES] __attribute__((aligned(8)));
static int32_t widened_used;

/* `layer` as the variant runs it: half of the time with its weights widened, so that one block mixes both
 * layouts (and the assembly and C paths of each); the reference keeps the int8 weights. */
static mcf_linear_layer maybe_widened(const mcf_linear_layer *layer, int32_t in_ch, int32_t out_ch) {
    mcf_linear_layer copy = *layer;
    const int32_t values = (in_ch * out_ch + 3) & ~3; /* the next copy stays 8-byte aligned */
    if (!chance(50) || widened_used + values > WIDENED_VALUES) {
        return copy;
    }
    int16_t *w16 = widened_pool + widened_used;
    widened_used += values;
    for (int32_t n = 0; n < out_ch; n++) {
        for (int32_t k = 0; k < in_ch; k++) {
            w16[n * in_ch + mcf_weight16_index(k, in_ch)] = layer->weight[n * in_ch + k];
        }
    }
    copy.weight = NULL;
    copy.weight16 = w16;
    return copy;
}

/* maybe_widened of an optional factor, into *storage. */
static const mcf_linear_layer *maybe_widened_factor(const mcf_linear_layer *layer, mcf_linear_layer *storage,
                                                    int32_t in_ch, int32_t out_ch) {
    if (layer == NULL) {
        return NULL;
    }
    *storage = maybe_widened(layer, in_ch, out_ch);
    return storage;
}

/* The residual add of a fused block, mostly with rescale ratios near 1 (multipliers 2^13..2^15 over
 * 2^14..2^16), so that the block's output shows the last bits of the branch it adds instead of saturating or
 * vanishing; the x multiplier is sometimes 0 (the output is the branch alone). rnd_add covers the extremes.
 */
static mcf_add_params rnd_residual(void) {
    if (chance(25)) {
        return rnd_add();
    }
    const mcf_add_params p = {
        rnd_zp(),          rnd_zp(), chance(33) ? 0 : rnd_range(8192, 32767), rnd_range(8192, 32767),
        rnd_range(14, 16), rnd_zp()};
    return p;
}

/* Mostly the default token blocks; one case in five one token at a time at any length (the planner's
 * least-memory variant). */
static int32_t rnd_block_tokens(void) {
    return chance(20) ? MCF_FUSED_ONE_TOKEN : MCF_FUSED_BLOCKS_DEFAULT;
}

static int32_t rnd_rank(void) {
    return chance(50) ? 0 : rnd_size(13);
}

static void check_mlp_block(int cases) {
    static mcf_linear_layer v1, v2;
    for (int i = 0; i < cases; i++) {
        const int32_t channels = rnd_size(40), hidden = rnd_size(90);
        const int32_t tokens =
            chance(60) ? rnd_range(16, 40) : rnd_size(15); /* blocks of 4, or one at a time */
        const mcf_mlp_block_dims dims = {tokens,     channels,   hidden,
                                         rnd_rank(), rnd_rank(), rnd_block_tokens()};
        mcf_mlp_block_params params;
        memset(&params, 0, sizeof params);
        rnd_norm(&params.norm, channels);
        const int32_t in1 = dims.fc1_rank ? dims.fc1_rank : channels;
        if (dims.fc1_rank) {
            rnd_check_layer(&v1, weight_c, bias_c, mult_c, shift_c, channels, dims.fc1_rank);
            params.fc1.v = &v1;
        }
        rnd_check_layer(&params.fc1.u, weight_a, bias_a, mult_a, shift_a, in1, hidden);
        rnd_bytes(gelu_table, 256);
        params.gelu_table = gelu_table;
        const int32_t in2 = dims.fc2_rank ? dims.fc2_rank : hidden;
        if (dims.fc2_rank) {
            rnd_check_layer(&v2, weight_d, bias_d, mult_d, shift_d, hidden, dims.fc2_rank);
            params.fc2.v = &v2;
        }
        rnd_check_layer(&params.fc2.u, weight_b, bias_b, mult_b, shift_b, in2, channels);
        params.residual = rnd_residual();
        static mcf_linear_layer v1_var, v2_var;
        mcf_mlp_block_params var = params;
        widened_used = 0;
        var.fc1.v = maybe_widened_factor(params.fc1.v, &v1_var, channels, dims.fc1_rank);
        var.fc1.u = maybe_widened(&params.fc1.u, in1, hidden);
        var.fc2.v = maybe_widened_factor(params.fc2.v, &v2_var, hidden, dims.fc2_rank);
        var.fc2.u = maybe_widened(&params.fc2.u, in2, channels);
        const int32_t n_out = dims.tokens * channels;
        clear_outputs(n_out);
        rnd_bytes(out_ref, n_out);
        memcpy(out_var, out_ref, (size_t)n_out);
        const mcf_status r = ref_mcf_mlp_block_s8(&dims, &params, out_ref, scratch_ref);
        const mcf_status v = mcf_mlp_block_s8(&dims, &var, out_var, scratch_var + i % 4); /* any alignment */
        compare("mlp_block", i, r, v, n_out);
    }
    checked("mlp_block", cases);
}

/* Random parameters of an attention block (heads <= 3, head sizes and ranks up to 13, often 16-30 tokens so
 * that the DSP kernels take their 4-token blocks); x (out_ref = out_var) random too. */
static mcf_attention_block_dims rnd_attention_block(mcf_attention_block_params *params) {
    static mcf_linear_layer qkv_v, proj_v;
    const int32_t heads = rnd_range(1, 3);
    const int32_t channels = heads * rnd_size(12);
    const int32_t tokens = chance(60) ? rnd_range(16, 30) : rnd_size(15);
    const mcf_attention_block_dims dims = {tokens,     channels,   heads,
                                           rnd_rank(), rnd_rank(), rnd_block_tokens()};
    memset(params, 0, sizeof *params);
    rnd_norm(&params->norm, channels);
    const int32_t in_ch = dims.qkv_rank ? dims.qkv_rank : channels;
    if (dims.qkv_rank) {
        rnd_check_layer(&qkv_v, weight_c, bias_c, mult_c, shift_c, channels, dims.qkv_rank);
        params->qkv_v = &qkv_v;
    }
    rnd_check_layer(&params->q, weight_a, bias_a, mult_a, shift_a, in_ch, channels);
    rnd_check_layer(&params->k, weight_a + 4096, bias_a + 128, mult_a + 128, shift_a + 128, in_ch, channels);
    rnd_check_layer(&params->v, weight_a + 8192, bias_a + 256, mult_a + 256, shift_a + 256, in_ch, channels);
    if (chance(50)) { /* usually q, k and v read one tensor with one zero point */
        params->k.params.in_zp = params->v.params.in_zp = params->q.params.in_zp;
    }
    rnd_attention_params(&params->attention);
    params->attention.score_shift = rnd_range(-12, -4);
    params->attention.out_shift = rnd_range(-16, -6);
    rnd_exp_table();
    params->exp_table = exp_table;
    if (dims.proj_rank) {
        rnd_check_layer(&proj_v, weight_d, bias_d, mult_d, shift_d, channels, dims.proj_rank);
        params->proj.v = &proj_v;
    }
    rnd_check_layer(&params->proj.u, weight_b, bias_b, mult_b, shift_b,
                    dims.proj_rank ? dims.proj_rank : channels, channels);
    params->residual = rnd_residual();
    const int32_t n_out = dims.tokens * channels;
    clear_outputs(n_out);
    rnd_bytes(out_ref, n_out);
    memcpy(out_var, out_ref, (size_t)n_out);
    return dims;
}

/* The attention block's parameters as the variant runs them (maybe_widened). */
static mcf_attention_block_params widened_attention(const mcf_attention_block_dims *dims,
                                                    const mcf_attention_block_params *params) {
    static mcf_linear_layer qkv_v_var, proj_v_var;
    mcf_attention_block_params var = *params;
    const int32_t channels = dims->channels;
    const int32_t in_ch = dims->qkv_rank ? dims->qkv_rank : channels;
    widened_used = 0;
    var.qkv_v = maybe_widened_factor(params->qkv_v, &qkv_v_var, channels, dims->qkv_rank);
    var.q = maybe_widened(&params->q, in_ch, channels);
    var.k = maybe_widened(&params->k, in_ch, channels);
    var.v = maybe_widened(&params->v, in_ch, channels);
    var.proj.v = maybe_widened_factor(params->proj.v, &proj_v_var, channels, dims->proj_rank);
    var.proj.u = maybe_widened(&params->proj.u, dims->proj_rank ? dims->proj_rank : channels, channels);
    return var;
}

static void check_attention_block(int cases) {
    for (int i = 0; i < cases; i++) {
        mcf_attention_block_params params;
        const mcf_attention_block_dims dims = rnd_attention_block(&params);
        const mcf_attention_block_params var = widened_attention(&dims, &params);
        const mcf_status r =
            ref_mcf_attention_block_s8(&dims, &params, out_ref, kv_ref[0], kv_ref[1], scratch_ref);
        const mcf_status v =
            mcf_attention_block_s8(&dims, &var, out_var, kv_var[0], kv_var[1], scratch_var + i % 4);
        compare("attention_block", i, r, v, dims.tokens * dims.channels);
        if (memcmp(kv_ref, kv_var, sizeof kv_ref) != 0) {
            compare("attention_block_kv", i, MCF_OK, MCF_ERR_ARG, 0);
        }
    }
    checked("attention_block", cases);
}

/* x, and the context rows (proj's input); k_head and v_head hold each variant's own layout afterwards. Both
 * per-head kernels (normalising once per head or once per token) against the portable per-head kernel. */
static void check_attention_block_heads(int cases, int once) {
    const char *name = once ? "attention_block_heads_once" : "attention_block_heads";
    for (int i = 0; i < cases; i++) {
        mcf_attention_block_params params;
        const mcf_attention_block_dims dims = rnd_attention_block(&params);
        const mcf_attention_block_params var = widened_attention(&dims, &params);
        const mcf_status r = ref_mcf_attention_block_heads_s8(&dims, &params, out_ref, kv_ref[0], kv_ref[1],
                                                              in_c, scratch_ref);
        const mcf_status v = once ? mcf_attention_block_heads_once_s8(&dims, &var, out_var, kv_var[0],
                                                                      kv_var[1], in_b, scratch_var + i % 4)
                                  : mcf_attention_block_heads_s8(&dims, &var, out_var, kv_var[0], kv_var[1],
                                                                 in_b, scratch_var + i % 4);
        compare(name, i, r, v, dims.tokens * dims.channels);
        if (r == MCF_OK && memcmp(in_c, in_b, (size_t)(dims.tokens * dims.channels)) != 0) {
            compare(once ? "attention_block_heads_once_context" : "attention_block_heads_context", i, MCF_OK,
                    MCF_ERR_ARG, 0);
        }
    }
    checked(name, cases);
}

static void check_row_ops(int cases) {
    for (int i = 0; i < cases; i++) {
        /* layernorm: constant or nearly constant rows (tiny variance: the 64-bit path), extreme eps and
         * gammas */
        mcf_dims dims = {rnd_size(5), chance(10) ? rnd_range(200, 1000) : rnd_size(70)};
        if (chance(2)) { /* around the DSP LayerNorm's 4D < 2^15 limit of its packed fast path */
            dims.tokens = 1;
            dims.channels = rnd_range(8185, 8200);
        }
        mcf_layernorm_layer norm;
        rnd_norm(&norm, dims.channels);
        const int kind = rnd_range(0, 5);
        if (kind == 0) {
            norm.params.eps = chance(50) ? 0 : ((int64_t)1 << 62);
        }
        rnd_requant(&norm.params.mult, &norm.params.shift);
        const int32_t n = dims.tokens * dims.channels;
        rnd_bytes(in_a, n);
        if (kind == 1) {
            memset(in_a, (int)rnd_zp(), (size_t)n);
            in_a[0] = (int8_t)(in_a[0] + 1);
        }
        if (kind == 2) {
            for (int32_t c = 0; c < dims.channels; c++) {
                gamma_a[c] = (int16_t)rnd(); /* the whole int16 range */
                beta_a[c] = (int32_t)rnd();
            }
        }
        if (kind == 3) { /* the int16 limits of gamma, betas at the edge of the DSP kernel's no-saturation
                          * test (about INT32_MAX - 2^15 * 2^11 * sqrt(D)) */
            int32_t root = 1; /* ceil(sqrt(channels)) */
            while (root * root < dims.channels) {
                root++;
            }
            /* As many draws as the int32-gamma cases took: the benchmark after them sees the same data. */
            const int64_t edge = INT32_MAX - ((int64_t)1 << 26) * root + rnd_range(-4096, 4096);
            const int32_t b_max = chance(50) ? (1 << 20) : edge > (1 << 20) ? (int32_t)edge : INT32_MAX / 2;
            for (int32_t c = 0; c < dims.channels; c++) {
                gamma_a[c] = chance(50) ? INT16_MAX : INT16_MIN;
                beta_a[c] = chance(50) ? b_max : -b_max;
            }
            memset(in_a, (int)rnd_zp(), (size_t)n); /* one outlier a row: |norm| near its bound */
            for (int32_t t = 0; t < dims.tokens; t++) {
                int8_t *v = &in_a[t * dims.channels + rnd_range(0, dims.channels - 1)];
                *v = chance(50) ? (int8_t)(*v ^ 1) : (int8_t)(chance(50) ? 127 : -128);
            }
        }
        clear_outputs(n);
        mcf_status r = ref_mcf_layernorm_s8(&dims, &norm.params, in_a, norm.gamma, norm.beta, out_ref);
        mcf_status v = mcf_layernorm_s8(&dims, &norm.params, in_a, norm.gamma, norm.beta, out_var);
        compare("layernorm", i, r, v, n);
        memcpy(out_ref, in_a, (size_t)n); /* in place */
        memcpy(out_var, in_a, (size_t)n);
        r = ref_mcf_layernorm_s8(&dims, &norm.params, out_ref, norm.gamma, norm.beta, out_ref);
        v = mcf_layernorm_s8(&dims, &norm.params, out_var, norm.gamma, norm.beta, out_var);
        compare("layernorm_inplace", i, r, v, n);

        /* add, also in place over a and over b */
        const int32_t size = rnd_size(300);
        mcf_add_params add = rnd_add();
        if (chance(20)) {
            add.a_mult = add.b_mult = 32767;
            add.shift = chance(50) ? 1 : 30;
        }
        rnd_bytes(in_a, size);
        rnd_bytes(in_b, size);
        clear_outputs(size);
        r = ref_mcf_add_s8(&add, in_a, in_b, out_ref, size);
        v = mcf_add_s8(&add, in_a, in_b, out_var, size);
        compare("add", i, r, v, size);
        memcpy(out_ref, in_a, (size_t)size);
        memcpy(out_var, in_a, (size_t)size);
        r = ref_mcf_add_s8(&add, out_ref, in_b, out_ref, size);
        v = mcf_add_s8(&add, out_var, in_b, out_var, size);
        compare("add_inplace", i, r, v, size);

        /* lut, in place half of the time */
        rnd_bytes(gelu_table, 256);
        rnd_bytes(in_a, size);
        clear_outputs(size);
        if (chance(50)) {
            memcpy(out_ref, in_a, (size_t)size);
            memcpy(out_var, in_a, (size_t)size);
            r = ref_mcf_lut_s8(out_ref, gelu_table, out_ref, size);
            v = mcf_lut_s8(out_var, gelu_table, out_var, size);
        } else {
            r = ref_mcf_lut_s8(in_a, gelu_table, out_ref, size);
            v = mcf_lut_s8(in_a, gelu_table, out_var, size);
        }
        compare("lut", i, r, v, size);

        /* softmax: tables with zeros, Q15 values and huge entries */
        const int tk = rnd_range(0, 3);
        for (int e = 0; e < 256; e++) {
            exp_table[e] =
                tk == 0 ? 0 : (tk == 1 ? (int32_t)(rnd() >> 1) : (int32_t)(rnd() % 32769u) >> (e / 32));
        }
        rnd_bytes(in_a, size);
        clear_outputs(size);
        r = ref_mcf_softmax_s8(in_a, exp_table, out_ref, size);
        v = mcf_softmax_s8(in_a, exp_table, out_var, size);
        compare("softmax", i, r, v, size);
    }
    checked("row_ops", cases);
}

int run_checks(void) {
    check_linear(400);
    check_patch_embed(150, 0);
    check_patch_embed(150, 1);
    check_attention_row(250);
    check_row_ops(300);
    check_mlp_block(120);
    check_attention_block(120);
    check_attention_block_heads(120, 0);
    check_attention_block_heads(120, 1);
    return mismatches;
}
