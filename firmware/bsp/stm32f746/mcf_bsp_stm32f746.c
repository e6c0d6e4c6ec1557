/* Board support for the STM32F746G-DISCO (RM0385 reference manual, UM1907 board manual):
 * HSE 25 MHz -> PLL (M 25, N 432, P 2) = 216 MHz with over-drive, 7 flash wait states + ART + prefetch, L1
 * I/D caches on, AHB 216 MHz, APB1 54 MHz, APB2 108 MHz; USART1 at 115200 8N1 on PA9 (TX) / PB7 (RX), the
 * ST-LINK virtual COM port, receiving by interrupt; SysTick at 1 kHz; DWT CYCCNT as the cycle counter. */
#include <stdint.h>

#include "mcf_bsp.h"
#include "mcf_cortexm.h"
#include "mcf_runtime.h"
#include "mcf_stm32.h"

/* RCC (RM0385 section 5.3). */
#define RCC_BASE 0x40023800u
#define RCC_CR MCF_REG32(RCC_BASE + 0x00u)
#define RCC_PLLCFGR MCF_REG32(RCC_BASE + 0x04u)
#define RCC_CFGR MCF_REG32(RCC_BASE + 0x08u)
#define RCC_AHB1ENR MCF_REG32(RCC_BASE + 0x30u)
#define RCC_APB1ENR MCF_REG32(RCC_BASE + 0x40u)
#define RCC_APB2ENR MCF_REG32(RCC_BASE + 0x44u)
#define RCC_DCKCFGR2 MCF_REG32(RCC_BASE + 0x90u)
#define RCC_CR_HSEON (1u << 16)
#define RCC_CR_HSERDY (1u << 17)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)
#define RCC_PLLCFGR_SRC_HSE (1u << 22)
#define RCC_CFGR_SW_MASK 0x3u
#define RCC_CFGR_SW_PLL 0x2u
#define RCC_CFGR_SWS_MASK (0x3u << 2)
#define RCC_CFGR_SWS_PLL (0x2u << 2)
#define RCC_CFGR_HPRE_DIV1 (0x0u << 4)
#define RCC_CFGR_PPRE1_DIV4 (0x5u << 10)
#define RCC_CFGR_PPRE2_DIV2 (0x4u << 13)
#define RCC_CFGR_PRESCALER_MASK ((0xFu << 4) | (0x7u << 10) | (0x7u << 13))
#define RCC_AHB1ENR_GPIOAEN (1u << 0)
#define RCC_AHB1ENR_GPIOBEN (1u << 1)
#define RCC_APB1ENR_PWREN (1u << 28)
#define RCC_APB2ENR_USART1EN (1u << 4)
#define RCC_DCKCFGR2_USART1SEL_MASK 0x3u /* 00: PCLK2 */

#define PLL_M 25u  /* 25 MHz HSE / 25 = 1 MHz VCO input */
#define PLL_N 432u /* 432 MHz VCO */
#define PLL_P 2u   /* 216 MHz SYSCLK */
#define PLL_Q 9u   /* 48 MHz for USB/SDMMC */
#define APB2_HZ (MCF_BOARD_CLOCK_HZ / 2u)

/* PWR (RM0385 section 4.4): voltage scale 1 and over-drive are needed above 180 MHz. */
#define PWR_BASE 0x40007000u
#define PWR_CR1 MCF_REG32(PWR_BASE + 0x00u)
#define PWR_CSR1 MCF_REG32(PWR_BASE + 0x04u)
#define PWR_CR1_VOS_SCALE1 (0x3u << 14)
#define PWR_CR1_ODEN (1u << 16)
#define PWR_CR1_ODSWEN (1u << 17)
#define PWR_CSR1_ODRDY (1u << 16)
#define PWR_CSR1_ODSWRDY (1u << 17)

/* Flash interface (RM0385 section 3.7). */
#define FLASH_ACR MCF_REG32(0x40023C00u)
#define FLASH_ACR_LATENCY_MASK 0xFu
#define FLASH_ACR_LATENCY_7WS 7u /* 210 < HCLK <= 216 MHz at 2.7-3.6 V */
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ARTEN (1u << 9)

