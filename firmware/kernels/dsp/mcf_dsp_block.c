/* The token blocks of the DSP fused kernels (mcf_dsp_block.h): widening, the 4-token dot loops and the
 * 4-token linear layer, with the assembly channel loops. One copy, linked by every kernel that uses them. */
#include "mcf_dsp_block.h"

#include <stddef.h>

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
/* The channel loops below: for every output channel n (a weight row, rows consecutive), four accumulators
 * acc[t] = start + x16(t) . w_n, then out[t * token_stride + n * channel_stride] = ssat8((SMMUL(acc, mult) +
 * add) >> down) (one SMMLA, see mcf_dsp_requant). The dot loop runs 16 groups of four inputs per pass (8
 * with MCF_DSP_SPEED_LOOPS=0: its compare and branch once more per channel of 9 to 16 groups, for half the
 * code) and is entered part-way (Duff's device) when the group count is not a multiple of the pass;
 * everything else a channel needs is reloaded from a state in memory with one LDM and a few LDRD, so nothing
 * is spilled around the loop (GCC's code around mcf_dsp_dot4 took about 90 instructions per channel, these
 * 32). They use every register but sp: r7 holds the state (saved on the stack: it may be GCC's frame
 * pointer, which nothing in the loops addresses through). The channel counter n runs from -out_ch up to 0,
 * so that one ADDS counts it and tests for the end, and the per-channel arrays are indexed from their ends.
 */

/* mcf_dsp_channels4's state (every field one word, at the offsets the assembly loads). */
typedef struct {
    int32_t n;              /*  0: the channel's index minus out_ch (negative) */
    int8_t *out;            /*  4: the channel's output for token 0 */
    int32_t token_stride3;  /*  8: 3 * token_stride */
    const int32_t *mult;    /* 12: the end of the layer's mult (indexed by n) */
    const int8_t *shift;    /* 16: the end of its shift */
    int32_t zp2;            /* 20: 2 * out_zp + 1 */
    int32_t token_stride;   /* 24 */
    int32_t channel_stride; /* 28 */
    const int32_t *bias;    /* 32: the end of its bias */
    uint32_t entry;         /* 36: byte offset into the loop, then the Thumb address to enter it at */
    const uint32_t *x16;    /* 40: where each channel's first group (peeled off the loop) starts */
    const uint32_t *end;    /* 44: x16 + 8 * groups */
    uint32_t tail_entry;    /* 48: (the tail loop) offset into the leftover code, then its address */
} mcf_dsp_channel_loop;
_Static_assert(offsetof(mcf_dsp_channel_loop, token_stride) == 24 &&
                   offsetof(mcf_dsp_channel_loop, bias) == 32 && offsetof(mcf_dsp_channel_loop, x16) == 40 &&
                   offsetof(mcf_dsp_channel_loop, tail_entry) == 48,
               "mcf_dsp_channels4 loads mcf_dsp_channel_loop at these offsets");

/* mcf_dsp_channels4_shared's state: one requantization for every channel (channel_stride 1), a start per
 * token. */
typedef struct {
    int32_t n;             /*  0: the channel's index minus the row count (negative) */
    int8_t *out;           /*  4: the channel's output for token 0 */
    int32_t token_stride3; /*  8: 3 * token_stride */
    int32_t mult;          /* 12 */
    int32_t down;          /* 16 */
    int32_t add;           /* 20 */
    int32_t token_stride;  /* 24 */
    int32_t unused[2];     /* 28 */
    uint32_t entry;        /* 36: as in mcf_dsp_channel_loop */
    const uint32_t *x16;   /* 40 */
    const uint32_t *end;   /* 44: x16 + 8 * groups */
    uint32_t tail_entry;   /* 48: byte offset into the leftover code, then its Thumb address */
    int32_t start[4];      /* 52: the accumulators' start per token */
} mcf_dsp_shared_loop;
_Static_assert(offsetof(mcf_dsp_shared_loop, token_stride) == 24 &&
                   offsetof(mcf_dsp_shared_loop, entry) == 36 && offsetof(mcf_dsp_shared_loop, x16) == 40 &&
                   offsetof(mcf_dsp_shared_loop, tail_entry) == 48 &&
                   offsetof(mcf_dsp_shared_loop, start) == 52,
               "mcf_dsp_channels4_shared loads mcf_dsp_shared_loop at these offsets");

