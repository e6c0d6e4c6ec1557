/* Host harness for generated models: int8 images (HWC, MCF_MODEL_INPUT_BYTES each) on stdin,
 * int8 logits (MCF_MODEL_NUM_CLASSES each) on stdout. Used to prove the C equals the numpy reference. */
#include <stdio.h>

#include "mcf_model.h"

int main(void) {
    int8_t logits[MCF_MODEL_NUM_CLASSES];
#if MCF_MODEL_STREAM_ROWS
    /* A streaming build's input holds one strip: the whole image waits here and mcf_model_run feeds it. */
    static int8_t image_buffer[MCF_MODEL_INPUT_BYTES];
    int8_t *image = image_buffer;
#else
    int8_t *image = mcf_model_input(); /* zero copy, as the firmware does */
#endif
    long count = 0;
    while (fread(image, 1, MCF_MODEL_INPUT_BYTES, stdin) == MCF_MODEL_INPUT_BYTES) {
        mcf_status status = mcf_model_run(image, logits);
        if (status != MCF_OK) {
            fprintf(stderr, "mcf_model_run failed with status %d on image %ld\n", (int)status, count);
            return 2;
        }
        if (fwrite(logits, 1, sizeof logits, stdout) != sizeof logits) {
            return 3;
        }
        count++;
    }
    return 0;
}
