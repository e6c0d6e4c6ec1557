/* Bare-metal check and benchmark of a kernel variant against the portable reference, on the emulated
 * Cortex-M7 (QEMU mps2-an500 with -icount shift=0, semihosting for output and exit).
 *
 * The portable kernels are linked in twice: once as they are (through the variant under test, which falls
 * back to them for every function it does not override) and once with every public symbol renamed ref_mcf_*
 * (objcopy --redefine-sym, see mcuformer/device/kernel_harness.py). Each case draws its shapes, parameters
 * and data from a seeded xorshift generator, with edge values (one token, odd widths, zero points -128 and
 * 127, extreme multipliers, shifts and biases) drawn often, runs both, and compares status, output and the
 * guard bytes behind the output. Then each benchmark shape runs through both and the SysTick count
 * (instructions under icount: 1 tick = 40 instructions) is printed.
 *
 * Output lines: "CASE <op> <index> MISMATCH ..." for a difference, "CHECKED <op> <cases>" per op,
 * "BENCH <op> <shape> <macs> <ref ticks> <variant ticks> <repeats>", and "DONE <mismatches>" last.
 */
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
mcf_status ref_mcf_attention_row_s8(const mcf_attention_dims *, const mcf_attention_params *, const int8_t *,
                                    const int8_t *, const int8_t *, const int32_t *, int8_t *, void *);
mcf_status ref_mcf_layernorm_s8(const mcf_dims *, const mcf_layernorm_params *, const int8_t *,
                                const int32_t *, const int32_t *, int8_t *);
mcf_status ref_mcf_add_s8(const mcf_add_params *, const int8_t *, const int8_t *, int8_t *, int32_t);
mcf_status ref_mcf_lut_s8(const int8_t *, const int8_t *, int8_t *, int32_t);
mcf_status ref_mcf_softmax_s8(const int8_t *, const int32_t *, int8_t *, int32_t);
mcf_status ref_mcf_mlp_block_s8(const mcf_mlp_block_dims *, const mcf_mlp_block_params *, int8_t *, void *);
mcf_status ref_mcf_attention_block_s8(const mcf_attention_block_dims *, const mcf_attention_block_params *,
                                      int8_t *, int8_t *, int8_t *, void *);
mcf_status ref_mcf_attention_block_heads_s8(const mcf_attention_block_dims *,
                                            const mcf_attention_block_params *, int8_t *, int8_t *, int8_t *,
                                            int8_t *, void *);

/* ------------------------------------------------------------------------------- bare-metal plumbing */

extern uint32_t __bss_start__, __bss_end__, __stack_top__;
int main(void);
void Reset_Handler(void);
static void default_handler(void);
static void systick_handler(void);

__attribute__((section(".isr_vector"), used)) void (*const check_vectors[16])(void) = {
    (void (*)(void))(&__stack_top__),
    Reset_Handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    default_handler,
    0,
    0,
    0,
    0,
    default_handler,
    default_handler,
    0,
    default_handler,
    systick_handler};