/* The multiply half of a group of four inputs in fixed registers: weight halves in r4/r5, x16 (two LDM of
 * four words, r8-r11) via r6, accumulators r0-r3; 40 bytes. */
#define MCF_DOT4_MACS_FIXED               \
    "ldmia.w r6!, {r8, r9, r10, r11}\n\t" \
    "smlad r0, r8, r4, r0\n\t"            \
    "smlad r0, r9, r5, r0\n\t"            \
    "smlad r1, r10, r4, r1\n\t"           \
    "smlad r1, r11, r5, r1\n\t"           \
    "ldmia.w r6!, {r8, r9, r10, r11}\n\t" \
    "smlad r2, r8, r4, r2\n\t"            \
    "smlad r2, r9, r5, r2\n\t"            \
    "smlad r3, r10, r4, r3\n\t"           \
    "smlad r3, r11, r5, r3\n\t"

/* The same for a channel's first group, every accumulator starting from the bias in r3. */
#define MCF_DOT4_MACS_FIRST               \
    "ldmia.w r6!, {r8, r9, r10, r11}\n\t" \
    "smlad r0, r8, r4, r3\n\t"            \
    "smlad r0, r9, r5, r0\n\t"            \
    "smlad r1, r10, r4, r3\n\t"           \
    "smlad r1, r11, r5, r1\n\t"           \
    "ldmia.w r6!, {r8, r9, r10, r11}\n\t" \
    "smlad r2, r8, r4, r3\n\t"            \
    "smlad r2, r9, r5, r2\n\t"            \
    "smlad r3, r10, r4, r3\n\t"           \
    "smlad r3, r11, r5, r3\n\t"

/* The same for the first two tokens only (the two-token loops: x16's words of tokens 2 and 3 skipped), with
 * accumulators r0 and r1; 24 bytes, and for a channel's first group, both starting from the bias in r3. */
#define MCF_DOT2_MACS_FIXED               \
    "ldmia.w r6!, {r8, r9, r10, r11}\n\t" \
    "smlad r0, r8, r4, r0\n\t"            \
    "smlad r0, r9, r5, r0\n\t"            \
    "smlad r1, r10, r4, r1\n\t"           \
    "smlad r1, r11, r5, r1\n\t"           \
    "add.w r6, r6, #16\n\t"
#define MCF_DOT2_MACS_FIRST               \
    "ldmia.w r6!, {r8, r9, r10, r11}\n\t" \
    "smlad r0, r8, r4, r3\n\t"            \
    "smlad r0, r9, r5, r0\n\t"            \
    "smlad r1, r10, r4, r3\n\t"           \
    "smlad r1, r11, r5, r1\n\t"           \
    "add.w r6, r6, #16\n\t"

/* Loading one group's weights into r4/r5: an int8 word via r12 split by SXTB16 (every instruction 32 bits
 * wide: the group is 52 bytes, so the loop can be entered at any group), or widened weights
 * (mcf_linear_layer.weight16), both halves in one LDRD: 16 MACs in 11 instructions instead of 13, 44 bytes.
 */
#define MCF_DOT4_LOAD8 "ldr.w r5, [r12], #4\n\tsxtb16 r4, r5\n\tsxtb16 r5, r5, ror #8\n\t"
#define MCF_DOT4_LOAD16 "ldrd r4, r5, [r12], #8\n\t"
#define MCF_DOT4_GROUP_FIXED MCF_DOT4_LOAD8 MCF_DOT4_MACS_FIXED
#define MCF_DOT4_GROUP_BYTES 52 /* MCF_CHANNELS_DOT_LOOP's check repeats these two */
#define MCF_DOT4_GROUP16_FIXED MCF_DOT4_LOAD16 MCF_DOT4_MACS_FIXED
#define MCF_DOT4_GROUP16_BYTES 44
#define MCF_DOT2_GROUP_FIXED MCF_DOT4_LOAD8 MCF_DOT2_MACS_FIXED
#define MCF_DOT2_GROUP_BYTES 36
#define MCF_DOT2_GROUP16_FIXED MCF_DOT4_LOAD16 MCF_DOT2_MACS_FIXED
#define MCF_DOT2_GROUP16_BYTES 28

/* One leftover input (rest stored value by value: words (t0, t1), (t2, t3)) for the four tokens, its weight
 * read into r4 by `load` (int8, or int16 for widened rows), every instruction 32 bits wide: 24 bytes, so the
 * leftover code can be entered at any step. */
