/* The assembly channel loops of the DSP token blocks (dsp/mcf_dsp_block.c, their one user; not part of the
 * public API): the states they load, at the offsets their instructions use, and the inline-assembly pieces
 * they are built from. */
#ifndef MCF_DSP_CHANNELS_H
#define MCF_DSP_CHANNELS_H

#include <stddef.h>

#include "mcf_dsp_block.h"

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
#endif /* MCF_DSP_ASM */

#endif /* MCF_DSP_CHANNELS_H */
