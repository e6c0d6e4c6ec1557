/* Internals shared by the runtime's files: linker symbols, the receive ring, stack painting, fault reporting.
 */
#ifndef MCF_RUNTIME_H
#define MCF_RUNTIME_H

#include <stdint.h>

/* Symbols of the linker script (firmware/linker/mcf_link.ld.j2): addresses only, never read as variables. */
extern uint32_t __flash_start__, __flash_end__, __flash_used_end__;
extern uint32_t __ram_start__, __ram_end__;
extern uint32_t __data_start__, __data_end__, __data_load__;
extern uint32_t __bss_start__, __bss_end__;
extern uint32_t __arena_start__, __arena_end__;
extern uint32_t __stack_limit__, __stack_top__;

#define MCF_ADDR(symbol) ((uint32_t)(uintptr_t)(&(symbol)))

#define MCF_STACK_PAINT 0xC0FFEE55u /* the word stack painting fills the unused stack with */

/* Receive ring: the BSP's UART interrupt pushes, the protocol pops. */
#define MCF_RX_RING_BYTES 256u
void mcf_rx_push(uint8_t byte);
/* Next received byte, or -1 when none arrived within timeout_ms (sleeps in WFI while waiting). */
int32_t mcf_rx_getc(uint32_t timeout_ms);
/* Bytes dropped because the ring was full. */
uint32_t mcf_rx_overruns(void);

/* Stack painting (done by the reset handler) and the high-water mark: bytes of the stack ever used. */
void mcf_stack_paint(void);
uint32_t mcf_stack_high_water(void);

/* The application entry called by the reset handler. */
int main(void);

#endif /* MCF_RUNTIME_H */
