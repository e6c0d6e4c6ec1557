/* The benchmark of the kernel harness (mcf_harness.h): each shape runs through the portable reference and the
 * variant, and the SysTick counts are printed; and the run of the profile build (MCF_HARNESS_PROFILE). */
#include "mcf_harness.h"

static void bench_line(const char *op, const char *shape, int64_t macs, uint64_t ref, uint64_t var,
                       int repeats) {
    put("BENCH ");
    put(op);
    put(" ");
    put(shape);
    put(" ");
    put_int(macs);
    put(" ");
    put_int((int64_t)ref);
    put(" ");
    put_int((int64_t)var);
    put(" ");
    put_int(repeats);
    end_line();
}

static void shape3(char *buf, int32_t a, int32_t b, int32_t c) {
    /* "axbxc" without printf */
    int32_t v[3] = {a, b, c};
    int n = 0;
    for (int i = 0; i < 3; i++) {
        char digits[12];
        int d = 0;
        int32_t x = v[i];
        do {
            digits[d++] = (char)('0' + x % 10);
            x /= 10;
        } while (x);
        while (d) {
            buf[n++] = digits[--d];
        }
        if (i < 2) {
            buf[n++] = 'x';
        }
    }
    buf[n] = 0;
}

static void bench_linear(int32_t tokens, int32_t in_ch, int32_t out_ch) {
    const mcf_linear_dims dims = {tokens, in_ch, out_ch};
    const mcf_linear_params params = {-3, 5};
    for (int32_t n = 0; n < out_ch; n++) {
        mult_a[n] = 0x50000000 + n;
        shift_a[n] = -8;
        bias_a[n] = n * 100;
    }
    const mcf_channel_quant quant = {mult_a, shift_a};
    rnd_bytes(in_a, tokens * in_ch);
    rnd_bytes(weight_a, in_ch * out_ch);
    const int64_t macs = (int64_t)tokens * in_ch * out_ch;
    const int repeats = macs >= 100000 ? 1 : (int)(100000 / macs) + 1;
    uint64_t start = ticks();
    for (int r = 0; r < repeats; r++) {
        (void)ref_mcf_linear_s8(&dims, &params, &quant, in_a, weight_a, bias_a, out_ref);
    }
    const uint64_t ref = ticks() - start;
    start = ticks();
    for (int r = 0; r < repeats; r++) {
        (void)mcf_linear_s8(&dims, &params, &quant, in_a, weight_a, bias_a, out_var);
    }
    const uint64_t var = ticks() - start;
    char shape[40];
    shape3(shape, tokens, in_ch, out_ch);
    bench_line("linear", shape, macs, ref, var, repeats);
}

/* The pair kernel, or (`rows`) the patch-row kernel a compiled model calls. */
static void bench_patch_embed(int32_t size, int32_t channels, int32_t patch, int32_t out_ch, int rows) {
    const mcf_patch_embed_dims dims = {size, size, channels, patch, out_ch, rows ? MCF_PATCH_BLOCKS : 0};
    const mcf_linear_params params = {0, 5};
    for (int32_t n = 0; n < out_ch; n++) {
        mult_a[n] = 0x50000000 + n;
        shift_a[n] = -8;
        bias_a[n] = n * 100;
    }
    const mcf_channel_quant quant = {mult_a, shift_a};
    rnd_bytes(in_a, size * size * channels);
    rnd_bytes(weight_a, patch * patch * channels * out_ch);
    const int64_t macs = (int64_t)size * size * channels * out_ch;
    uint64_t start = ticks();
    if (rows) {
        (void)ref_mcf_patch_embed_rows_s8(&dims, &params, &quant, in_a, weight_a, bias_a, out_ref,
                                          scratch_ref);
    } else {
        (void)ref_mcf_patch_embed_s8(&dims, &params, &quant, in_a, weight_a, bias_a, out_ref);
    }
    const uint64_t ref = ticks() - start;
    start = ticks();
    if (rows) {
        (void)mcf_patch_embed_rows_s8(&dims, &params, &quant, in_a, weight_a, bias_a, out_var, scratch_var);
    } else {
        (void)mcf_patch_embed_s8(&dims, &params, &quant, in_a, weight_a, bias_a, out_var);
    }
    const uint64_t var = ticks() - start;
    char shape[40];
    shape3(shape, size, channels, patch);
    bench_line(rows ? "patch_embed_rows" : "patch_embed", shape, macs, ref, var, 1);
}

