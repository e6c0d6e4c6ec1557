/* Board support for QEMU's mps2-an500 machine (Cortex-M7): CMSDK UART0 (receive by interrupt), SysTick
 * millisecond tick, CMSDK TIMER0 as the instruction counter (-icount shift=0), an MPU that makes the flash
 * read-only and everything outside the linked RAM budget no-access, semihosting exit. */
#include <stdint.h>

#include "mcf_bsp.h"
#include "mcf_cortexm.h"
#include "mcf_runtime.h"

/* CMSDK APB UART0 (Arm DDI 0479, CMSDK technical reference). */
#define UART0_BASE 0x40004000u
#define UART_DATA MCF_REG32(UART0_BASE + 0x00u)
#define UART_STATE MCF_REG32(UART0_BASE + 0x04u)
#define UART_CTRL MCF_REG32(UART0_BASE + 0x08u)
#define UART_INTCLEAR MCF_REG32(UART0_BASE + 0x0Cu)
#define UART_BAUDDIV MCF_REG32(UART0_BASE + 0x10u)
#define UART_STATE_TXFULL (1u << 0)
#define UART_STATE_RXFULL (1u << 1)
#define UART_CTRL_TXEN (1u << 0)
#define UART_CTRL_RXEN (1u << 1)
#define UART_CTRL_RXINTEN (1u << 3)
#define UART_INT_RX (1u << 1)
#define UART0_RX_IRQ 0u
#define UART0_TX_IRQ 1u

/* CMSDK APB TIMER0: a 32-bit down counter at SYSCLK. */
#define TIMER0_BASE 0x40000000u
#define TIMER_CTRL MCF_REG32(TIMER0_BASE + 0x00u)
#define TIMER_VALUE MCF_REG32(TIMER0_BASE + 0x04u)
#define TIMER_RELOAD MCF_REG32(TIMER0_BASE + 0x08u)
#define TIMER_CTRL_ENABLE (1u << 0)

#define NUM_IRQS 64u /* the AN500 image wires interrupts 0..47 */

/* Semihosting (Arm IHI 0038): SYS_EXIT_EXTENDED takes {reason, exit code}. */
#define SEMIHOSTING_SYS_EXIT_EXTENDED 0x20u
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

void SysTick_Handler(void);
void mcf_fault_entry(void);
static void uart0_rx_handler(void);

static volatile uint32_t milliseconds;

#define F mcf_fault_entry
#define F8 F, F, F, F, F, F, F, F
__attribute__((section(".isr_vector_irq"), used)) static void (*const irq_vectors[NUM_IRQS])(void) = {
    uart0_rx_handler, F, F, F, F, F, F, F, F8, F8, F8, F8, F8, F8, F8,
};
#undef F8
#undef F

void SysTick_Handler(void) {
    milliseconds++;
}

static void uart0_rx_handler(void) {
    UART_INTCLEAR = UART_INT_RX; /* clear first: a byte arriving after the loop raises the interrupt again */
    while (UART_STATE & UART_STATE_RXFULL) {
        mcf_rx_push((uint8_t)UART_DATA);
    }
}

static uint32_t ceil_log2(uint32_t value) {
    return value <= 1u ? 0u : 32u - (uint32_t)__builtin_clz(value - 1u);
}

static uint32_t floor_log2(uint32_t value) {
    return 31u - (uint32_t)__builtin_clz(value);
}

/* Covers [base, base + length) with as few MPU regions as it takes, using subregions for lengths that are not
 * powers of two (320 KB at 0x20000000 is one 512 KB region with 5 of its 8 subregions). Length: multiple
 * of 32. */
static uint32_t mpu_cover(uint32_t region, uint32_t base, uint32_t length, uint32_t attributes) {
    while (length >= 32u && region < 8u) {
        const uint32_t align_log2 = base == 0u ? 31u : (uint32_t)__builtin_ctz(base);
        uint32_t log2 = ceil_log2(length);
        log2 = log2 > align_log2 ? align_log2 : log2;
        log2 = log2 > 31u ? 31u : log2;
        uint32_t srd = 0;
        uint32_t covered;
        if (log2 >= 8u) {
            uint32_t sub = (1u << log2) / 8u;
            uint32_t count = length / sub;
            if (count == 0u) {
                log2 = floor_log2(length);
                sub = (1u << log2) / 8u;
                count = 8u;
            }
            count = count > 8u ? 8u : count;
            srd = (0xFFu << count) & 0xFFu;
            covered = count * sub;
        } else {
            log2 = (1u << log2) > length ? floor_log2(length) : log2;
            covered = 1u << log2;
        }
        MCF_MPU_RNR = region;
        MCF_MPU_RBAR = base;
        MCF_MPU_RASR = attributes | MCF_MPU_RASR_SRD(srd) | MCF_MPU_RASR_SIZE(log2) | MCF_MPU_RASR_ENABLE;
        base += covered;
        length -= covered;
        region++;
    }
    return region;
}

