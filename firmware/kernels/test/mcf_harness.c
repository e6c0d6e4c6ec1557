/* The bare-metal side of the kernel harness (mcf_harness.h): vectors and reset, semihosting output, SysTick
 * instruction counts, the seeded random generator and the buffers the checks and the benchmark share, and
 * main, which runs the checks and the benchmark (or, in the profile build, the profile). */
#include "mcf_harness.h"

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

void start_ticks(void) {
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* processor clock, interrupt, enable */
}

uint64_t ticks(void) {
    uint32_t wraps, value;
    do {
        wraps = systick_wraps;
        value = SYST_CVR;
    } while (wraps != systick_wraps);
    return (uint64_t)wraps * 0x1000000u + (0xFFFFFFu - value);
}

static char line[160];
static int line_len;

void put(const char *text) {
    while (*text && line_len < (int)sizeof line - 2) {
        line[line_len++] = *text++;
    }
}

void put_int(int64_t value) {
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

void end_line(void) {
    line[line_len++] = '\n';
    line[line_len] = 0;
    out(line);
    line_len = 0;
}

/* ------------------------------------------------------------------------------------- random cases */

static uint32_t rng_state = 0x9E3779B9u;

uint32_t rnd(void) {
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

int32_t rnd_range(int32_t lo, int32_t hi) { /* inclusive */
    return lo + (int32_t)(rnd() % (uint32_t)(hi - lo + 1));
}

int chance(int percent) {
    return (int32_t)(rnd() % 100u) < percent;
}

int32_t rnd_zp(void) {
    return chance(25) ? (chance(50) ? -128 : 127) : rnd_range(-128, 127);
}

int32_t rnd_size(int32_t hi) { /* 1 often, odd sizes as often as even ones */
    return chance(15) ? 1 : rnd_range(1, hi);
}

void rnd_bytes(int8_t *p, int32_t n) {
    const int extreme = chance(10);
    for (int32_t i = 0; i < n; i++) {
        p[i] = extreme ? (int8_t)(chance(50) ? -128 : 127) : (int8_t)rnd();
    }
}

void rnd_requant(int32_t *mult, int32_t *shift) {
    const int kind = rnd_range(0, 9);
    *mult = kind == 0 ? 0 : (kind == 1 ? 0x7FFFFFFF : (int32_t)(0x40000000u + (rnd() & 0x3FFFFFFFu)));
    *shift = kind == 2 ? -32 : (kind == 3 ? 30 : (kind == 4 ? rnd_range(-32, 30) : rnd_range(-14, 1)));
}

void rnd_channel_requant(int32_t *mult, int8_t *shift) {
    int32_t wide;
    rnd_requant(mult, &wide);
    *shift = (int8_t)wide;
}

void rnd_bias(int32_t *bias, int32_t n) {
    const int kind = rnd_range(0, 9);
    for (int32_t i = 0; i < n; i++) {
        const int32_t r = (int32_t)rnd();
        bias[i] = kind == 0 ? (r >> 1) : (kind == 1 ? (chance(50) ? INT32_MAX : INT32_MIN + 1) : (r >> 14));
    }
}

int8_t in_a[MAX_BYTES], in_b[MAX_BYTES], in_c[MAX_BYTES], weight_a[MAX_BYTES], weight_b[MAX_BYTES];
int8_t out_ref[MAX_BYTES + GUARD], out_var[MAX_BYTES + GUARD];
int8_t scratch_ref[MAX_BYTES], scratch_var[MAX_BYTES];
int32_t bias_a[512], bias_b[512], mult_a[512], mult_b[512];
int8_t shift_a[512], shift_b[512];
int32_t exp_table[256];
int16_t gamma_a[8208];
int32_t beta_a[8208]; /* LayerNorm rows up to 8,200 channels */
int8_t gelu_table[256];
int8_t weight_c[MAX_BYTES], weight_d[MAX_BYTES];
int32_t bias_c[512], bias_d[512], mult_c[512], mult_d[512];
int8_t shift_c[512], shift_d[512];
int8_t kv_ref[2][MAX_BYTES], kv_var[2][MAX_BYTES];

void rnd_layer(mcf_linear_layer *layer, int8_t *weight, int32_t *bias, int32_t *mult, int8_t *shift,
               int32_t in_ch, int32_t out_ch) {
    layer->params.in_zp = rnd_zp();
    layer->params.out_zp = rnd_zp();
    for (int32_t n = 0; n < out_ch; n++) {
        rnd_channel_requant(&mult[n], &shift[n]);
        shift[n] = (int8_t)rnd_range(-12, -4); /* keep activations alive through the chain */
    }
    layer->quant.mult = mult;
    layer->quant.shift = shift;
    rnd_bytes(weight, in_ch * out_ch);
    for (int32_t n = 0; n < out_ch; n++) {
        bias[n] = (int32_t)rnd() >> 18;
    }
    layer->weight = weight;
    layer->weight16 = NULL;
    layer->bias = bias;
}

void rnd_norm(mcf_layernorm_layer *norm, int32_t channels) {
    norm->params.in_zp = rnd_zp();
    norm->params.eps = rnd_range(0, 1000);
    rnd_requant(&norm->params.mult, &norm->params.shift);
    norm->params.shift = rnd_range(-20, -8);
    norm->params.out_zp = rnd_zp();
    for (int32_t c = 0; c < channels; c++) {
        gamma_a[c] = (int16_t)((int32_t)rnd() >> 17);
        beta_a[c] = (int32_t)rnd() >> 12;
    }
    norm->gamma = gamma_a;
    norm->beta = beta_a;
}

mcf_add_params rnd_add(void) {
    const mcf_add_params p = {rnd_zp(),         rnd_zp(), rnd_range(0, 32767), rnd_range(0, 32767),
                              rnd_range(1, 30), rnd_zp()};
    return p;
}

#ifdef MCF_HARNESS_PROFILE
int main(void) {
    start_ticks();
    run_profile();
    put("DONE 0");
    end_line();
    return 0;
}
#else
int main(void) {
    start_ticks();
    const int mismatches = run_checks();
    run_benchmarks();
    put("DONE ");
    put_int(mismatches);
    end_line();
    return 0;
}
#endif