static void bench_attention_row(int32_t tokens, int32_t channels, int32_t heads) {
    const mcf_attention_dims dims = {tokens, channels, heads};
    const mcf_attention_params params = {3, -2, 1, 0x50000000, -6, -10, 0x48000000, -9, 2};
    for (int i = 0; i < 256; i++) {
        exp_table[i] = 32768 >> (i / 16);
    }
    rnd_bytes(in_a, channels);
    rnd_bytes(in_b, tokens * channels);
    rnd_bytes(in_c, tokens * channels);
    const int64_t macs = 2 * (int64_t)tokens * channels;
    const int repeats = (int)(100000 / macs) + 1;
    uint64_t start = ticks();
    for (int r = 0; r < repeats; r++) {
        (void)ref_mcf_attention_row_s8(&dims, &params, in_a, in_b, in_c, exp_table, out_ref, scratch_ref);
    }
    const uint64_t ref = ticks() - start;
    start = ticks();
    for (int r = 0; r < repeats; r++) {
        (void)mcf_attention_row_s8(&dims, &params, in_a, in_b, in_c, exp_table, out_var, scratch_var);
    }
    const uint64_t var = ticks() - start;
    char shape[40];
    shape3(shape, tokens, channels, heads);
    bench_line("attention_row", shape, macs, ref, var, repeats);
}

/* The fused blocks of the benchmark (and of the profile build): random weights, a Q15 exp table. */
static void bench_mlp_params(mcf_mlp_block_params *mlp, int32_t channels, int32_t hidden) {
    memset(mlp, 0, sizeof *mlp);
    rnd_norm(&mlp->norm, channels);
    rnd_layer(&mlp->fc1.u, weight_a, bias_a, mult_a, shift_a, channels, hidden);
    rnd_bytes(gelu_table, 256);
    mlp->gelu_table = gelu_table;
    rnd_layer(&mlp->fc2.u, weight_b, bias_b, mult_b, shift_b, hidden, channels);
    mlp->residual = rnd_add();
}

static void bench_attention_params(mcf_attention_block_params *att, int32_t channels) {
    memset(att, 0, sizeof *att);
    rnd_norm(&att->norm, channels);
    rnd_layer(&att->q, weight_a, bias_a, mult_a, shift_a, channels, channels);
    rnd_layer(&att->k, weight_b, bias_b, mult_b, shift_b, channels, channels);
    rnd_layer(&att->v, weight_c, bias_c, mult_c, shift_c, channels, channels);
    att->k.params.in_zp = att->v.params.in_zp = att->q.params.in_zp;
    const mcf_attention_params ap = {3, -2, 1, 0x50000000, -6, -10, 0x48000000, -9, 2};
    att->attention = ap;
    for (int i = 0; i < 256; i++) {
        exp_table[i] = 32768 >> (i / 16);
    }
    att->exp_table = exp_table;
    rnd_layer(&att->proj.u, weight_d, bias_d, mult_d, shift_d, channels, channels);
    att->residual = rnd_add();
}