#define MCF_LEFTOVER_STEP_OF(load)   \
    load "ldmia.w r6!, {r8, r9}\n\t" \
         "smlabb r0, r8, r4, r0\n\t" \
         "smlatb r1, r8, r4, r1\n\t" \
         "smlabb r2, r9, r4, r2\n\t" \
         "smlatb r3, r9, r4, r3\n\t"
#define MCF_LEFTOVER_STEP MCF_LEFTOVER_STEP_OF("ldrsb.w r4, [r12], #1\n\t")
#define MCF_LEFTOVER_STEP16 MCF_LEFTOVER_STEP_OF("ldrsh.w r4, [r12], #2\n\t")
/* The last leftover of a widened row of odd length: steps over the row's zero pad (MCF_WIDE_LENGTH). */
#define MCF_LEFTOVER_STEP16_PAD MCF_LEFTOVER_STEP_OF("ldrsh.w r4, [r12], #4\n\t")
/* The same steps for the first two tokens (the word of tokens 2 and 3 skipped): 16 bytes. */
#define MCF_LEFTOVER2_STEP_OF(load)  \
    load "ldr.w r8, [r6], #8\n\t"    \
         "smlabb r0, r8, r4, r0\n\t" \
         "smlatb r1, r8, r4, r1\n\t"
#define MCF_LEFTOVER2_STEP16 MCF_LEFTOVER2_STEP_OF("ldrsh.w r4, [r12], #2\n\t")
#define MCF_LEFTOVER2_STEP16_PAD MCF_LEFTOVER2_STEP_OF("ldrsh.w r4, [r12], #4\n\t")

/* Entering a channel loop: save r7 and keep the state there (sp stays 8-byte aligned), turn the loop's entry
 * offset (state word 9) into a Thumb address. */
#define MCF_CHANNELS_ENTER   \
    "str r7, [sp, #-8]!\n\t" \
    "mov r7, r6\n\t"         \
    "adr.w r11, 1f\n\t"      \
    "ldr r10, [r7, #36]\n\t" \
    "add r11, r11, r10\n\t"  \
    "orr r11, r11, #1\n\t"   \
    "str r11, [r7, #36]\n\t"

/* The leftover code's entry (state word 12: a byte offset into label 6) turned into a Thumb address. */
#define MCF_CHANNELS_TAIL_ENTER \
    "adr.w r10, 6f\n\t"         \
    "ldr r9, [r7, #48]\n\t"     \
    "add r10, r10, r9\n\t"      \
    "orr r10, r10, #1\n\t"      \
    "str r10, [r7, #48]\n\t"

/* After the dot loop: the length % 4 leftover inputs (`steps`, `bytes` long (a string): entered part-way,
 * three steps at most). */
#define MCF_CHANNELS_TAIL_OF(steps, bytes)                                                \
    "ldr pc, [r7, #48]\n"                                                                 \
    "6:\n\t" steps                                                                        \
    "7:\n\t"                                                                              \
    ".if (7b - 6b) - " bytes                                                              \
    "\n\t"                                                                                \
    ".error \"a leftover step has the wrong size: the tail entry offsets are wrong\"\n\t" \
    ".endif\n\t"
#define MCF_CHANNELS_TAIL MCF_CHANNELS_TAIL_OF(MCF_LEFTOVER_STEP MCF_LEFTOVER_STEP MCF_LEFTOVER_STEP, "72")

/* The leftovers of widened rows (mcf_dsp_widen_rows16): rows of odd length enter the first three steps, whose
 * last skips the pad; rows of even length the three after them, MCF_TAIL16_EVEN bytes on (the branch is
 * 4 bytes). */
#define MCF_TAIL16_EVEN 76
#define MCF_CHANNELS_TAIL16                                                                        \
    MCF_CHANNELS_TAIL_OF(MCF_LEFTOVER_STEP16 MCF_LEFTOVER_STEP16 MCF_LEFTOVER_STEP16_PAD           \
                         "b.w 7f\n\t" MCF_LEFTOVER_STEP16 MCF_LEFTOVER_STEP16 MCF_LEFTOVER_STEP16, \
                         "148")

/* The same for the two-token loops: 16-byte steps, rows of even length MCF_TAIL2_16_EVEN bytes on. */
#define MCF_TAIL2_16_EVEN 52
#define MCF_CHANNELS_TAIL2_16                                                                         \
    MCF_CHANNELS_TAIL_OF(MCF_LEFTOVER2_STEP16 MCF_LEFTOVER2_STEP16 MCF_LEFTOVER2_STEP16_PAD           \
                         "b.w 7f\n\t" MCF_LEFTOVER2_STEP16 MCF_LEFTOVER2_STEP16 MCF_LEFTOVER2_STEP16, \
                         "100")

