/* QEMU mps2-an500 (Cortex-M7) and mps2-an386 (Cortex-M4): the counter is CMSDK TIMER0 at SYSCLK 25 MHz. Under
 * `-icount shift=0` one instruction takes 1 ns of virtual time, so one tick is 40 instructions. */
#ifndef MCF_BSP_CONFIG_H
#define MCF_BSP_CONFIG_H

#define MCF_BSP_COUNTER_KIND MCF_COUNTER_INSTRUCTIONS
#define MCF_BSP_COUNTER_SCALE 40u

#endif /* MCF_BSP_CONFIG_H */
