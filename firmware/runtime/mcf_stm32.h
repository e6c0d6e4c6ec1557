/* What the STM32 board support packages share (header only): the USART of the F7 and L4 families (the same
 * register block at each instance's base: RM0385 and RM0394, "USART registers"), and start-up and exit on a
 * real part (the DWT cycle counter, a 1 kHz SysTick, a system reset on exit, a halt that waits for a
 * debugger). */
#ifndef MCF_STM32_H
#define MCF_STM32_H

#include <stdint.h>

#include "mcf_cortexm.h"
#include "mcf_runtime.h"

#define MCF_USART_CR1(base) MCF_REG32((base) + 0x00u)
#define MCF_USART_BRR(base) MCF_REG32((base) + 0x0Cu)
#define MCF_USART_ISR(base) MCF_REG32((base) + 0x1Cu)
#define MCF_USART_ICR(base) MCF_REG32((base) + 0x20u)
#define MCF_USART_RDR(base) MCF_REG32((base) + 0x24u)
#define MCF_USART_TDR(base) MCF_REG32((base) + 0x28u)
#define MCF_USART_CR1_UE (1u << 0)
#define MCF_USART_CR1_RE (1u << 2)
#define MCF_USART_CR1_TE (1u << 3)
#define MCF_USART_CR1_RXNEIE (1u << 5)
#define MCF_USART_ISR_FE (1u << 1)
#define MCF_USART_ISR_NF (1u << 2)
#define MCF_USART_ISR_ORE (1u << 3)
#define MCF_USART_ISR_RXNE (1u << 5)
#define MCF_USART_ISR_TC (1u << 6)
#define MCF_USART_ISR_TXE (1u << 7)
#define MCF_USART_ICR_CLEAR_ERRORS ((1u << 1) | (1u << 2) | (1u << 3)) /* FECF, NCF, ORECF */

/* 8N1 at `baud` from a `clock_hz` kernel clock (oversampling by 16), receive interrupt `irq` enabled. The
 * pins and the USART's clock are the BSP's to set up first. */
static inline void mcf_stm32_usart_start(uint32_t base, uint32_t clock_hz, uint32_t baud, uint32_t irq) {
    MCF_USART_CR1(base) = 0;
    MCF_USART_BRR(base) = (clock_hz + baud / 2u) / baud;
    MCF_USART_CR1(base) = MCF_USART_CR1_UE | MCF_USART_CR1_TE | MCF_USART_CR1_RE | MCF_USART_CR1_RXNEIE;
    mcf_nvic_enable(irq, 0x40u);
}

/* The receive interrupt: the byte to the runtime; an overrun or framing error cleared (it would otherwise
 * keep the interrupt asserted; the protocol's CRCs and resends recover the data). */
static inline void mcf_stm32_usart_receive(uint32_t base) {
    const uint32_t status = MCF_USART_ISR(base);
    if (status & MCF_USART_ISR_RXNE) {
        mcf_rx_push((uint8_t)MCF_USART_RDR(base));
    }
    if (status & (MCF_USART_ISR_ORE | MCF_USART_ISR_FE | MCF_USART_ISR_NF)) {
        MCF_USART_ICR(base) = MCF_USART_ICR_CLEAR_ERRORS;
    }
}

static inline void mcf_stm32_usart_write(uint32_t base, const uint8_t *data, uint32_t length) {
    for (uint32_t i = 0; i < length; i++) {
        while (!(MCF_USART_ISR(base) & MCF_USART_ISR_TXE)) {
        }
        MCF_USART_TDR(base) = data[i];
    }
}

static inline void mcf_stm32_usart_flush(uint32_t base) {
    while (!(MCF_USART_ISR(base) & MCF_USART_ISR_TC)) {
    }
}

/* The DWT cycle counter from 0 and a 1 kHz SysTick at the board's clock. The Cortex-M7's DWT is locked after
 * reset (`unlock`); the Cortex-M4's has no lock. */
static inline void mcf_stm32_timers_start(int unlock) {
    MCF_DEMCR |= MCF_DEMCR_TRCENA;
    if (unlock) {
        MCF_DWT_LAR = MCF_DWT_LAR_KEY;
    }
    MCF_DWT_CYCCNT = 0;
    MCF_DWT_CTRL |= MCF_DWT_CTRL_CYCCNTENA;
    MCF_SYST_RVR = MCF_BOARD_CLOCK_HZ / 1000u - 1u;
    MCF_SYST_CVR = 0;
    MCF_SYST_CSR = MCF_SYST_CSR_ENABLE | MCF_SYST_CSR_TICKINT | MCF_SYST_CSR_CLKSOURCE;
}

/* Exit on a real part: the last bytes out, then a system reset (the firmware starts again and says HELLO). */
static inline __attribute__((noreturn)) void mcf_stm32_reset(uint32_t usart_base) {
    mcf_stm32_usart_flush(usart_base);
    mcf_dsb();
    MCF_SCB_AIRCR = MCF_AIRCR_VECTKEY | (MCF_SCB_AIRCR & (0x7u << 8)) | MCF_AIRCR_SYSRESETREQ;
    mcf_dsb();
    for (;;) {
    }
}

/* Halt after a fault: interrupts off, stay put for a debugger (the fault report has gone out on the serial
 * port). */
static inline __attribute__((noreturn)) void mcf_stm32_halt(void) {
    mcf_irq_disable();
    for (;;) {
    }
}

#endif /* MCF_STM32_H */