/* The dot loop's groups a pass (MCF_DSP_SPEED_LOOPS: 16, else 8) and the text of that many groups. */
#if MCF_DSP_SPEED_LOOPS
#define MCF_DSP_PASS_GROUPS 16
#define MCF_DSP_PASS(group) \
    group group group group group group group group group group group group group group group group
#else
#define MCF_DSP_PASS_GROUPS 8
#define MCF_DSP_PASS(group) group group group group group group group group
#endif
#define MCF_DSP_STRING(x) #x
#define MCF_DSP_XSTRING(x) MCF_DSP_STRING(x)

/* The dot loop (label 1, MCF_DSP_PASS_GROUPS groups a pass, until r6 reaches lr); `group_bytes` (a string) is
 * one group's size, which the entry offsets assume (entering at the end of the pass runs none). */
#define MCF_CHANNELS_DOT_LOOP_OF(group, group_bytes) \
    "1:\n\t" MCF_DSP_PASS(group) "2:\n\t"                                             \
    ".if (2b - 1b) - " MCF_DSP_XSTRING(MCF_DSP_PASS_GROUPS) " * " group_bytes "\n\t"      \
    ".error \"a dot-loop group has the wrong size: the entry offsets are wrong\"\n\t" \
    ".endif\n\t"                                                                      \
    "cmp r6, lr\n\t"                                                                  \
    "bne 1b\n\t"
#define MCF_CHANNELS_DOT_LOOP MCF_CHANNELS_DOT_LOOP_OF(MCF_DOT4_GROUP_FIXED, "52")
#define MCF_CHANNELS_DOT_LOOP16 MCF_CHANNELS_DOT_LOOP_OF(MCF_DOT4_GROUP16_FIXED, "44")
#define MCF_CHANNELS_DOT_LOOP2 MCF_CHANNELS_DOT_LOOP_OF(MCF_DOT2_GROUP_FIXED, "36")
#define MCF_CHANNELS_DOT_LOOP2_16 MCF_CHANNELS_DOT_LOOP_OF(MCF_DOT2_GROUP16_FIXED, "28")

/* The byte offset into a dot loop of `group_bytes` groups that runs `groups` groups (Duff's device). */
static uint32_t mcf_dsp_loop_entry(int32_t groups, int32_t group_bytes) {
    const int32_t pass = MCF_DSP_PASS_GROUPS;
    return (uint32_t)((groups == 0 ? pass : (pass - (groups & (pass - 1))) & (pass - 1)) * group_bytes);
}

/* With a channel's output pointer (r5), 3 * token_stride (r6), mult (r8), down (r9), add (r10) and
 * token_stride (lr) set: requantize r0-r1 (STORE2) or r0-r3 and store them token_stride apart from r5. */
#define MCF_CHANNELS_STORE2      \
    "smmla r11, r0, r8, r10\n\t" \
    "asr r11, r11, r9\n\t"       \
    "ssat r11, #8, r11\n\t"      \
    "strb r11, [r5]\n\t"         \
    "smmla r11, r1, r8, r10\n\t" \
    "asr r11, r11, r9\n\t"       \
    "ssat r11, #8, r11\n\t"      \
    "strb r11, [r5, lr]\n\t"
#define MCF_CHANNELS_STORE4          \
    MCF_CHANNELS_STORE2              \
    "smmla r11, r2, r8, r10\n\t"     \
    "asr r11, r11, r9\n\t"           \
    "ssat r11, #8, r11\n\t"          \
    "strb r11, [r5, lr, lsl #1]\n\t" \
    "smmla r11, r3, r8, r10\n\t"     \
    "asr r11, r11, r9\n\t"           \
    "ssat r11, #8, r11\n\t"          \
    "strb r11, [r5, r6]\n\t"

/* After a channel's stores: count it (n in r4 reaches 0 after the last), move out (r5) on by `step` (an
 * operand string), keep both in the state and leave after the last; label 4 is where each loop sets up the
 * next channel's accumulators (ADDS sets the flags, nothing before BEQ changes them). */
#define MCF_CHANNELS_NEXT(step) \
    "adds r4, r4, #1\n\t" step  \
    "stmia r7, {r4, r5}\n\t"    \
    "beq 5f\n"                  \
    "4:\n\t"

