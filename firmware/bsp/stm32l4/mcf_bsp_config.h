/* STM32L4 (L432KC, L412KB): the counter is the DWT cycle counter at the core clock (80 MHz). */
#ifndef MCF_BSP_CONFIG_H
#define MCF_BSP_CONFIG_H

#define MCF_BSP_COUNTER_KIND MCF_COUNTER_CYCLES
#define MCF_BSP_COUNTER_SCALE 1u

#endif /* MCF_BSP_CONFIG_H */
