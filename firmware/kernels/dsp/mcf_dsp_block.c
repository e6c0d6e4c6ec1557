/* The token blocks of the DSP fused kernels (mcf_dsp_block.h): widening, the 4-token dot loops and the
 * 4-token linear layer, with the assembly channel loops (built from the pieces in mcf_dsp_channels.h). One
 * copy, linked by every kernel that uses them. */
#include "mcf_dsp_block.h"

#include <stddef.h>

#include "mcf_dsp_channels.h"

void mcf_dsp_widen4(const int8_t *rows, int32_t stride, int32_t count, int32_t in_ch, int32_t zp,
                    uint32_t *x16) {
    const uint32_t offset = mcf_pack_pair(-zp);
    const int32_t groups = in_ch >> 2;
    const int32_t tail = in_ch & 3;
    int16_t *rest = (int16_t *)(x16 + 8 * groups);
    for (int32_t t = 0; t < MCF_DSP_BLOCK; t++) {
        const int8_t *x = rows + (t < count ? t : count - 1) * stride;
        mcf_dsp_widen_lane(x, groups, offset, x16 + 2 * t);
        for (int32_t r = 0; r < tail; r++) {
            rest[4 * r + t] = (int16_t)(x[4 * groups + r] - zp);
        }
    }
}

/* acc[t] += sum over `groups` groups of four inputs of x16 (token t) . w, for the four tokens of a block.
 * Per group of four inputs: one weight load and two SXTB16 shared by the four tokens, two LDM of four x16
 * words (two tokens each) and 8 SMLADs: 16 MACs in 13 instructions; with the loop (four groups per pass),
 * 64 MACs in 54. Inline assembly on the core: LDM fills registers in ascending order, so the four x16
 * operands are pinned to r8-r11 (GCC would otherwise load the words one by one and spill). */
#define MCF_DOT4_GROUP                               \
    "ldr %[wo], [%[pw]], #4\n\t"                     \
    "sxtb16 %[we], %[wo]\n\t"                        \
    "sxtb16 %[wo], %[wo], ror #8\n\t"                \
    "ldmia %[px]!, {%[xa], %[xb], %[xc], %[xd]}\n\t" \
    "smlad %[a0], %[xa], %[we], %[a0]\n\t"           \
    "smlad %[a0], %[xb], %[wo], %[a0]\n\t"           \
    "smlad %[a1], %[xc], %[we], %[a1]\n\t"           \
    "smlad %[a1], %[xd], %[wo], %[a1]\n\t"           \
    "ldmia %[px]!, {%[xa], %[xb], %[xc], %[xd]}\n\t" \
    "smlad %[a2], %[xa], %[we], %[a2]\n\t"           \
    "smlad %[a2], %[xb], %[wo], %[a2]\n\t"           \
    "smlad %[a3], %[xc], %[we], %[a3]\n\t"           \
    "smlad %[a3], %[xd], %[wo], %[a3]\n\t"

