/* Board support for the Nucleo-32 boards of the STM32L4 (NUCLEO-L432KC, NUCLEO-L412KB; RM0394 reference
 * manual, UM1956 board manual). Both parts have the same clock tree, USART2, pins and interrupt numbers; only
 * the memory sizes differ, and those come from the linker script (the board files). MSI 4 MHz (its reset
 * range) -> PLL (M 1, N 40, R 2) = 80 MHz in voltage range 1 (the reset default), 4 flash wait states +
 * prefetch + the flash instruction and data caches; AHB, APB1 and APB2 at 80 MHz; USART2 at 115200 8N1 on PA2
 * (TX, AF7) / PA15 (RX, AF3), the ST-LINK virtual COM port, receiving by interrupt; SysTick at 1 kHz; DWT
 * CYCCNT as the cycle counter; the MPU guard of the emulated stand-in (flash read-only, the linked RAM budget
 * read-write, the rest of the code and SRAM space no-access), so that a stray access faults the same way on
 * the part as on QEMU. */
#include <stdint.h>

#include "mcf_bsp.h"
#include "mcf_cortexm.h"
#include "mcf_runtime.h"
#include "mcf_stm32.h"

/* RCC (RM0394, RCC registers). */
#define RCC_BASE 0x40021000u
#define RCC_CR MCF_REG32(RCC_BASE + 0x00u)
#define RCC_CFGR MCF_REG32(RCC_BASE + 0x08u)
#define RCC_PLLCFGR MCF_REG32(RCC_BASE + 0x0Cu)
#define RCC_AHB2ENR MCF_REG32(RCC_BASE + 0x4Cu)
#define RCC_APB1ENR1 MCF_REG32(RCC_BASE + 0x58u)
#define RCC_CCIPR MCF_REG32(RCC_BASE + 0x88u)
#define RCC_CR_MSIRDY (1u << 1)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)
#define RCC_CFGR_SW_MASK 0x3u
#define RCC_CFGR_SW_PLL 0x3u
#define RCC_CFGR_SWS_MASK (0x3u << 2)
#define RCC_CFGR_SWS_PLL (0x3u << 2)
#define RCC_CFGR_PRESCALER_MASK ((0xFu << 4) | (0x7u << 8) | (0x7u << 11)) /* HPRE, PPRE1, PPRE2: 0 = /1 */
#define RCC_PLLCFGR_SRC_MSI 0x1u
#define RCC_PLLCFGR_PLLREN (1u << 24)
#define RCC_AHB2ENR_GPIOAEN (1u << 0)
#define RCC_APB1ENR1_USART2EN (1u << 17)
#define RCC_CCIPR_USART2SEL_MASK (0x3u << 2) /* 00: PCLK1 */

/* The PLL's input must be 4..16 MHz and its VCO 64..344 MHz; PLLCLK (the R output) at most 80 MHz. */
#define PLL_M 1u  /* 4 MHz MSI / 1 = 4 MHz VCO input */
#define PLL_N 40u /* 160 MHz VCO */
#define PLL_R 2u  /* 80 MHz SYSCLK */
#define APB1_HZ MCF_BOARD_CLOCK_HZ

/* Flash interface (RM0394, FLASH_ACR): 4 wait states for 64 < HCLK <= 80 MHz in voltage range 1. */
#define FLASH_ACR MCF_REG32(0x40022000u)
#define FLASH_ACR_LATENCY_MASK 0x7u
#define FLASH_ACR_LATENCY_4WS 4u
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ICEN (1u << 9)
#define FLASH_ACR_DCEN (1u << 10)

/* GPIO (RM0394, GPIO registers). */
#define GPIOA_BASE 0x48000000u
#define GPIO_MODER(base) MCF_REG32((base) + 0x00u)
#define GPIO_OSPEEDR(base) MCF_REG32((base) + 0x08u)
#define GPIO_PUPDR(base) MCF_REG32((base) + 0x0Cu)
#define GPIO_AFRL(base) MCF_REG32((base) + 0x20u)
#define GPIO_AFRH(base) MCF_REG32((base) + 0x24u)
#define GPIO_MODE_AF 0x2u
#define GPIO_SPEED_HIGH 0x2u
#define GPIO_PULL_UP 0x1u
#define GPIO_AF7_USART2_TX 7u /* PA2 */
#define GPIO_AF3_USART2_RX 3u /* PA15 */

/* USART2 (RM0394, USART registers): the same register layout as the STM32F7's USARTs. */
#define USART2_BASE 0x40004400u
#define USART_BAUD 115200u
#define USART2_IRQ 38u

#define NUM_IRQS 83u /* STM32L41x/L43x: interrupts 0..82 (CRS is the last) */

void SysTick_Handler(void);
void mcf_fault_entry(void);
static void usart2_handler(void);

static volatile uint32_t milliseconds;

#define F mcf_fault_entry
#define F8 F, F, F, F, F, F, F, F
__attribute__((section(".isr_vector_irq"), used)) static void (*const irq_vectors[NUM_IRQS])(void) = {
    /* 0..31 */
    F8, F8, F8, F8,
    /* 32..39: USART2 is 38 */
    F, F, F, F, F, F, usart2_handler, F,
    /* 40..82 */
    F8, F8, F8, F8, F8, F, F, F};