static void bench_blocks(int32_t tokens, int32_t channels, int32_t heads, int32_t hidden) {
    mcf_mlp_block_params mlp;
    bench_mlp_params(&mlp, channels, hidden);
    const mcf_mlp_block_dims mlp_dims = {tokens, channels, hidden, 0, 0, MCF_FUSED_BLOCKS_DEFAULT};
    rnd_bytes(out_ref, tokens * channels);
    uint64_t start = ticks();
    (void)ref_mcf_mlp_block_s8(&mlp_dims, &mlp, out_ref, scratch_ref);
    uint64_t ref = ticks() - start;
    start = ticks();
    (void)mcf_mlp_block_s8(&mlp_dims, &mlp, out_ref, scratch_var);
    uint64_t var = ticks() - start;
    char shape[40];
    shape3(shape, tokens, channels, hidden);
    bench_line("mlp_block", shape, 2 * (int64_t)tokens * channels * hidden, ref, var, 1);

    mcf_attention_block_params att;
    bench_attention_params(&att, channels);
    const mcf_attention_block_dims att_dims = {tokens, channels, heads, 0, 0, MCF_FUSED_BLOCKS_DEFAULT};
    rnd_bytes(out_ref, tokens * channels); /* not the MLP's output, which may have saturated */
    start = ticks();
    (void)ref_mcf_attention_block_s8(&att_dims, &att, out_ref, kv_ref[0], kv_ref[1], scratch_ref);
    ref = ticks() - start;
    start = ticks();
    (void)mcf_attention_block_s8(&att_dims, &att, out_ref, kv_var[0], kv_var[1], scratch_var);
    var = ticks() - start;
    shape3(shape, tokens, channels, heads);
    const int64_t macs = 4 * (int64_t)tokens * channels * channels + 2 * (int64_t)tokens * tokens * channels;
    bench_line("attention_block", shape, macs, ref, var, 1);
    start = ticks();
    (void)ref_mcf_attention_block_heads_s8(&att_dims, &att, out_ref, kv_ref[0], kv_ref[1], in_c, scratch_ref);
    ref = ticks() - start;
    start = ticks();
    (void)mcf_attention_block_heads_s8(&att_dims, &att, out_ref, kv_var[0], kv_var[1], in_b, scratch_var);
    var = ticks() - start;
    bench_line("attention_block_heads", shape, macs, ref, var, 1);
    start = ticks();
    (void)mcf_attention_block_heads_once_s8(&att_dims, &att, out_ref, kv_var[0], kv_var[1], in_b,
                                            scratch_var);
    var = ticks() - start;
    bench_line("attention_block_heads_once", shape, macs, ref, var, 1);
}

/* Element-wise and row ops: "MACs" is the element count, so the per-MAC columns read as per element. */
static void bench_rows(int32_t tokens, int32_t channels) {
    mcf_layernorm_layer norm;
    rnd_norm(&norm, channels);
    const mcf_dims dims = {tokens, channels};
    const int32_t n = tokens * channels;
    rnd_bytes(in_a, n);
    rnd_bytes(in_b, n);
    char shape[40];
    shape3(shape, tokens, channels, 1);
    uint64_t start = ticks();
    (void)ref_mcf_layernorm_s8(&dims, &norm.params, in_a, norm.gamma, norm.beta, out_ref);
    uint64_t ref = ticks() - start;
    start = ticks();
    (void)mcf_layernorm_s8(&dims, &norm.params, in_a, norm.gamma, norm.beta, out_var);
    uint64_t var = ticks() - start;
    bench_line("layernorm", shape, n, ref, var, 1);
    const mcf_add_params add = {3, -5, 12000, 9000, 14, 2};
    start = ticks();
    (void)ref_mcf_add_s8(&add, in_a, in_b, out_ref, n);
    ref = ticks() - start;
    start = ticks();
    (void)mcf_add_s8(&add, in_a, in_b, out_var, n);
    var = ticks() - start;
    bench_line("add", shape, n, ref, var, 1);
    rnd_bytes(gelu_table, 256);
    start = ticks();
    (void)ref_mcf_lut_s8(in_a, gelu_table, out_ref, n);
    ref = ticks() - start;
    start = ticks();
    (void)mcf_lut_s8(in_a, gelu_table, out_var, n);
    var = ticks() - start;
    bench_line("lut", shape, n, ref, var, 1);
    for (int i = 0; i < 256; i++) {
        exp_table[i] = 32768 >> (i / 16);
    }
    start = ticks();
    for (int32_t t = 0; t < tokens; t++) {
        (void)ref_mcf_softmax_s8(in_a + t * channels, exp_table, out_ref + t * channels, channels);
    }
    ref = ticks() - start;
    start = ticks();
    for (int32_t t = 0; t < tokens; t++) {
        (void)mcf_softmax_s8(in_a + t * channels, exp_table, out_var + t * channels, channels);
    }
    var = ticks() - start;
    bench_line("softmax", shape, n, ref, var, 1);
}

