/* The DSP LayerNorm (support file: mcf_layernorm_s8 and the fused kernels call its rows, the fused kernels
 * with the lean test done once per call, mcf_dsp.h), same results as the portable kernel.
 *
 * Per token: S and Q by SMLAD over SXTAB16-widened words (S as a dot product with (1, 1)); var = D*Q - S^2 +
 * eps in int64; sd by two Newton steps (UDIV) while var < 2^32, else bit by bit; inv = 2^40 / sd in two
 * 32-bit divisions while var < 2^32. Per channel, the spec's 64-bit chain becomes 32-bit instructions, each
 * exact (the reasons are at each helper):
 *  - 4 * centered = 4D * x - 4 * base, base = S + D * in_zp (the sum of the raw x): one multiply-accumulate,
 *    |4 * centered| < 2^25.
 *  - norm = (centered * inv + 2^29) >> 30 = (4 * centered * inv + 2^31) >> 32, the rounded high word (SMMULR)
 *    while inv < 2^31 (sd > 512); for rows of smaller variance inv = inv_hi * 2^32 + inv_lo and norm =
 *    SMMULR(4c, inv_lo) + 4c * inv_hi modulo 2^32 (one SMMLAR), exact as |norm| < 2^19 (ln_norm_bound).
 *  - acc = sat32(norm * gamma + beta) is one MLA when no channel can reach the int32 limits, which is
 *    checked once a call from the betas and gamma's int16 range (ln_no_saturation); else SMLAL and a test of
 *    the high word.
 *  - the requantization of mcf_dsp_requant (shift in [-24, -2]) as SMMLA, ASR and SSAT; else
 *    mcf_requantize_s8.
 * The common case (ln_row_lean, inline assembly) costs ten instructions a channel. */
#include <stddef.h>

#include "mcf_dsp_fused.h"
#include "mcf_kernels.h"
#include "mcf_math.h"

/* An upper bound of sqrt(value) for 1 <= value < 2^32, at most 7% (plus 3) above: with 4^k <= value <
 * 4^(k + 1), the tangent of sqrt at 2 * 4^k, value / (2^(k + 1) sqrt 2) + 2^k / sqrt 2 (above sqrt, which is
 * concave), with 91 / 256 > 1 / (2 sqrt 2) and 182 / 256 > 1 / sqrt 2; the three floors lose less than 3. */
static inline uint32_t ln_sqrt_above(uint32_t value) {
    const int32_t k = (31 - __builtin_clz(value)) >> 1;
    return (((value >> k) * 91) >> 8) + ((182u << k) >> 8) + 3;
}

/* floor(sqrt(value)) for 1 <= value < 2^32 in two Newton steps from ln_sqrt_above, no loop. A step r -> (r +
 * value / r) / 2 (floor divisions) gives at least floor(sqrt(value)) from any r >= 1 (AM-GM; the inner floor
 * does not change the outer one) and about squares the relative error, so the second step is floor(sqrt(
 * value)) or one more, at most 2^16. One test finishes: root^2 > value, as root^2 - 1 >= value modulo 2^32
 * (root = 2^16 wraps to 2^32 - 1, above every value, as it should). Checked against a float reference for
 * every value below 2^32. */
static inline __attribute__((always_inline)) uint32_t isqrt32(uint32_t value) {
    uint32_t root = ln_sqrt_above(value);
    root = (root + value / root) >> 1;
    root = (root + value / root) >> 1;
    return root * root - 1 >= value ? root - 1 : root;
}

/* The per-token constants of the channel loops: 4 * centered = x * d4 + nb4 (d4 = 4D, nb4 = -4 * base) and
 * inv = inv_hi * 2^32 + inv_lo with inv_lo the signed low word. */
typedef struct {
    int32_t d4, nb4, inv_lo, inv_hi;
} ln_row;

/* 2^40 / sd for 2^16 <= sd < 2^32 in 32-bit arithmetic (a 64-bit division would link libgcc's __udivmoddi4,
 * 0.9 KB of flash, for this rare case): 2^32 = q * sd + r with q = (2^32 - sd) / sd + 1 and r = (2^32 - sd) %
 * sd, then eight restoring steps of long division on 2^8 * (q * sd + r); 2r >= sd is tested as r >= sd - r so
 * nothing overflows. The result is at most 2^24. */
static uint32_t ln_recip_wide(uint32_t sd) {
    uint32_t q = (0u - sd) / sd + 1;
    uint32_t r = (0u - sd) % sd;
    for (int32_t bit = 0; bit < MCF_LN_RECIP_BITS - 32; bit++) {
        const int up = r >= sd - r;
        q = q << 1 | (uint32_t)up;
        r = up ? r - (sd - r) : r << 1;
    }
    return q;
}