#undef F8
#undef F

void SysTick_Handler(void) {
    milliseconds++;
}

static void usart2_handler(void) {
    mcf_stm32_usart_receive(USART2_BASE);
}

/* Wait states go up before the clock does (RM0394, read access latency); meanwhile the core runs on MSI. */
static void clock_init(void) {
    FLASH_ACR = (FLASH_ACR & ~FLASH_ACR_LATENCY_MASK) | FLASH_ACR_LATENCY_4WS | FLASH_ACR_PRFTEN |
                FLASH_ACR_ICEN | FLASH_ACR_DCEN;
    while ((FLASH_ACR & FLASH_ACR_LATENCY_MASK) != FLASH_ACR_LATENCY_4WS) {
    }
    while (!(RCC_CR & RCC_CR_MSIRDY)) {
    }
    /* The PLL is off after reset, so it may be configured; only its R output (SYSCLK) is enabled. */
    RCC_PLLCFGR = RCC_PLLCFGR_SRC_MSI | ((PLL_M - 1u) << 4) | (PLL_N << 8) | RCC_PLLCFGR_PLLREN |
                  (((PLL_R / 2u) - 1u) << 25);
    RCC_CR |= RCC_CR_PLLON;
    while (!(RCC_CR & RCC_CR_PLLRDY)) {
    }
    RCC_CFGR &= ~RCC_CFGR_PRESCALER_MASK;
    RCC_CFGR = (RCC_CFGR & ~RCC_CFGR_SW_MASK) | RCC_CFGR_SW_PLL;
    while ((RCC_CFGR & RCC_CFGR_SWS_MASK) != RCC_CFGR_SWS_PLL) {
    }
}

static void usart2_init(void) {
    RCC_AHB2ENR |= RCC_AHB2ENR_GPIOAEN;
    RCC_APB1ENR1 |= RCC_APB1ENR1_USART2EN;
    (void)RCC_APB1ENR1;                     /* read back: the enable takes effect before USART2 is touched */
    RCC_CCIPR &= ~RCC_CCIPR_USART2SEL_MASK; /* USART2 clocked by PCLK1 (80 MHz) */

    /* PA2 = USART2_TX (AF7), push-pull, high speed. */
    GPIO_MODER(GPIOA_BASE) = (GPIO_MODER(GPIOA_BASE) & ~(0x3u << 4)) | (GPIO_MODE_AF << 4);
    GPIO_OSPEEDR(GPIOA_BASE) = (GPIO_OSPEEDR(GPIOA_BASE) & ~(0x3u << 4)) | (GPIO_SPEED_HIGH << 4);
    GPIO_AFRL(GPIOA_BASE) = (GPIO_AFRL(GPIOA_BASE) & ~(0xFu << 8)) | (GPIO_AF7_USART2_TX << 8);
    /* PA15 = USART2_RX (AF3), pull-up. It leaves JTDI (AF0, JTAG only): SWD on PA13/PA14 is untouched. */
    GPIO_MODER(GPIOA_BASE) = (GPIO_MODER(GPIOA_BASE) & ~(0x3u << 30)) | (GPIO_MODE_AF << 30);
    GPIO_PUPDR(GPIOA_BASE) = (GPIO_PUPDR(GPIOA_BASE) & ~(0x3u << 30)) | (GPIO_PULL_UP << 30);
    GPIO_AFRH(GPIOA_BASE) = (GPIO_AFRH(GPIOA_BASE) & ~(0xFu << 28)) | (GPIO_AF3_USART2_RX << 28);

    /* oversampling by 16: 694 -> 115274 baud (+0.06%) */
    mcf_stm32_usart_start(USART2_BASE, APB1_HZ, USART_BAUD, USART2_IRQ);
}

void mcf_bsp_init(void) {
    MCF_SCB_VTOR = MCF_ADDR(__flash_start__);
    clock_init();
    mcf_mpu_guard();
    mcf_stm32_timers_start(0); /* unlike the Cortex-M7's, the Cortex-M4's DWT has no software lock */
    usart2_init();
    mcf_irq_enable();
}

uint32_t mcf_bsp_millis(void) {
    return milliseconds;
}

void mcf_bsp_uart_write(const uint8_t *data, uint32_t length) {
    mcf_stm32_usart_write(USART2_BASE, data, length);
}

void mcf_bsp_uart_flush(void) {
    mcf_stm32_usart_flush(USART2_BASE);
}

uint32_t mcf_bsp_counter_ticks(void) {
    return MCF_DWT_CYCCNT;
}

uint32_t mcf_bsp_counter_start(void) {
    return MCF_DWT_CYCCNT;
}

void mcf_bsp_exit(uint32_t code) {
    (void)code;
    mcf_stm32_reset(USART2_BASE);
}

void mcf_bsp_halt(uint32_t code) {
    (void)code;
    mcf_stm32_halt();
}
