/* Per-op profile of the last inference: the generated mcf_model_run calls MCF_OP_DONE(i) after op i when the
 * firmware is built with MCF_PROFILE; each op's counter delta is kept for the PROFILE message. */
#ifndef MCF_PROFILE_H
#define MCF_PROFILE_H

#include <stdint.h>

/* Starts a profile at counter value `start` (the value the inference's own count starts from). */
void mcf_profile_begin(uint32_t start);

/* Continues the profile of the same inference from counter value `start` (streaming: the next row). */
void mcf_profile_resume(uint32_t start);

/* Records op `op_index` as finished now (adding to its count when it runs more than once). */
void mcf_profile_op_done(uint32_t op_index);

/* Counter ticks of op `op_index` in the last inference (0 for an index out of range). */
uint32_t mcf_profile_ticks(uint32_t op_index);

#define MCF_OP_DONE(index) mcf_profile_op_done(index)

#endif /* MCF_PROFILE_H */