void run_benchmarks(void) {
    static const int32_t linear_shapes[][3] = {{1, 48, 48},   {2, 48, 48},   {50, 48, 48},  {50, 48, 192},
                                               {50, 192, 48}, {50, 48, 16},  {50, 16, 48},  {1, 64, 256},
                                               {65, 64, 64},  {65, 64, 256}, {65, 256, 64}, {49, 49, 49}};
    for (unsigned i = 0; i < sizeof linear_shapes / sizeof linear_shapes[0]; i++) {
        bench_linear(linear_shapes[i][0], linear_shapes[i][1], linear_shapes[i][2]);
    }
    bench_patch_embed(28, 1, 4, 48, 0);
    bench_patch_embed(32, 3, 4, 64, 0);
    bench_patch_embed(28, 1, 4, 48, 1);
    bench_patch_embed(32, 3, 4, 64, 1);
    bench_patch_embed(28, 1, 7, 64, 1);
    bench_attention_row(50, 48, 3);
    bench_attention_row(65, 64, 4);
    bench_attention_row(197, 96, 3);
    bench_rows(50, 48);
    bench_blocks(50, 48, 3, 192);
    bench_blocks(65, 64, 4, 128);
}

#ifdef MCF_HARNESS_PROFILE
/* Prints "PHASE <name> <ticks since the previous mark>"; the trace reader starts a phase at each entry into
 * this function, and mcuformer.device.kernel_hotspots checks its count of each phase against the ticks. */
static __attribute__((noinline)) void profile_phase(const char *name) {
    static uint64_t last;
    const uint64_t now = ticks();
    put("PHASE ");
    put(name);
    put(" ");
    put_int((int64_t)(now - last));
    end_line();
    last = ticks();
}

static void profile_blocks(int32_t tokens, int32_t channels, int32_t heads, int32_t hidden) {
    mcf_mlp_block_params mlp;
    bench_mlp_params(&mlp, channels, hidden);
    const mcf_mlp_block_dims mlp_dims = {tokens, channels, hidden, 0, 0, MCF_FUSED_BLOCKS_DEFAULT};
    rnd_bytes(out_var, tokens * channels);
    profile_phase("mlp_block");
    (void)mcf_mlp_block_s8(&mlp_dims, &mlp, out_var, scratch_var);
    profile_phase("setup");
    mcf_attention_block_params att;
    bench_attention_params(&att, channels);
    const mcf_attention_block_dims att_dims = {tokens, channels, heads, 0, 0, MCF_FUSED_BLOCKS_DEFAULT};
    rnd_bytes(out_var, tokens * channels);
    profile_phase("attention_block_heads");
    (void)mcf_attention_block_heads_s8(&att_dims, &att, out_var, kv_var[0], kv_var[1], in_b, scratch_var);
    profile_phase("end");
}

/* The profile build (mcuformer.device.kernel_hotspots): the variant's MLP block, then its per-head attention
 * block, once each on one shape (MCF_PROFILE_SHAPE: tokens, channels, heads, hidden), nothing else, so that a
 * QEMU execution trace shows where their instructions go. */
void run_profile(void) {
    profile_blocks(MCF_PROFILE_SHAPE);
}
#endif