/* GPIO (RM0385 section 6.4). */
#define GPIOA_BASE 0x40020000u
#define GPIOB_BASE 0x40020400u
#define GPIO_MODER(base) MCF_REG32((base) + 0x00u)
#define GPIO_OSPEEDR(base) MCF_REG32((base) + 0x08u)
#define GPIO_PUPDR(base) MCF_REG32((base) + 0x0Cu)
#define GPIO_AFRL(base) MCF_REG32((base) + 0x20u)
#define GPIO_AFRH(base) MCF_REG32((base) + 0x24u)
#define GPIO_MODE_AF 0x2u
#define GPIO_SPEED_HIGH 0x2u
#define GPIO_PULL_UP 0x1u
#define GPIO_AF7_USART1 7u

/* USART1 (RM0385 section 31.8). */
#define USART1_BASE 0x40011000u
#define USART_BAUD 115200u
#define USART1_IRQ 37u

#define NUM_IRQS 98u /* STM32F74x/75x: interrupts 0..97 */

void SysTick_Handler(void);
void mcf_fault_entry(void);
static void usart1_handler(void);

static volatile uint32_t milliseconds;

#define F mcf_fault_entry
#define F8 F, F, F, F, F, F, F, F
__attribute__((section(".isr_vector_irq"), used)) static void (*const irq_vectors[NUM_IRQS])(void) = {
    /* 0..31 */
    F8, F8, F8, F8,
    /* 32..39: USART1 is 37 */
    F, F, F, F, F, usart1_handler, F, F,
    /* 40..97 */
    F8, F8, F8, F8, F8, F8, F8, F, F};
#undef F8
#undef F

void SysTick_Handler(void) {
    milliseconds++;
}

static void usart1_handler(void) {
    mcf_stm32_usart_receive(USART1_BASE);
}

static void clock_init(void) {
    RCC_APB1ENR |= RCC_APB1ENR_PWREN;
    (void)RCC_APB1ENR; /* read back: the enable takes effect before PWR is touched */
    PWR_CR1 = (PWR_CR1 & ~(0x3u << 14)) | PWR_CR1_VOS_SCALE1;

    RCC_CR |= RCC_CR_HSEON;
    while (!(RCC_CR & RCC_CR_HSERDY)) {
    }
    RCC_PLLCFGR = PLL_M | (PLL_N << 6) | (((PLL_P / 2u) - 1u) << 16) | RCC_PLLCFGR_SRC_HSE | (PLL_Q << 24);
    RCC_CR |= RCC_CR_PLLON;

    PWR_CR1 |= PWR_CR1_ODEN; /* over-drive: RM0385 4.1.4, after PLLON and before the switch */
    while (!(PWR_CSR1 & PWR_CSR1_ODRDY)) {
    }
    PWR_CR1 |= PWR_CR1_ODSWEN;
    while (!(PWR_CSR1 & PWR_CSR1_ODSWRDY)) {
    }
    while (!(RCC_CR & RCC_CR_PLLRDY)) {
    }

    FLASH_ACR =
        (FLASH_ACR & ~FLASH_ACR_LATENCY_MASK) | FLASH_ACR_LATENCY_7WS | FLASH_ACR_PRFTEN | FLASH_ACR_ARTEN;
    while ((FLASH_ACR & FLASH_ACR_LATENCY_MASK) != FLASH_ACR_LATENCY_7WS) {
    }
    RCC_CFGR = (RCC_CFGR & ~RCC_CFGR_PRESCALER_MASK) | RCC_CFGR_HPRE_DIV1 | RCC_CFGR_PPRE1_DIV4 |
               RCC_CFGR_PPRE2_DIV2;
    RCC_CFGR = (RCC_CFGR & ~RCC_CFGR_SW_MASK) | RCC_CFGR_SW_PLL;
    while ((RCC_CFGR & RCC_CFGR_SWS_MASK) != RCC_CFGR_SWS_PLL) {
    }
}