static void mcf_dsp_dot4(const uint32_t *x16, const int8_t *w, int32_t groups, int32_t acc[4]) {
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const uint32_t *px = x16;
#if MCF_DSP_ASM
    if (groups >= 2) {
        const uint32_t *end = x16 + 32 * (groups >> 2); /* the passes of four groups end here */
        register uint32_t xa __asm("r8");
        register uint32_t xb __asm("r9");
        register uint32_t xc __asm("r10");
        register uint32_t xd __asm("r11");
        uint32_t wo, we;
        __asm(
            "cmp %[px], %[end]\n\t"
            "beq 2f\n"
            "1:\n\t" MCF_DOT4_GROUP MCF_DOT4_GROUP MCF_DOT4_GROUP MCF_DOT4_GROUP
            "cmp %[px], %[end]\n\t"
            "bne 1b\n"
            "2:\n\t"
            "tst %[groups], #2\n\t"
            "beq 3f\n\t" MCF_DOT4_GROUP MCF_DOT4_GROUP "3:"
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [px] "+r"(px), [pw] "+r"(w),
              [wo] "=&r"(wo), [we] "=&r"(we), [xa] "=&r"(xa), [xb] "=&r"(xb), [xc] "=&r"(xc), [xd] "=&r"(xd)
            : [end] "r"(end), [groups] "r"(groups)
            : "cc", "memory");
        groups &= 1;
    }
#endif
    for (int32_t g = 0; g < groups; g++, px += 8) {
        const uint32_t ww = mcf_read4(w);
        w += 4;
        const uint32_t we = mcf_sxtb16(ww);
        const uint32_t wo = mcf_sxtb16_ror8(ww);
        a0 = mcf_smlad(px[1], wo, mcf_smlad(px[0], we, a0));
        a1 = mcf_smlad(px[3], wo, mcf_smlad(px[2], we, a1));
        a2 = mcf_smlad(px[5], wo, mcf_smlad(px[4], we, a2));
        a3 = mcf_smlad(px[7], wo, mcf_smlad(px[6], we, a3));
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* acc[t] += sum_k x16(token t)[k] * w[k] over k < length for the four tokens of a block: mcf_dsp_dot4 over
 * the groups of four, then the length % 4 leftover values (stored after the groups, token by token). */
static void mcf_dsp_dot4_row(const uint32_t *x16, int32_t length, const int8_t *w, int32_t acc[4]) {
    const int32_t groups = length >> 2;
    const int32_t tail = length & 3;
    mcf_dsp_dot4(x16, w, groups, acc);
    const int16_t *rest = (const int16_t *)(x16 + 8 * groups);
    const int8_t *wt = w + 4 * groups;
    for (int32_t r = 0; r < tail; r++) {
        const int32_t wv = wt[r];
        acc[0] += rest[4 * r] * wv;
        acc[1] += rest[4 * r + 1] * wv;
        acc[2] += rest[4 * r + 2] * wv;
        acc[3] += rest[4 * r + 3] * wv;
    }
}

/* mcf_dsp_dot4_row with widened weights (mcf_linear_layer.weight16): each group's two words are the halves
 * SXTB16 would make of an int8 word. The C path of mcf_dsp_linear4_strided (the assembly loop takes the
 * rest). */
static void mcf_dsp_dot4_row16(const uint32_t *x16, int32_t length, const int16_t *w, int32_t acc[4]) {
    const int32_t groups = length >> 2;
    const uint32_t *px = x16;
    for (int32_t g = 0; g < groups; g++, px += 8, w += 4) {
        const uint32_t we = mcf_read4((const int8_t *)w);
        const uint32_t wo = mcf_read4((const int8_t *)(w + 2));
        acc[0] = mcf_smlad(px[1], wo, mcf_smlad(px[0], we, acc[0]));
        acc[1] = mcf_smlad(px[3], wo, mcf_smlad(px[2], we, acc[1]));
        acc[2] = mcf_smlad(px[5], wo, mcf_smlad(px[4], we, acc[2]));
        acc[3] = mcf_smlad(px[7], wo, mcf_smlad(px[6], we, acc[3]));
    }
    const int16_t *rest = (const int16_t *)px;
    for (int32_t r = 0; r < (length & 3); r++) {
        const int32_t wv = w[r];
        acc[0] += rest[4 * r] * wv;
        acc[1] += rest[4 * r + 1] * wv;
        acc[2] += rest[4 * r + 2] * wv;
        acc[3] += rest[4 * r + 3] * wv;
    }
}

void mcf_dsp_x16_sums(const uint32_t *x16, int32_t length, int32_t sums[4]) {
    const int32_t groups = length >> 2;
    const int32_t tail = length & 3;
    const int16_t *rest = (const int16_t *)(x16 + 8 * groups);
    for (int32_t t = 0; t < 4; t++) {
        int32_t sum = 0;
        for (int32_t g = 0; g < groups; g++) {
            sum = mcf_smlad(x16[8 * g + 2 * t], 0x00010001u,
                            mcf_smlad(x16[8 * g + 2 * t + 1], 0x00010001u, sum));
        }
        for (int32_t r = 0; r < tail; r++) {
            sum += rest[4 * r + t];
        }
        sums[t] = sum;
    }
}

/* Whether one channel takes the requantization fast path of mcf_dsp_linear4_strided: the bias within +-2^30
 * (with in_ch < 32896 the accumulator then stays in int32) and shift in [-24, -2]. */
static int mcf_dsp_channel_fast(int32_t bias, int32_t shift, int32_t in_ch) {
    return in_ch < 32896 && bias > -(1 << 30) && bias < (1 << 30) && shift <= -2 && shift >= -24;
}

int mcf_dsp_channels_fast(const int32_t *bias, const mcf_channel_quant *quant, int32_t in_ch,
                          int32_t out_ch) {
    for (int32_t n = 0; n < out_ch; n++) {
        if (!mcf_dsp_channel_fast(bias[n], quant->shift[n], in_ch)) {
            return 0;
        }
    }
    return 1;
}

#if MCF_DSP_ASM
/* The byte offset into a dot loop of `group_bytes` groups that runs `groups` groups (Duff's device). */
static uint32_t mcf_dsp_loop_entry(int32_t groups, int32_t group_bytes) {
    const int32_t pass = MCF_DSP_PASS_GROUPS;
    return (uint32_t)((groups == 0 ? pass : (pass - (groups & (pass - 1))) & (pass - 1)) * group_bytes);
}

/* The channel loops (mcf_dsp_channels.h says how they work): per output channel, four tokens' dot products
 * from x16, requantized and stored. */
static void __attribute__((noinline, unused)) mcf_dsp_channels4(mcf_dsp_channel_loop *state,
                                                                const int8_t *weight) {
    MCF_CHANNELS_REGISTERS(state, weight);
    __asm volatile(MCF_CHANNELS4(MCF_DOT4_LOAD8, MCF_CHANNELS_DOT_LOOP, "", ""));
}

#if MCF_DSP_CHANNEL_TAIL
/* The same for an in_ch that is not a multiple of four (the x16 leftovers after the groups, as
 * mcf_dsp_channels4_shared reads them): a 7 x 7 patch embedding's 49 inputs. */
static void __attribute__((noinline, unused)) mcf_dsp_channels4_tail(mcf_dsp_channel_loop *state,
                                                                     const int8_t *weight) {
    MCF_CHANNELS_REGISTERS(state, weight);
    __asm volatile(
        MCF_CHANNELS4(MCF_DOT4_LOAD8, MCF_CHANNELS_DOT_LOOP, MCF_CHANNELS_TAIL_ENTER, MCF_CHANNELS_TAIL));
}
#endif

/* The same with widened weights (word aligned: LDRD). */
static void __attribute__((noinline, unused)) mcf_dsp_channels4_w16(mcf_dsp_channel_loop *state,
                                                                    const int16_t *weight16) {
    MCF_CHANNELS_REGISTERS(state, (const int8_t *)weight16);
    __asm volatile(MCF_CHANNELS4(MCF_DOT4_LOAD16, MCF_CHANNELS_DOT_LOOP16, "", ""));
}

#if MCF_DSP_SPEED_LOOPS
/* mcf_dsp_channels4 and mcf_dsp_channels4_w16 for the first two tokens of x16 only (mcf_dsp_block_rows): a
 * last block of one or two tokens in about 60% of a four-token block's instructions. */
static void __attribute__((noinline, unused)) mcf_dsp_channels2(mcf_dsp_channel_loop *state,
                                                                const int8_t *weight) {
    MCF_CHANNELS_REGISTERS(state, weight);
    __asm volatile(MCF_CHANNELS_OF(MCF_DOT4_LOAD8 MCF_DOT2_MACS_FIRST, MCF_CHANNELS_DOT_LOOP2, "", "",
                                   MCF_CHANNELS_STORE2));
}

static void __attribute__((noinline, unused)) mcf_dsp_channels2_w16(mcf_dsp_channel_loop *state,
                                                                    const int16_t *weight16) {
    MCF_CHANNELS_REGISTERS(state, (const int8_t *)weight16);
    __asm volatile(MCF_CHANNELS_OF(MCF_DOT4_LOAD16 MCF_DOT2_MACS_FIRST, MCF_CHANNELS_DOT_LOOP2_16, "", "",
                                   MCF_CHANNELS_STORE2));
}
#endif

/* One requantization for all channels, a start per token (MCF_CHANNELS_SHARED_OF). */
static void __attribute__((noinline, unused)) mcf_dsp_channels4_shared(mcf_dsp_shared_loop *state,
                                                                       const int8_t *weight) {
    MCF_CHANNELS_REGISTERS(state, weight);
    __asm volatile(MCF_CHANNELS_SHARED_OF(MCF_CHANNELS_DOT_LOOP, MCF_CHANNELS_TAIL, MCF_CHANNELS_STORE4,
                                          MCF_SHARED_STARTS4));
}

#if MCF_DSP_WIDE_KV
/* The same over widened rows (mcf_dsp_rows4_shared16: word aligned, leftovers as int16): 11 instructions per
 * group instead of 13. */
static void __attribute__((noinline, unused)) mcf_dsp_channels4_shared16(mcf_dsp_shared_loop *state,
                                                                         const int16_t *weight16) {
    MCF_CHANNELS_REGISTERS(state, (const int8_t *)weight16);
    __asm volatile(MCF_CHANNELS_SHARED_OF(MCF_CHANNELS_DOT_LOOP16, MCF_CHANNELS_TAIL16, MCF_CHANNELS_STORE4,
                                          MCF_SHARED_STARTS4));
}

#if MCF_DSP_SPEED_LOOPS
/* The same for the first two tokens only: 7 instructions per group. */
static void __attribute__((noinline, unused)) mcf_dsp_channels2_shared16(mcf_dsp_shared_loop *state,
                                                                         const int16_t *weight16) {
    MCF_CHANNELS_REGISTERS(state, (const int8_t *)weight16);
    __asm volatile(MCF_CHANNELS_SHARED_OF(MCF_CHANNELS_DOT_LOOP2_16, MCF_CHANNELS_TAIL2_16,
                                          MCF_CHANNELS_STORE2, MCF_SHARED_STARTS2));
}
#endif
#endif /* MCF_DSP_WIDE_KV */
#endif

void mcf_dsp_linear4_strided(const uint32_t *x16, int32_t in_ch, const mcf_linear_layer *layer,
                             int32_t out_ch, int8_t *out, int32_t token_stride, int32_t channel_stride,
                             int32_t count, int fast) {
    const int32_t out_zp = layer->params.out_zp;
    const mcf_channel_quant *quant = &layer->quant;
    const int32_t *bias = layer->bias;
    const int16_t *weight16 =
        MCF_DSP_WIDENED ? layer->weight16 : NULL; /* compiled out: the checks refuse it */
#if MCF_DSP_ASM
    const int32_t leftover = in_ch & 3;
    const int tail_ok = leftover == 0 || (MCF_DSP_CHANNEL_TAIL && weight16 == NULL && count == MCF_DSP_BLOCK);
    const int two = count == 2 && mcf_dsp_block_rows(count, in_ch) == 2; /* the two-token loops */
    if (fast && (count == MCF_DSP_BLOCK || two) && in_ch >= 4 && tail_ok && out_ch > 0) {
        const int32_t groups = in_ch >> 2;
        const int32_t group_bytes = two ? (weight16 != NULL ? MCF_DOT2_GROUP16_BYTES : MCF_DOT2_GROUP_BYTES)
                                        : (weight16 != NULL ? MCF_DOT4_GROUP16_BYTES : MCF_DOT4_GROUP_BYTES);
        mcf_dsp_channel_loop state = {-out_ch,
                                      out,
                                      3 * token_stride,
                                      quant->mult + out_ch,
                                      quant->shift + out_ch,
                                      2 * out_zp + 1,
                                      token_stride,
                                      channel_stride,
                                      bias + out_ch,
                                      mcf_dsp_loop_entry(groups - 1, group_bytes),
                                      x16,
                                      x16 + 8 * groups,
                                      (uint32_t)((3 - leftover) * 24)};
#if MCF_DSP_SPEED_LOOPS
        if (two) {
            if (weight16 != NULL) {
                mcf_dsp_channels2_w16(&state, weight16);
            } else {
                mcf_dsp_channels2(&state, layer->weight);
            }
            return;
        }
#endif
        if (weight16 != NULL) {
            mcf_dsp_channels4_w16(&state, weight16);
#if MCF_DSP_CHANNEL_TAIL
        } else if (leftover != 0) {
            mcf_dsp_channels4_tail(&state, layer->weight);
#endif
        } else {
            mcf_dsp_channels4(&state, layer->weight);
        }
        return;
    }
#endif
    for (int32_t n = 0; n < out_ch; n++) {
        const int32_t b = bias[n], m = quant->mult[n], s = quant->shift[n];
        const int row_fast = fast || mcf_dsp_channel_fast(b, s, in_ch);
        const int32_t start = row_fast ? b : 0;
        int32_t acc[4] = {start, start, start, start};
        if (weight16 != NULL) {
            mcf_dsp_dot4_row16(x16, in_ch, weight16 + n * in_ch, acc);
        } else {
            mcf_dsp_dot4_row(x16, in_ch, layer->weight + n * in_ch, acc);
        }
        int8_t *o = out + n * channel_stride;
        if (row_fast) {
            const int32_t down = -s - 1;
            const int32_t add = (1 << (down - 1)) + (int32_t)((uint32_t)out_zp << down);
            if (count == MCF_DSP_BLOCK) { /* the usual full block: straight-line */
                o[0] = mcf_dsp_sat8((mcf_smmul(acc[0], m) + add) >> down);
                o[token_stride] = mcf_dsp_sat8((mcf_smmul(acc[1], m) + add) >> down);
                o[2 * token_stride] = mcf_dsp_sat8((mcf_smmul(acc[2], m) + add) >> down);
                o[3 * token_stride] = mcf_dsp_sat8((mcf_smmul(acc[3], m) + add) >> down);
                continue;
            }
            for (int32_t t = 0; t < count; t++, o += token_stride) {
                *o = mcf_dsp_sat8((mcf_smmul(acc[t], m) + add) >> down);
            }
        } else {
            for (int32_t t = 0; t < count; t++, o += token_stride) {
                *o = mcf_dsp_requantize_s8(acc[t], b, m, s, out_zp);
            }
        }
    }
}

#if MCF_DSP_ASM
/* The state of the shared-requantization loops for rows of `length` values: groups of `group_bytes` of code,
 * leftover steps of `step_bytes`, the leftover code entered `tail_entry` bytes before its third-last step. */
static mcf_dsp_shared_loop mcf_dsp_shared_state(const uint32_t *x16, int32_t length, int32_t rows,
                                                const int32_t start[MCF_DSP_BLOCK], const mcf_dsp_requant *q,
                                                int8_t *out, int32_t token_stride, int32_t group_bytes,
                                                int32_t step_bytes, int32_t tail_entry) {
    const int32_t groups = length >> 2;
    mcf_dsp_shared_loop state = {-rows,
                                 out,
                                 3 * token_stride,
                                 q->mult,
                                 q->down,
                                 q->add,
                                 token_stride,
                                 {0, 0},
                                 mcf_dsp_loop_entry(groups, group_bytes),
                                 x16,
                                 x16 + 8 * groups,
                                 (uint32_t)(tail_entry + (3 - (length & 3)) * step_bytes),
                                 {start[0], start[1], start[2], start[3]}};
    return state;
}

/* Whether a shared-requantization call takes an assembly loop (for its token count): the fast
 * requantization, at least one group. */
static int mcf_dsp_shared_asm(int32_t length, int32_t rows, const mcf_dsp_requant *q) {
    return q->down > 0 && (length >> 2) > 0 && rows > 0;
}
#endif

void mcf_dsp_rows4_shared(const uint32_t *x16, int32_t length, const int8_t *weight, int32_t rows,
                          const int32_t start[MCF_DSP_BLOCK], const mcf_dsp_requant *q, int8_t *out,
                          int32_t token_stride, int32_t count) {
#if MCF_DSP_ASM
    if (count == MCF_DSP_BLOCK && mcf_dsp_shared_asm(length, rows, q)) {
        mcf_dsp_shared_loop state =
            mcf_dsp_shared_state(x16, length, rows, start, q, out, token_stride, MCF_DOT4_GROUP_BYTES, 24, 0);
        mcf_dsp_channels4_shared(&state, weight);
        return;
    }
#endif
    const int8_t *w = weight;
    for (int32_t n = 0; n < rows; n++, w += length) {
        int32_t acc[MCF_DSP_BLOCK] = {start[0], start[1], start[2], start[3]};
        mcf_dsp_dot4_row(x16, length, w, acc);
        mcf_dsp_requant_store4(q, acc, out + n, token_stride, count);
    }
}

#if MCF_DSP_WIDE_KV
void mcf_dsp_rows4_shared16(const uint32_t *x16, int32_t length, const int16_t *weight16, int32_t rows,
                            const int32_t start[MCF_DSP_BLOCK], const mcf_dsp_requant *q, int8_t *out,
                            int32_t token_stride, int32_t count) {
#if MCF_DSP_ASM
    const int even = (length & 1) == 0;
    if (count == MCF_DSP_BLOCK && mcf_dsp_shared_asm(length, rows, q)) {
        mcf_dsp_shared_loop state =
            mcf_dsp_shared_state(x16, length, rows, start, q, out, token_stride, MCF_DOT4_GROUP16_BYTES, 24,
                                 even ? MCF_TAIL16_EVEN : 0);
        mcf_dsp_channels4_shared16(&state, weight16);
        return;
    }
#if MCF_DSP_SPEED_LOOPS
    if (count == 2 && mcf_dsp_shared_asm(length, rows, q)) {
        mcf_dsp_shared_loop state =
            mcf_dsp_shared_state(x16, length, rows, start, q, out, token_stride, MCF_DOT2_GROUP16_BYTES, 16,
                                 even ? MCF_TAIL2_16_EVEN : 0);
        mcf_dsp_channels2_shared16(&state, weight16);
        return;
    }
#endif
#endif
    const int16_t *w = weight16;
    for (int32_t n = 0; n < rows; n++, w += MCF_WIDE_LENGTH(length)) {
        int32_t acc[MCF_DSP_BLOCK] = {start[0], start[1], start[2], start[3]};
        mcf_dsp_dot4_row16(x16, length, w, acc);
        mcf_dsp_requant_store4(q, acc, out + n, token_stride, count);
    }
}

void mcf_dsp_widen_rows16(const int8_t *rows, int32_t count, int32_t length, int32_t stride, int16_t *out) {
    const int32_t groups = length >> 2;
    for (int32_t n = 0; n < count; n++, rows += stride) {
        uint32_t *words = (uint32_t *)out;
        for (int32_t g = 0; g < groups; g++, words += 2) {
            const uint32_t w = mcf_read4(rows + 4 * g);
            words[0] = mcf_sxtb16(w);
            words[1] = mcf_sxtb16_ror8(w);
        }
        int16_t *rest = (int16_t *)words;
        for (int32_t r = 4 * groups; r < length; r++) {
            *rest++ = rows[r];
        }
        if (length & 1) {
            *rest++ = 0;
        }
        out = rest;
    }
}
#endif
