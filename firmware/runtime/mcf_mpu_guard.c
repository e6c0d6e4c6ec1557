/* The MPU guard shared by the boards that enforce their budget in hardware (PMSAv7, 8 regions: Cortex-M4/M7):
 * the linked flash read-only, the linked RAM budget read-write and no-execute, every other byte of the code
 * and SRAM space no-access, so an overrun faults instead of silently using memory the budget does not have.
 */
#include <stdint.h>

#include "mcf_cortexm.h"
#include "mcf_runtime.h"

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

/* Region 0 forbids the whole code and SRAM space (0 to 1 GB): RAM the part does not have (on an emulator) or
 * must not use (aliases, the rest of a larger SRAM); higher regions (which take priority) allow the linked
 * flash read-only and the RAM budget read-write.
 * Peripherals and the system space keep the default map (PRIVDEFENA). The MPU is off inside HardFault
 * (HFNMIENA = 0). */
void mcf_mpu_guard(void) {
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