/* inv = 2^40 / max(isqrt(var), 1) into row (var >= 0). While var < 2^32, sd < 2^16 and the quotient is two
 * 32-bit divisions (2^40 = 2^24 * 2^16, the remainder of the first below sd <= 2^16): inv = q1 * 2^16 + q2
 * with q2 < 2^16, so the low word takes no carry from q2. Else 2^16 <= sd < 2^32 and inv <= 2^24. */
static void ln_inverse(int64_t var, ln_row *row) {
    if (var >> 32 == 0) {
        const uint32_t sd = isqrt32(var == 0 ? 1 : (uint32_t)var); /* max(isqrt(var), 1) */
        const uint32_t q1 = (1u << 24) / sd;
        const uint32_t q2 = (((1u << 24) - q1 * sd) << 16) / sd;
        const uint32_t low = (q1 << 16) + q2;
        row->inv_lo = (int32_t)low;
        row->inv_hi = (int32_t)(q1 >> 16) + (int32_t)(low >> 31);
    } else {
        row->inv_lo = (int32_t)ln_recip_wide((uint32_t)mcf_isqrt64((uint64_t)var));
        row->inv_hi = 0;
    }
}

/* A bound on |norm| for every row of D channels, 2 <= D < 2^13: with c_i = D * x_i - S, sum_i c_i = 0 and
 * sum_i c_i^2 = D * (D * Q - S^2), so c_i^2 <= (D - 1) * (D * Q - S^2) <= (D - 1) * var (Cauchy-Schwarz over
 * the other D - 1 terms; eps >= 0). When var >= 1, var < (sd + 1)^2 <= (2 * sd)^2 and inv <= 2^40 / sd, so
 * |c_i * inv / 2^30| < sqrt(D - 1) * 2^11 = 8 * sqrt((D - 1) * 2^16) and |norm| is at most that plus 1/2
 * (rounding); var = 0 gives c_i = 0. Below 2^19. */
static int32_t ln_norm_bound(int32_t channels) {
    return 8 * (int32_t)ln_sqrt_above((uint32_t)(channels - 1) << 16) + 1;
}

/* Whether norm * gamma[c] + beta[c] stays inside int32 for every channel and every |norm| <= bound, so that
 * the saturation of acc never acts (D >= 2). A cheap, sufficient test: |gamma| <= 2^15 (int16; PTQ's largest
 * gamma is 32767, so a bound from the gammas themselves would not be smaller), b is the OR of the betas'
 * one's complement magnitudes (|v| <= (v ^ (v >> 31)) + 1 <= b + 1), and bound * 2^15 + b + 1 <= INT32_MAX.
 * It runs on every call, so on the core two channels an iteration with LDRD (3.5 instructions a channel). */
static int ln_no_saturation(const int32_t *beta, int32_t channels, int32_t bound) {
    const int32_t last = channels - 1; /* for an odd count; counted twice for an even one */
    uint32_t b = (uint32_t)(beta[last] ^ (beta[last] >> 31));
#if MCF_DSP_ASM
    const int32_t *end = beta + (channels & ~1);
    int32_t b0, b1;
    __asm(
        "1:\n\t"
        "ldrd %[b0], %[b1], [%[pb]], #8\n\t"
        "eor %[b0], %[b0], %[b0], asr #31\n\t"
        "eor %[b1], %[b1], %[b1], asr #31\n\t"
        "orr %[b], %[b], %[b0]\n\t"
        "orr %[b], %[b], %[b1]\n\t"
        "cmp %[pb], %[end]\n\t"
        "bne 1b"
        : [b] "+r"(b), [pb] "+r"(beta), [b0] "=&r"(b0), [b1] "=&r"(b1)
        : [end] "r"(end)
        : "cc", "memory");
#else
    for (int32_t c = 0; c < last; c++) {
        b |= (uint32_t)(beta[c] ^ (beta[c] >> 31));
    }
#endif
    return (int64_t)bound * (INT16_MAX + 1) + (int64_t)b + 1 <= INT32_MAX;
}

/* The per-call constants of ln_row_lean, in the order its loop loads them (LDRD, LDRD, LDR): the gamma and
 * beta rows, k = 4D << 16 | down (4D < 2^15 in the top half for SMLABT; down in the low byte for ASR by
 * register, which reads bits 7:0 only, bits 15:8 being 0) and the requantization's mult and add. */
typedef struct {
    const int16_t *gamma;
    const int32_t *beta;
    uint32_t k;
    int32_t mult, add;
} ln_lean;

