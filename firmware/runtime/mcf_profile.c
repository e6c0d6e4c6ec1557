/* Per-op counter deltas of the last inference (see mcf_profile.h). */
#include "mcf_profile.h"

#include "mcf_bsp.h"
#include "mcf_model.h"

static uint32_t op_ticks[MCF_MODEL_NUM_OPS];
static uint32_t last_mark;

void mcf_profile_begin(uint32_t start) {
    for (uint32_t i = 0; i < MCF_MODEL_NUM_OPS; i++) {
        op_ticks[i] = 0;
    }
    last_mark = start;
}

void mcf_profile_resume(uint32_t start) {
    last_mark = start;
}

void mcf_profile_op_done(uint32_t op_index) {
    const uint32_t now = mcf_bsp_counter_ticks();
    if (op_index < MCF_MODEL_NUM_OPS) {
        op_ticks[op_index] += now - last_mark;
    }
    last_mark = now;
}

uint32_t mcf_profile_ticks(uint32_t op_index) {
    return op_index < MCF_MODEL_NUM_OPS ? op_ticks[op_index] : 0u;
}