/* Into the dot loop at the entry (state word 9) with px (r6) and its end (lr); label 5 restores r7. */
#define MCF_CHANNELS_LEAVE \
    "ldr pc, [r7, #36]\n"  \
    "5:\n\t"               \
    "ldr r7, [sp], #8" MCF_CHANNELS_OPERANDS

/* The registers of the channel loops: the state (r6) and weight (r12) pointers as operands, every other
 * register the assembly uses as a clobber (so GCC sets none of them up). */
#define MCF_CHANNELS_REGISTERS(state, weight) \
    register void *r6 __asm("r6") = (state);  \
    register const int8_t *r12 __asm("r12") = (weight)
#define MCF_CHANNELS_OPERANDS \
    : "+r"(r6), "+r"(r12)     \
    :                         \
    : "r0", "r1", "r2", "r3", "r4", "r5", "r8", "r9", "r10", "r11", "lr", "cc", "memory"

/* Per channel: mult[n], shift[n] (down = -shift - 1 and the rounding term computed here) and the bias, which
 * the channel's first group (`first`, peeled off the loop) takes as every token's start; `store` the tokens'
 * outputs. 32 instructions per channel besides the 13 per group (11 with widened weights: `dot_loop`); in_ch
 * a multiple of four, or (`tail`) any in_ch >= 4 for 2 more per channel and 6 per leftover input. The
 * two-token loops: 24 per channel besides 9 (7) per group. */
#define MCF_CHANNELS_OF(first, dot_loop, tail_enter, tail, store) \
    MCF_CHANNELS_ENTER tail_enter                                                                     \
        "ldr r4, [r7]\n\t"      /* n */                                                               \
        "ldr r9, [r7, #32]\n\t" /* bias */                                                            \
        "b 4f\n\t" dot_loop tail                                                                      \
        "ldmia r7, {r4, r5, r6, r8, r9, r10, lr}\n\t" /* n, out, 3 * ts, mult, shift, zp2, ts */       \
        "ldr r8, [r8, r4, lsl #2]\n\t"                                                                \
        "ldrsb r9, [r9, r4]\n\t"                                                                      \
        "mvn r9, r9\n\t" /* down = -shift - 1 */                                                      \
        "sub r11, r9, #1\n\t"                                                                         \
        "lsl r10, r10, r11\n\t" /* add = 2^(down - 1) + out_zp * 2^down */                            \
        store "ldrd r8, r9, [r7, #28]\n\t" /* channel_stride, bias */                                 \
        MCF_CHANNELS_NEXT("add.w r5, r5, r8\n\t")                                                     \
        "ldr r3, [r9, r4, lsl #2]\n\t"                                                                \
        "ldrd r6, lr, [r7, #40]\n\t" first MCF_CHANNELS_LEAVE
#define MCF_CHANNELS4(load, dot_loop, tail_enter, tail) \
    MCF_CHANNELS_OF(load MCF_DOT4_MACS_FIRST, dot_loop, tail_enter, tail, MCF_CHANNELS_STORE4)

static void
    __attribute__((noinline, unused)) mcf_dsp_channels4(mcf_dsp_channel_loop *state, const int8_t *weight) {
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

/* One requantization for all channels, a start per token (`starts`), and the length % 4 leftover values
 * (stored after the groups value by value, as mcf_dsp_widen4 does) after the groups: one LDRSB, one LDM and
 * four SMLAxB each, entered part-way like the groups. 27 instructions per channel besides the groups, and 6
 * per leftover. */
#define MCF_CHANNELS_SHARED_OF(dot_loop, tail, store, starts)                                   \
    MCF_CHANNELS_ENTER MCF_CHANNELS_TAIL_ENTER                                                  \
        "b 4f\n\t" dot_loop tail                                                                \
        "ldmia r7, {r4, r5, r6, r8, r9, r10, lr}\n\t" /* n, out, 3 * ts, mult, down, add, ts */ \
        store MCF_CHANNELS_NEXT("add.w r5, r5, #1\n\t") starts                                  \
        "ldrd r6, lr, [r7, #40]\n\t" MCF_CHANNELS_LEAVE
#define MCF_SHARED_STARTS4 "ldrd r0, r1, [r7, #52]\n\tldrd r2, r3, [r7, #60]\n\t"
#define MCF_SHARED_STARTS2 "ldrd r0, r1, [r7, #52]\n\t"
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