/* 4 * groups channels of a row when no acc saturates (ln_no_saturation) and the requantization is the fast
 * one (down > 0). Per channel, with inv_hi = 0 (sd > 512; four channels an iteration, no spill):
 *   LDRSB x; SMLABT 4c = x * 4D + nb4; SMMULR norm = (4c * inv + 2^31) >> 32;
 *   LDRSH gamma; LDR beta; MLA acc = norm * gamma + beta; SMMLA; ASR; SSAT 8; STRB
 * else (rows of small variance, one channel an iteration) MUL g = 4c * inv_hi and SMMLAR norm = g + ((4c *
 * inv_lo + 2^31) >> 32) in place of SMMULR. Each x is read before its output is written (output may alias
 * input). Not inlined: its fourteen registers would make the token loop spill. */
static __attribute__((noinline)) void ln_row_lean(const ln_lean *l, const ln_row *r, const int8_t *x,
                                                  int8_t *y, int32_t groups) {
#if MCF_DSP_ASM
    _Static_assert(offsetof(ln_lean, k) == 8 && offsetof(ln_lean, add) == 16, "ln_row_lean loads ln_lean");
    if (groups > 0) {
        const int8_t *end = x + 4 * groups;
        const ln_lean *add = l; /* the pointer's register holds add once the constants are loaded */
        const int16_t *pg;
        const int32_t *pb;
        uint32_t k;
        int32_t mult, t, g, b;
#define MCF_LN_TAIL                         \
    "ldrsh %[g], [%[pg]], #2\n\t"           \
    "ldr %[b], [%[pb]], #4\n\t"             \
    "mla %[t], %[t], %[g], %[b]\n\t"        \
    "smmla %[t], %[t], %[mult], %[add]\n\t" \
    "asr %[t], %[t], %[k]\n\t"              \
    "ssat %[t], #8, %[t]\n\t"               \
    "strb %[t], [%[py]], #1\n\t"
#define MCF_LN_LANE                       \
    "ldrsb %[t], [%[px]], #1\n\t"         \
    "smlabt %[t], %[t], %[k], %[nb4]\n\t" \
    "smmulr %[t], %[t], %[inv]\n\t" MCF_LN_TAIL
        __asm volatile(
            "ldrd %[pg], %[pb], [%[add]]\n\t"
            "ldrd %[k], %[mult], [%[add], #8]\n\t"
            "ldr %[add], [%[add], #16]\n\t"
            "cmp %[ih], #0\n\t"
            "bne 2f\n"
            "1:\n\t" MCF_LN_LANE MCF_LN_LANE MCF_LN_LANE MCF_LN_LANE
            "cmp %[px], %[end]\n\t"
            "bne 1b\n\t"
            "b 3f\n"
            "2:\n\t"
            "ldrsb %[t], [%[px]], #1\n\t"
            "smlabt %[t], %[t], %[k], %[nb4]\n\t"
            "mul %[g], %[t], %[ih]\n\t"
            "smmlar %[t], %[t], %[inv], %[g]\n\t" MCF_LN_TAIL
            "cmp %[px], %[end]\n\t"
            "bne 2b\n"
            "3:"
            : [px] "+r"(x), [py] "+r"(y), [add] "+r"(add), [pg] "=&r"(pg), [pb] "=&r"(pb), [k] "=&r"(k),
              [mult] "=&r"(mult), [t] "=&r"(t), [g] "=&r"(g), [b] "=&r"(b)
            : [end] "r"(end), [nb4] "r"(r->nb4), [inv] "r"(r->inv_lo), [ih] "r"(r->inv_hi)
            : "cc", "memory");
#undef MCF_LN_LANE
#undef MCF_LN_TAIL
    }
#else
    for (int32_t c = 0; c < 4 * groups; c++) {
        const int32_t c4 = x[c] * (int32_t)(l->k >> 16) + r->nb4;
        const uint32_t norm = (uint32_t)mcf_smmulr(c4, r->inv_lo) + (uint32_t)c4 * (uint32_t)r->inv_hi;
        const int32_t acc = (int32_t)norm * l->gamma[c] + l->beta[c]; /* in int32: ln_no_saturation */
        y[c] = mcf_dsp_sat8(mcf_smmla(acc, l->mult, l->add) >> (l->k & 0xFFu));
    }
#endif
}

/* mcf_requantize_s8 out of line: the exact loop stays small. */
static __attribute__((noinline)) int8_t ln_requant_slow(int32_t acc, const mcf_dsp_requant *q) {
    return mcf_requantize_s8(acc, q->mult, q->shift, q->out_zp);
}