/* Armv7-M L1 caches: invalidate, then enable (ARM DDI 0489, Cortex-M7 TRM section 5.5). */
static void cache_init(void) {
    mcf_dsb();
    mcf_isb();
    MCF_SCB_ICIALLU = 0;
    mcf_dsb();
    mcf_isb();
    MCF_SCB_CCR |= MCF_CCR_IC;
    mcf_dsb();
    mcf_isb();

    MCF_SCB_CSSELR = 0; /* level 1 data cache */
    mcf_dsb();
    const uint32_t ccsidr = MCF_SCB_CCSIDR;
    const uint32_t sets = ((ccsidr >> 13) & 0x7FFFu) + 1u;
    const uint32_t ways = ((ccsidr >> 3) & 0x3FFu) + 1u;
    const uint32_t line_shift = (ccsidr & 0x7u) + 4u;
    const uint32_t way_shift = ways > 1u ? (uint32_t)__builtin_clz(ways - 1u) : 0u;
    for (uint32_t set = 0; set < sets; set++) {
        for (uint32_t way = 0; way < ways; way++) {
            MCF_SCB_DCISW = (way << way_shift) | (set << line_shift);
        }
    }
    mcf_dsb();
    MCF_SCB_CCR |= MCF_CCR_DC;
    mcf_dsb();
    mcf_isb();
}

static void usart1_init(void) {
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIOAEN | RCC_AHB1ENR_GPIOBEN;
    RCC_APB2ENR |= RCC_APB2ENR_USART1EN;
    (void)RCC_APB2ENR;
    RCC_DCKCFGR2 &= ~RCC_DCKCFGR2_USART1SEL_MASK; /* USART1 clocked by PCLK2 (108 MHz) */

    /* PA9 = USART1_TX (AF7), push-pull, high speed. */
    GPIO_MODER(GPIOA_BASE) = (GPIO_MODER(GPIOA_BASE) & ~(0x3u << 18)) | (GPIO_MODE_AF << 18);
    GPIO_OSPEEDR(GPIOA_BASE) = (GPIO_OSPEEDR(GPIOA_BASE) & ~(0x3u << 18)) | (GPIO_SPEED_HIGH << 18);
    GPIO_AFRH(GPIOA_BASE) = (GPIO_AFRH(GPIOA_BASE) & ~(0xFu << 4)) | (GPIO_AF7_USART1 << 4);
    /* PB7 = USART1_RX (AF7), pull-up. */
    GPIO_MODER(GPIOB_BASE) = (GPIO_MODER(GPIOB_BASE) & ~(0x3u << 14)) | (GPIO_MODE_AF << 14);
    GPIO_PUPDR(GPIOB_BASE) = (GPIO_PUPDR(GPIOB_BASE) & ~(0x3u << 14)) | (GPIO_PULL_UP << 14);
    GPIO_AFRL(GPIOB_BASE) = (GPIO_AFRL(GPIOB_BASE) & ~(0xFu << 28)) | (GPIO_AF7_USART1 << 28);

    /* oversampling by 16: 938 -> 115138 baud (-0.05%) */
    mcf_stm32_usart_start(USART1_BASE, APB2_HZ, USART_BAUD, USART1_IRQ);
}

void mcf_bsp_init(void) {
    MCF_SCB_VTOR = MCF_ADDR(__flash_start__);
    clock_init();
    cache_init();
    mcf_stm32_timers_start(1); /* the Cortex-M7's DWT is locked after reset */
    usart1_init();
    mcf_irq_enable();
}

uint32_t mcf_bsp_millis(void) {
    return milliseconds;
}

void mcf_bsp_uart_write(const uint8_t *data, uint32_t length) {
    mcf_stm32_usart_write(USART1_BASE, data, length);
}

void mcf_bsp_uart_flush(void) {
    mcf_stm32_usart_flush(USART1_BASE);
}

uint32_t mcf_bsp_counter_ticks(void) {
    return MCF_DWT_CYCCNT;
}

uint32_t mcf_bsp_counter_start(void) {
    return MCF_DWT_CYCCNT;
}

void mcf_bsp_exit(uint32_t code) {
    (void)code;
    mcf_stm32_reset(USART1_BASE);
}

void mcf_bsp_halt(uint32_t code) {
    (void)code;
    mcf_stm32_halt();
}