static int semihost(int op, const void *arg) {
    register int r0 __asm("r0") = op;
    register const void *r1 __asm("r1") = arg;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void out(const char *text) {
    semihost(0x04, text); /* SYS_WRITE0 */
}

static __attribute__((noreturn)) void finish(void) {
    semihost(0x18, (const void *)0x20026); /* SYS_EXIT, ADP_Stopped_ApplicationExit */
    for (;;) {
    }
}

static void default_handler(void) {
    out("FAULT\n");
    finish();
}

void Reset_Handler(void) {
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: FPU on (GCC may copy structs through it) */
    __asm volatile("dsb\n\tisb" ::: "memory");
    for (uint32_t *p = &__bss_start__; p < &__bss_end__;) {
        *p++ = 0;
    }
    (void)main();
    finish();
}

/* SysTick: 24 bits down from 0xFFFFFF, wraps counted by the interrupt. */
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
static volatile uint32_t systick_wraps;

static void systick_handler(void) {
    systick_wraps++;
}

static void start_ticks(void) {
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* processor clock, interrupt, enable */
}

static uint64_t ticks(void) {
    uint32_t wraps, value;
    do {
        wraps = systick_wraps;
        value = SYST_CVR;
    } while (wraps != systick_wraps);
    return (uint64_t)wraps * 0x1000000u + (0xFFFFFFu - value);
}

static char line[160];
static int line_len;

static void put(const char *text) {
    while (*text && line_len < (int)sizeof line - 2) {
        line[line_len++] = *text++;
    }
}

static void put_int(int64_t value) {
    char digits[24];
    int n = 0;
    uint64_t magnitude = value < 0 ? (uint64_t)(-value) : (uint64_t)value;
    do {
        digits[n++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (value < 0) {
        put("-");
    }
    while (n) {
        char c[2] = {digits[--n], 0};
        put(c);
    }
}

static void end_line(void) {
    line[line_len++] = '\n';
    line[line_len] = 0;
    out(line);
    line_len = 0;
}

/* ------------------------------------------------------------------------------------- random cases */

static uint32_t rng_state = 0x9E3779B9u;

static uint32_t rnd(void) {
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

static int32_t rnd_range(int32_t lo, int32_t hi) { /* inclusive */
    return lo + (int32_t)(rnd() % (uint32_t)(hi - lo + 1));
}

static int chance(int percent) {
    return (int32_t)(rnd() % 100u) < percent;
}

static int32_t rnd_zp(void) {
    return chance(25) ? (chance(50) ? -128 : 127) : rnd_range(-128, 127);
}

static int32_t rnd_size(int32_t hi) { /* 1 often, odd sizes as often as even ones */
    return chance(15) ? 1 : rnd_range(1, hi);
}

static void rnd_bytes(int8_t *p, int32_t n) {
    const int extreme = chance(10);
    for (int32_t i = 0; i < n; i++) {
        p[i] = extreme ? (int8_t)(chance(50) ? -128 : 127) : (int8_t)rnd();
    }
}

static void rnd_requant(int32_t *mult, int32_t *shift) {
    const int kind = rnd_range(0, 9);
    *mult = kind == 0 ? 0 : (kind == 1 ? 0x7FFFFFFF : (int32_t)(0x40000000u + (rnd() & 0x3FFFFFFFu)));
    *shift = kind == 2 ? -32 : (kind == 3 ? 30 : (kind == 4 ? rnd_range(-32, 30) : rnd_range(-14, 1)));
}

static void rnd_bias(int32_t *bias, int32_t n) {
    const int kind = rnd_range(0, 9);
    for (int32_t i = 0; i < n; i++) {
        const int32_t r = (int32_t)rnd();
        bias[i] = kind == 0 ? (r >> 1) : (kind == 1 ? (chance(50) ? INT32_MAX : INT32_MIN + 1) : (r >> 14));
    }
}

#define GUARD 32
#define MAX_BYTES 32768
static int8_t in_a[MAX_BYTES], in_b[MAX_BYTES], in_c[MAX_BYTES], weight_a[MAX_BYTES], weight_b[MAX_BYTES];
static int8_t out_ref[MAX_BYTES + GUARD], out_var[MAX_BYTES + GUARD];
static int8_t scratch_ref[MAX_BYTES], scratch_var[MAX_BYTES];
static int32_t bias_a[512], bias_b[512], mult_a[512], shift_a[512], mult_b[512], shift_b[512];
static int32_t exp_table[256];
static int32_t gamma_a[8208], beta_a[8208]; /* LayerNorm rows up to 8,200 channels */
static int8_t gelu_table[256];
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
        const mcf_linear_dims dims = {rnd_size(6), rnd_size(80), rnd_size(40)};
        const mcf_linear_params params = {rnd_zp(), rnd_zp()};
        for (int32_t n = 0; n < dims.out_ch; n++) {
            rnd_requant(&mult_a[n], &shift_a[n]);
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

static void check_patch_embed(int cases) {
    for (int i = 0; i < cases; i++) {
        const int32_t patch = rnd_range(1, 5);
        const mcf_patch_embed_dims dims = {patch * rnd_size(5), patch * rnd_size(5), rnd_range(1, 3), patch,
                                           rnd_size(24)};
        const mcf_linear_params params = {rnd_zp(), rnd_zp()};
        for (int32_t n = 0; n < dims.out_ch; n++) {
            rnd_requant(&mult_a[n], &shift_a[n]);
        }
        const mcf_channel_quant quant = {mult_a, shift_a};
        rnd_bytes(in_a, dims.height * dims.width * dims.channels);
        rnd_bytes(weight_a, dims.out_ch * patch * patch * dims.channels);
        rnd_bias(bias_a, dims.out_ch);
        const int32_t n_out = (dims.height / patch) * (dims.width / patch) * dims.out_ch;
        clear_outputs(n_out);
        const mcf_status r = ref_mcf_patch_embed_s8(&dims, &params, &quant, in_a, weight_a, bias_a, out_ref);
        const mcf_status v = mcf_patch_embed_s8(&dims, &params, &quant, in_a, weight_a, bias_a, out_var);
        compare("patch_embed", i, r, v, n_out);
    }
    checked("patch_embed", cases);
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

static void rnd_layer(mcf_linear_layer *layer, int8_t *weight, int32_t *bias, int32_t *mult, int32_t *shift,
                      int32_t in_ch, int32_t out_ch) {
    layer->params.in_zp = rnd_zp();
    layer->params.out_zp = rnd_zp();
    for (int32_t n = 0; n < out_ch; n++) {
        rnd_requant(&mult[n], &shift[n]);
        shift[n] = rnd_range(-12, -4); /* keep activations alive through the chain */
    }
    layer->quant.mult = mult;
    layer->quant.shift = shift;
    rnd_bytes(weight, in_ch * out_ch);
    for (int32_t n = 0; n < out_ch; n++) {
        bias[n] = (int32_t)rnd() >> 18;
    }
    layer->weight = weight;
    layer->bias = bias;
}

/* rnd_layer for the checks: one layer in ten has a channel off the requantization fast path (shift -1 or -25,
 * bias +-2^30), so the DSP kernels take their C channel loop for it. */
static void rnd_check_layer(mcf_linear_layer *layer, int8_t *weight, int32_t *bias, int32_t *mult,
                            int32_t *shift, int32_t in_ch, int32_t out_ch) {
    rnd_layer(layer, weight, bias, mult, shift, in_ch, out_ch);
    if (chance(10)) {
        const int32_t n = rnd_range(0, out_ch - 1);
        const int kind = rnd_range(0, 3);
        if (kind < 2) {
            shift[n] = kind == 0 ? -1 : -25;
        } else {
            bias[n] = kind == 2 ? (1 << 30) : -(1 << 30);
        }
    }
}

static int8_t weight_c[MAX_BYTES], weight_d[MAX_BYTES];
static int32_t bias_c[512], bias_d[512], mult_c[512], shift_c[512], mult_d[512], shift_d[512];
static int8_t kv_ref[2][MAX_BYTES], kv_var[2][MAX_BYTES];

static void rnd_norm(mcf_layernorm_layer *norm, int32_t channels) {
    norm->params.in_zp = rnd_zp();
    norm->params.eps = rnd_range(0, 1000);
    rnd_requant(&norm->params.mult, &norm->params.shift);
    norm->params.shift = rnd_range(-20, -8);
    norm->params.out_zp = rnd_zp();
    for (int32_t c = 0; c < channels; c++) {
        gamma_a[c] = (int32_t)rnd() >> 17;
        beta_a[c] = (int32_t)rnd() >> 12;
    }
    norm->gamma = gamma_a;
    norm->beta = beta_a;
}

static mcf_add_params rnd_add(void) {
    const mcf_add_params p = {rnd_zp(),         rnd_zp(), rnd_range(0, 32767), rnd_range(0, 32767),
                              rnd_range(1, 30), rnd_zp()};
    return p;
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

static int32_t rnd_rank(void) {
    return chance(50) ? 0 : rnd_size(13);
}

static void check_mlp_block(int cases) {
    static mcf_linear_layer v1, v2;
    for (int i = 0; i < cases; i++) {
        const int32_t channels = rnd_size(40), hidden = rnd_size(90);
        const int32_t tokens =
            chance(60) ? rnd_range(16, 40) : rnd_size(15); /* blocks of 4, or one at a time */
        const mcf_mlp_block_dims dims = {tokens, channels, hidden, rnd_rank(), rnd_rank()};
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
        const int32_t n_out = dims.tokens * channels;
        clear_outputs(n_out);
        rnd_bytes(out_ref, n_out);
        memcpy(out_var, out_ref, (size_t)n_out);
        const mcf_status r = ref_mcf_mlp_block_s8(&dims, &params, out_ref, scratch_ref);
        const mcf_status v =
            mcf_mlp_block_s8(&dims, &params, out_var, scratch_var + i % 4); /* any alignment */
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
    const mcf_attention_block_dims dims = {tokens, channels, heads, rnd_rank(), rnd_rank()};
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

static void check_attention_block(int cases) {
    for (int i = 0; i < cases; i++) {
        mcf_attention_block_params params;
        const mcf_attention_block_dims dims = rnd_attention_block(&params);
        const mcf_status r =
            ref_mcf_attention_block_s8(&dims, &params, out_ref, kv_ref[0], kv_ref[1], scratch_ref);
        const mcf_status v =
            mcf_attention_block_s8(&dims, &params, out_var, kv_var[0], kv_var[1], scratch_var + i % 4);
        compare("attention_block", i, r, v, dims.tokens * dims.channels);
        if (memcmp(kv_ref, kv_var, sizeof kv_ref) != 0) {
            compare("attention_block_kv", i, MCF_OK, MCF_ERR_ARG, 0);
        }
    }
    checked("attention_block", cases);
}

/* x, and the context rows (proj's input); k_head and v_head hold each variant's own layout afterwards. */
static void check_attention_block_heads(int cases) {
    for (int i = 0; i < cases; i++) {
        mcf_attention_block_params params;
        const mcf_attention_block_dims dims = rnd_attention_block(&params);
        const mcf_status r = ref_mcf_attention_block_heads_s8(&dims, &params, out_ref, kv_ref[0], kv_ref[1],
                                                              in_c, scratch_ref);
        const mcf_status v = mcf_attention_block_heads_s8(&dims, &params, out_var, kv_var[0], kv_var[1], in_b,
                                                          scratch_var + i % 4);
        compare("attention_block_heads", i, r, v, dims.tokens * dims.channels);
        if (r == MCF_OK && memcmp(in_c, in_b, (size_t)(dims.tokens * dims.channels)) != 0) {
            compare("attention_block_heads_context", i, MCF_OK, MCF_ERR_ARG, 0);
        }
    }
    checked("attention_block_heads", cases);
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
                gamma_a[c] = (int32_t)rnd();
                beta_a[c] = (int32_t)rnd();
            }
        }
        if (kind == 3) {      /* gammas and betas at the edge of the DSP kernel's no-saturation test */
            int32_t root = 1; /* ceil(sqrt(channels)) */
            while (root * root < dims.channels) {
                root++;
            }
            const int32_t g_max = INT32_MAX / (rnd_range(1024, 4096) * root);
            const int32_t b_max = chance(50) ? (1 << 20) : INT32_MAX / 2;
            for (int32_t c = 0; c < dims.channels; c++) {
                gamma_a[c] = chance(50) ? g_max : -g_max;
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

/* ---------------------------------------------------------------------------------------- benchmark */

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

static void bench_patch_embed(int32_t size, int32_t channels, int32_t patch, int32_t out_ch) {
    const mcf_patch_embed_dims dims = {size, size, channels, patch, out_ch};
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
    (void)ref_mcf_patch_embed_s8(&dims, &params, &quant, in_a, weight_a, bias_a, out_ref);
    const uint64_t ref = ticks() - start;
    start = ticks();
    (void)mcf_patch_embed_s8(&dims, &params, &quant, in_a, weight_a, bias_a, out_var);
    const uint64_t var = ticks() - start;
    char shape[40];
    shape3(shape, size, channels, patch);
    bench_line("patch_embed", shape, macs, ref, var, 1);
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
    const mcf_mlp_block_dims mlp_dims = {tokens, channels, hidden, 0, 0};
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
    const mcf_attention_block_dims att_dims = {tokens, channels, heads, 0, 0};
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

#ifdef MCF_HARNESS_PROFILE
/* The profile build (mcuformer.device.kernel_hotspots): the variant's MLP block, then its per-head attention
 * block, once each on one shape (MCF_PROFILE_SHAPE: tokens, channels, heads, hidden), nothing else, so that a
 * QEMU execution trace shows where their instructions go. */
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
    const mcf_mlp_block_dims mlp_dims = {tokens, channels, hidden, 0, 0};
    rnd_bytes(out_var, tokens * channels);
    profile_phase("mlp_block");
    (void)mcf_mlp_block_s8(&mlp_dims, &mlp, out_var, scratch_var);
    profile_phase("setup");
    mcf_attention_block_params att;
    bench_attention_params(&att, channels);
    const mcf_attention_block_dims att_dims = {tokens, channels, heads, 0, 0};
    rnd_bytes(out_var, tokens * channels);
    profile_phase("attention_block_heads");
    (void)mcf_attention_block_heads_s8(&att_dims, &att, out_var, kv_var[0], kv_var[1], in_b, scratch_var);
    profile_phase("end");
}

int main(void) {
    start_ticks();
    profile_blocks(MCF_PROFILE_SHAPE);
    put("DONE 0");
    end_line();
    return 0;
}
#else
int main(void) {
    start_ticks();
    check_linear(400);
    check_patch_embed(150);
    check_attention_row(250);
    check_row_ops(300);
    check_mlp_block(120);
    check_attention_block(120);
    check_attention_block_heads(120);

    static const int32_t linear_shapes[][3] = {{1, 48, 48},   {2, 48, 48},   {50, 48, 48},  {50, 48, 192},
                                               {50, 192, 48}, {50, 48, 16},  {50, 16, 48},  {1, 64, 256},
                                               {65, 64, 64},  {65, 64, 256}, {65, 256, 64}, {49, 49, 49}};
    for (unsigned i = 0; i < sizeof linear_shapes / sizeof linear_shapes[0]; i++) {
        bench_linear(linear_shapes[i][0], linear_shapes[i][1], linear_shapes[i][2]);
    }
    bench_patch_embed(28, 1, 4, 48);
    bench_patch_embed(32, 3, 4, 64);
    bench_attention_row(50, 48, 3);
    bench_attention_row(65, 64, 4);
    bench_attention_row(197, 96, 3);
    bench_rows(50, 48);
    bench_blocks(50, 48, 3, 192);
    bench_blocks(65, 64, 4, 128);

    put("DONE ");
    put_int(mismatches);
    end_line();
    return 0;
}
#endif
