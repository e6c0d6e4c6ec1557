/* The few Armv7-M core registers the runtime and the board support use (System Control Block, SysTick, NVIC,
 * MPU, DWT, cache maintenance), from the Armv7-M Architecture Reference Manual. No vendor headers. */
#ifndef MCF_CORTEXM_H
#define MCF_CORTEXM_H

#include <stdint.h>

#define MCF_REG32(address) (*(volatile uint32_t *)(address))
#define MCF_REG8(address) (*(volatile uint8_t *)(address))

/* System Control Block. */
#define MCF_SCB_CPUID MCF_REG32(0xE000ED00u)
#define MCF_SCB_ICSR MCF_REG32(0xE000ED04u)
#define MCF_SCB_VTOR MCF_REG32(0xE000ED08u)
#define MCF_SCB_AIRCR MCF_REG32(0xE000ED0Cu)
#define MCF_SCB_SCR MCF_REG32(0xE000ED10u)
#define MCF_SCB_CCR MCF_REG32(0xE000ED14u)
#define MCF_SCB_SHCSR MCF_REG32(0xE000ED24u)
#define MCF_SCB_CFSR MCF_REG32(0xE000ED28u)
#define MCF_SCB_HFSR MCF_REG32(0xE000ED2Cu)
#define MCF_SCB_MMFAR MCF_REG32(0xE000ED34u)
#define MCF_SCB_BFAR MCF_REG32(0xE000ED38u)
#define MCF_SCB_CCSIDR MCF_REG32(0xE000ED80u)
#define MCF_SCB_CSSELR MCF_REG32(0xE000ED84u)
#define MCF_SCB_CPACR MCF_REG32(0xE000ED88u)
#define MCF_SCB_ICIALLU MCF_REG32(0xE000EF50u)
#define MCF_SCB_DCISW MCF_REG32(0xE000EF60u)

#define MCF_AIRCR_VECTKEY (0x05FAu << 16)
#define MCF_AIRCR_SYSRESETREQ (1u << 2)
#define MCF_CCR_DC (1u << 16)
#define MCF_CCR_IC (1u << 17)
#define MCF_SHCSR_MEMFAULTENA (1u << 16)
#define MCF_SHCSR_BUSFAULTENA (1u << 17)
#define MCF_SHCSR_USGFAULTENA (1u << 18)
#define MCF_CFSR_MMARVALID (1u << 7)
#define MCF_CFSR_BFARVALID (1u << 15)

/* SysTick. */
#define MCF_SYST_CSR MCF_REG32(0xE000E010u)
#define MCF_SYST_RVR MCF_REG32(0xE000E014u)
#define MCF_SYST_CVR MCF_REG32(0xE000E018u)
#define MCF_SYST_CSR_ENABLE (1u << 0)
#define MCF_SYST_CSR_TICKINT (1u << 1)
#define MCF_SYST_CSR_CLKSOURCE (1u << 2) /* 1: the processor clock */

/* NVIC: one enable bit per external interrupt, 8-bit priorities. */
#define MCF_NVIC_ISER(n) MCF_REG32(0xE000E100u + 4u * (n))
#define MCF_NVIC_ICPR(n) MCF_REG32(0xE000E280u + 4u * (n))
#define MCF_NVIC_IPR(irq) MCF_REG8(0xE000E400u + (irq))

/* MPU (PMSAv7). */
#define MCF_MPU_TYPE MCF_REG32(0xE000ED90u)
#define MCF_MPU_CTRL MCF_REG32(0xE000ED94u)
#define MCF_MPU_RNR MCF_REG32(0xE000ED98u)
#define MCF_MPU_RBAR MCF_REG32(0xE000ED9Cu)
#define MCF_MPU_RASR MCF_REG32(0xE000EDA0u)
#define MCF_MPU_CTRL_ENABLE (1u << 0)
#define MCF_MPU_CTRL_PRIVDEFENA (1u << 2)
#define MCF_MPU_RASR_ENABLE (1u << 0)
#define MCF_MPU_RASR_SIZE(log2) ((uint32_t)((log2) - 1u) << 1) /* region of 2^log2 bytes, log2 in 5..32 */
#define MCF_MPU_RASR_SRD(mask) ((uint32_t)(mask) << 8)         /* disabled subregions (eighths) */
#define MCF_MPU_RASR_B (1u << 16)
#define MCF_MPU_RASR_C (1u << 17)
#define MCF_MPU_RASR_S (1u << 18)
#define MCF_MPU_RASR_TEX(t) ((uint32_t)(t) << 19)
#define MCF_MPU_RASR_AP_NONE (0u << 24)
#define MCF_MPU_RASR_AP_RW (3u << 24)
#define MCF_MPU_RASR_AP_RO (6u << 24)
#define MCF_MPU_RASR_XN (1u << 28)

/* Debug: DWT cycle counter (works on silicon; reads 0 in QEMU). */
#define MCF_DEMCR MCF_REG32(0xE000EDFCu)
#define MCF_DEMCR_TRCENA (1u << 24)
#define MCF_DWT_CTRL MCF_REG32(0xE0001000u)
#define MCF_DWT_CYCCNT MCF_REG32(0xE0001004u)
#define MCF_DWT_LAR MCF_REG32(0xE0001FB0u)
#define MCF_DWT_LAR_KEY 0xC5ACCE55u
#define MCF_DWT_CTRL_CYCCNTENA (1u << 0)

static inline void mcf_dsb(void) {
    __asm volatile("dsb 0xF" ::: "memory");
}
static inline void mcf_isb(void) {
    __asm volatile("isb 0xF" ::: "memory");
}
static inline void mcf_wfi(void) {
    __asm volatile("wfi" ::: "memory");
}
static inline void mcf_irq_disable(void) {
    __asm volatile("cpsid i" ::: "memory");
}
static inline void mcf_irq_enable(void) {
    __asm volatile("cpsie i" ::: "memory");
}

static inline uint32_t mcf_get_sp(void) {
    uint32_t sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

static inline uint32_t mcf_get_ipsr(void) {
    uint32_t ipsr;
    __asm volatile("mrs %0, ipsr" : "=r"(ipsr));
    return ipsr;
}

static inline void mcf_nvic_enable(uint32_t irq, uint8_t priority) {
    MCF_NVIC_IPR(irq) = priority;
    MCF_NVIC_ICPR(irq >> 5) = 1u << (irq & 31u);
    MCF_NVIC_ISER(irq >> 5) = 1u << (irq & 31u);
}

/* The MPU guard of boards that enforce their budget in hardware (mcf_mpu_guard.c): flash read-only, the
 * linked RAM read-write, the rest of the code and SRAM space no-access. Call once at start-up. */
void mcf_mpu_guard(void);

#endif /* MCF_CORTEXM_H */