/* Any channels: saturation tested per channel, any requantization. For the channels ln_row_lean leaves (the
 * D % 4 last ones) and the calls it cannot take (gamma or beta that may saturate, shift outside [-24, -2],
 * D = 1 or D >= 2^13). */
static __attribute__((noinline)) void ln_row_exact(const ln_row *r, const mcf_dsp_requant *q, const int8_t *x,
                                                   int8_t *y, int32_t count, const int16_t *gamma,
                                                   const int32_t *beta) {
    for (int32_t c = 0; c < count; c++) {
        const int32_t c4 = x[c] * r->d4 + r->nb4;
        const uint32_t norm = (uint32_t)mcf_smmulr(c4, r->inv_lo) + (uint32_t)c4 * (uint32_t)r->inv_hi;
        const int32_t acc = mcf_mla_sat32((int32_t)norm, gamma[c], beta[c]);
        y[c] =
            q->down > 0 ? mcf_dsp_sat8(mcf_smmla(acc, q->mult, q->add) >> q->down) : ln_requant_slow(acc, q);
    }
}

/* Q = sum (x - in_zp)^2, and S = sum (x - in_zp) in *sum_out, both in int32: |S| <= 255 * 2^15 and Q <=
 * 255^2 * (2^15 - 1) < 2^31. */
static inline int32_t ln_stats(const int8_t *x, int32_t channels, int32_t in_zp, int32_t *sum_out) {
    const uint32_t offset = mcf_pack_pair(-in_zp);
    const uint32_t ones = 0x00010001u;
    int32_t sum = 0;
    int32_t squares = 0;
    int32_t c = 0;
    for (; c + 8 <= channels; c += 8) {
        const uint32_t w0 = mcf_read4(x + c);
        const uint32_t w1 = mcf_read4(x + c + 4);
        const uint32_t e0 = mcf_sxtab16(offset, w0);
        const uint32_t o0 = mcf_sxtab16_ror8(offset, w0);
        const uint32_t e1 = mcf_sxtab16(offset, w1);
        const uint32_t o1 = mcf_sxtab16_ror8(offset, w1);
        sum = mcf_smlad(o0, ones, mcf_smlad(e0, ones, sum));
        squares = mcf_smlad(o0, o0, mcf_smlad(e0, e0, squares));
        sum = mcf_smlad(o1, ones, mcf_smlad(e1, ones, sum));
        squares = mcf_smlad(o1, o1, mcf_smlad(e1, e1, squares));
    }
    for (; c < channels; c++) {
        const int32_t xi = x[c] - in_zp;
        sum += xi;
        squares += xi * xi;
    }
    *sum_out = sum;
    return squares;
}

int mcf_dsp_layernorm_lean(const mcf_layernorm_params *params, const int32_t *beta, int32_t channels) {
    return params->shift <= -2 && params->shift >= -24 && channels > 1 && channels < (1 << 13) &&
           ln_no_saturation(beta, channels, ln_norm_bound(channels));
}

void mcf_dsp_layernorm_rows(const mcf_layernorm_layer *norm, int32_t channels, int lean, const int8_t *input,
                            int8_t *output, int32_t tokens) {
    const mcf_layernorm_params *params = &norm->params;
    const int16_t *gamma = norm->gamma;
    const int32_t *beta = norm->beta;
    const int32_t in_zp = params->in_zp;
    const int64_t eps = params->eps;
    const mcf_dsp_requant quant = mcf_dsp_requant_make(params->mult, params->shift, params->out_zp);
    const ln_lean lean_call = {gamma, beta, (uint32_t)(4 * channels) << 16 | (uint32_t)quant.down, quant.mult,
                               quant.add};
    const int32_t zp_sum = channels * in_zp;
    for (int32_t t = 0; t < tokens; t++) {
        const int8_t *x = input + t * channels;
        int8_t *y = output + t * channels;
        int32_t sum;
        const int32_t squares = ln_stats(x, channels, in_zp, &sum);
        /* D * Q - S^2 >= 0 and eps <= 2^62: no overflow. */
        const int64_t var =
            eps + (int64_t)((uint64_t)(uint32_t)channels * (uint32_t)squares) + (int64_t)(-sum) * sum;
        /* |4 * base| <= 4 * 128 * D < 2^22 and |4 * centered| <= 4 * 255 * D < 2^25. */
        ln_row row = {4 * channels, -4 * (sum + zp_sum), 0, 0};
        ln_inverse(var, &row);
        int32_t c = 0;
        if (lean) {
            ln_row_lean(&lean_call, &row, x, y, channels >> 2);
            c = channels & ~3;
        }
        if (c < channels) {
            ln_row_exact(&row, &quant, x + c, y + c, channels - c, gamma + c, beta + c);
        }
    }
}
