/* What the runtime needs from a board support package (firmware/bsp/<board>/): clocks, a serial port that
 * receives by interrupt into the runtime's ring (mcf_rx_push), a millisecond tick, a performance counter and
 * a way to stop. One .c file per board implements all of it; its mcf_bsp_config.h gives the counter's unit.
 */
#ifndef MCF_BSP_H
#define MCF_BSP_H

#include <stdint.h>

#include "mcf_bsp_config.h"

/* Counter kinds, reported in HELLO: what one unit of mcf_bsp_counter_ticks() * MCF_BSP_COUNTER_SCALE is. */
#define MCF_COUNTER_CYCLES 0u       /* core clock cycles (DWT CYCCNT) */
#define MCF_COUNTER_INSTRUCTIONS 1u /* executed instructions (QEMU -icount shift=0) */

#ifndef MCF_BSP_COUNTER_KIND
#error "mcf_bsp_config.h must define MCF_BSP_COUNTER_KIND and MCF_BSP_COUNTER_SCALE"
#endif

/* Called once from the reset handler after .data/.bss are set up: clocks, caches, UART (RX interrupt on),
 * the millisecond tick, the performance counter, memory protection. Interrupts are enabled on return. */
void mcf_bsp_init(void);

/* Milliseconds since mcf_bsp_init (wraps after 49 days). */
uint32_t mcf_bsp_millis(void);

/* Blocking transmit: returns when every byte is in the UART (polling, usable from fault handlers). */
void mcf_bsp_uart_write(const uint8_t *data, uint32_t length);

/* Returns when the last byte has left the transmitter. */
void mcf_bsp_uart_flush(void);

/* Free-running 32-bit performance counter; deltas (mod 2^32) times MCF_BSP_COUNTER_SCALE are in
 * MCF_BSP_COUNTER_KIND units. mcf_bsp_counter_start() returns the value to subtract; on QEMU it also restarts
 * the 25 MHz timer so that its phase is fixed and the counts repeat exactly (icount). */
uint32_t mcf_bsp_counter_ticks(void);
uint32_t mcf_bsp_counter_start(void);

/* Ends the session: semihosting exit on QEMU (the emulator's exit status is `code`), reset on a chip. */
void mcf_bsp_exit(uint32_t code) __attribute__((noreturn));

/* After a fault report: stop for good (QEMU: exit with `code`; chip: wait for the debugger). */
void mcf_bsp_halt(uint32_t code) __attribute__((noreturn));

#endif /* MCF_BSP_H */