/* Region 0 forbids the whole code and SRAM space (0 to 1 GB) where the emulator has RAM the chip does not;
 * higher regions (which take priority) allow the linked flash read-only and the RAM budget read-write.
 * Peripherals and the system space keep the default map (PRIVDEFENA). The MPU is off inside HardFault
 * (HFNMIENA = 0). */
static void mpu_init(void) {
    MCF_MPU_CTRL = 0;
    MCF_MPU_RNR = 0;
    MCF_MPU_RBAR = 0;
    MCF_MPU_RASR = MCF_MPU_RASR_XN | MCF_MPU_RASR_AP_NONE | MCF_MPU_RASR_SIZE(30u) | MCF_MPU_RASR_ENABLE;
    const uint32_t normal = MCF_MPU_RASR_TEX(1u); /* normal memory, non-cacheable: unaligned access allowed */
    uint32_t region =
        mpu_cover(1u, MCF_ADDR(__flash_start__), MCF_ADDR(__flash_end__) - MCF_ADDR(__flash_start__),
                  normal | MCF_MPU_RASR_AP_RO);
    region = mpu_cover(region, MCF_ADDR(__ram_start__), MCF_ADDR(__ram_end__) - MCF_ADDR(__ram_start__),
                       normal | MCF_MPU_RASR_AP_RW | MCF_MPU_RASR_XN);
    while (region < 8u) {
        MCF_MPU_RNR = region++;
        MCF_MPU_RASR = 0;
    }
    MCF_MPU_CTRL = MCF_MPU_CTRL_ENABLE | MCF_MPU_CTRL_PRIVDEFENA;
    mcf_dsb();
    mcf_isb();
}

void mcf_bsp_init(void) {
    MCF_SCB_VTOR = MCF_ADDR(__flash_start__);
    mpu_init();
    TIMER_CTRL = 0;
    TIMER_RELOAD = 0xFFFFFFFFu;
    TIMER_VALUE = 0xFFFFFFFFu;
    TIMER_CTRL = TIMER_CTRL_ENABLE;
    MCF_SYST_RVR = MCF_BOARD_CLOCK_HZ / 1000u - 1u;
    MCF_SYST_CVR = 0;
    MCF_SYST_CSR = MCF_SYST_CSR_ENABLE | MCF_SYST_CSR_TICKINT | MCF_SYST_CSR_CLKSOURCE;
    UART_BAUDDIV = MCF_BOARD_CLOCK_HZ / 115200u; /* ignored by QEMU, but it must be at least 16 */
    UART_CTRL = UART_CTRL_TXEN | UART_CTRL_RXEN | UART_CTRL_RXINTEN;
    mcf_nvic_enable(UART0_RX_IRQ, 0x40u);
    mcf_irq_enable();
}

uint32_t mcf_bsp_millis(void) {
    return milliseconds;
}

void mcf_bsp_uart_write(const uint8_t *data, uint32_t length) {
    for (uint32_t i = 0; i < length; i++) {
        while (UART_STATE & UART_STATE_TXFULL) {
        }
        UART_DATA = data[i];
    }
}

void mcf_bsp_uart_flush(void) {
    while (UART_STATE & UART_STATE_TXFULL) {
    }
}

uint32_t mcf_bsp_counter_ticks(void) {
    return ~TIMER_VALUE;
}

uint32_t mcf_bsp_counter_start(void) {
    TIMER_VALUE = 0xFFFFFFFFu; /* a write restarts the tick phase: the next tick is 40 instructions away */
    return ~TIMER_VALUE;
}

void mcf_bsp_exit(uint32_t code) {
    const uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, code};
    register uint32_t r0 __asm("r0") = SEMIHOSTING_SYS_EXIT_EXTENDED;
    register const uint32_t *r1 __asm("r1") = block;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    for (;;) { /* only without semihosting: stay here */
        mcf_wfi();
    }
}

void mcf_bsp_halt(uint32_t code) {
    mcf_bsp_exit(code);
}
