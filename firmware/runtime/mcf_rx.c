/* The receive ring between the UART interrupt (producer) and the protocol (consumer), and the sleeping wait.
 */
#include <stdint.h>

#include "mcf_bsp.h"
#include "mcf_cortexm.h"
#include "mcf_runtime.h"

_Static_assert((MCF_RX_RING_BYTES & (MCF_RX_RING_BYTES - 1u)) == 0, "the ring size must be a power of two");

static volatile uint8_t ring[MCF_RX_RING_BYTES];
static volatile uint32_t ring_head; /* written by the interrupt only */
static volatile uint32_t ring_tail; /* written by the consumer only */
static volatile uint32_t overruns;

void mcf_rx_push(uint8_t byte) {
    const uint32_t head = ring_head;
    if (head - ring_tail >= MCF_RX_RING_BYTES) {
        overruns++;
        return;
    }
    ring[head & (MCF_RX_RING_BYTES - 1u)] = byte;
    ring_head = head + 1u;
}

uint32_t mcf_rx_overruns(void) {
    return overruns;
}

int32_t mcf_rx_getc(uint32_t timeout_ms) {
    const uint32_t start = mcf_bsp_millis();
    for (;;) {
        const uint32_t tail = ring_tail;
        if (ring_head != tail) {
            const uint8_t byte = ring[tail & (MCF_RX_RING_BYTES - 1u)];
            ring_tail = tail + 1u;
            return byte;
        }
        if (timeout_ms != 0xFFFFFFFFu && mcf_bsp_millis() - start >= timeout_ms) {
            return -1;
        }
        /* Sleep until the next interrupt (a byte or the millisecond tick). With interrupts masked, a byte
         * that arrives between the check and the WFI still wakes it: nothing is missed. */
        mcf_irq_disable();
        if (ring_head == ring_tail) {
            mcf_wfi();
        }
        mcf_irq_enable();
    }
}
