/* The firmware's main loop: receives protocol frames and answers HELLO, INFER, MEMORY and EXIT
 * (and PEEK/POKE in debug builds). The model comes from the generated mcf_model.c. */
#include <stdint.h>

#include "mcf_bsp.h"
#include "mcf_cortexm.h"
#include "mcf_model.h"
#include "mcf_profile.h"
#include "mcf_protocol.h"
#include "mcf_runtime.h"

#ifndef MCF_BOARD_NAME
#error "define MCF_BOARD_NAME (mcuformer/device/build.py passes the board descriptor's name)"
#endif
#ifndef MCF_BOARD_CLOCK_HZ
#error "define MCF_BOARD_CLOCK_HZ (mcuformer/device/build.py passes the board descriptor's clock)"
#endif
#ifndef MCF_DEBUG_COMMANDS
#define MCF_DEBUG_COMMANDS 0
#endif

#define MCF_NAME_LIMIT 32u
#define MCF_HASH_BYTES 16u

_Static_assert(sizeof(MCF_MODEL_HASH) - 1u == MCF_HASH_BYTES, "MCF_MODEL_HASH must have 16 hex digits");

static uint8_t small_payload[MCF_PROTO_SMALL_PAYLOAD] __attribute__((aligned(4)));

/* Streaming builds: patch rows received (and embedded) so far for the inference in progress. */
static uint32_t stream_rows_done;

static uint8_t *payload_sink(uint8_t type, uint32_t length) {
    if (type == MCF_MSG_INFER) { /* a streaming build holds one strip, never a whole image */
        return MCF_MODEL_STREAM_ROWS == 0 && length == MCF_MODEL_INPUT_BYTES ? (uint8_t *)mcf_model_input()
                                                                             : 0;
    }
    if (type == MCF_MSG_INFER_ROW) {
        return MCF_MODEL_STREAM_ROWS != 0 && length == MCF_MODEL_STREAM_ROW_BYTES
                   ? (uint8_t *)mcf_model_input()
                   : 0;
    }
    return length <= sizeof small_payload ? small_payload : 0;
}

static void reply(const mcf_frame *request, const uint8_t *head, uint32_t head_length, const uint8_t *tail,
                  uint32_t tail_length) {
    mcf_proto_send((uint8_t)(request->type | MCF_MSG_REPLY), request->seq, head, head_length, tail,
                   tail_length);
}

static void reply_error(uint8_t seq, uint8_t code, uint8_t request_type, int32_t detail) {
    uint8_t payload[8];
    payload[0] = code;
    payload[1] = request_type;
    mcf_put_u16(&payload[2], 0);
    mcf_put_u32(&payload[4], (uint32_t)detail);
    mcf_proto_send(MCF_MSG_ERROR, seq, payload, sizeof payload, 0, 0);
}

static uint8_t *put_name(uint8_t *p, const char *name) {
    uint32_t length = 0;
    while (name[length] != '\0' && length < MCF_NAME_LIMIT) {
        length++;
    }
    *p++ = (uint8_t)length;
    for (uint32_t i = 0; i < length; i++) {
        *p++ = (uint8_t)name[i];
    }
    return p;
}

static void handle_hello(const mcf_frame *request) {
    uint8_t payload[64 + 2u * (1u + MCF_NAME_LIMIT)];
    uint8_t *p = mcf_put_u16(payload, MCF_PROTO_VERSION);
    *p++ = MCF_BSP_COUNTER_KIND;
    *p++ = MCF_DEBUG_COMMANDS ? MCF_HELLO_FLAG_DEBUG : 0u;
    p = mcf_put_u32(p, MCF_BSP_COUNTER_SCALE);
    p = mcf_put_u32(p, MCF_BOARD_CLOCK_HZ);
    p = mcf_put_u32(p, MCF_MODEL_ARENA_BYTES);
    p = mcf_put_u32(p, MCF_MODEL_INPUT_BYTES);
    p = mcf_put_u16(p, MCF_MODEL_INPUT_HEIGHT);
    p = mcf_put_u16(p, MCF_MODEL_INPUT_WIDTH);
    p = mcf_put_u16(p, MCF_MODEL_INPUT_CHANNELS);
    p = mcf_put_u16(p, MCF_MODEL_NUM_CLASSES);
    p = mcf_put_u16(p, MCF_MODEL_NUM_OPS);
    p = mcf_put_u16(p, MCF_MODEL_STREAM_ROWS);
    const uint32_t input_frame = MCF_MODEL_STREAM_ROWS ? MCF_MODEL_STREAM_ROW_BYTES : MCF_MODEL_INPUT_BYTES;
    p = mcf_put_u32(p, input_frame > MCF_PROTO_SMALL_PAYLOAD ? input_frame : MCF_PROTO_SMALL_PAYLOAD);
    for (uint32_t i = 0; i < MCF_HASH_BYTES; i++) {
        *p++ = (uint8_t)MCF_MODEL_HASH[i];
    }
    p = put_name(p, MCF_BOARD_NAME);
    p = put_name(p, MCF_MODEL_NAME);
    stream_rows_done = 0; /* a new session starts any streamed image afresh */
    reply(request, payload, (uint32_t)(p - payload), 0, 0);
}

static void reply_logits(const mcf_frame *request, const int8_t *logits, uint32_t ticks);

static void handle_infer(const mcf_frame *request) {
    if (MCF_MODEL_STREAM_ROWS) { /* the image must come as INFER_ROW strips: the device never holds it whole
                                  */
        reply_error(request->seq, MCF_ERR_UNSUPPORTED, request->type, MCF_MODEL_STREAM_ROWS);
        return;
    }
    int8_t logits[MCF_MODEL_NUM_CLASSES];
    /* Interrupts stay masked while the model runs: the count covers the model alone, the same every time. */
    mcf_irq_disable();
    const uint32_t start = mcf_bsp_counter_start();
    mcf_profile_begin(start);
    const mcf_status status = mcf_model_run(mcf_model_input(), logits);
    const uint32_t ticks = mcf_bsp_counter_ticks() - start;
    mcf_irq_enable();
    if (status != MCF_OK) {
        reply_error(request->seq, MCF_ERR_MODEL, request->type, (int32_t)status);
        return;
    }
    reply_logits(request, logits, ticks);
}

#if MCF_MODEL_STREAM_ROWS
/* Counter ticks the streamed inference in progress has spent computing, summed over its rows. */
static uint32_t stream_ticks;

/* One strip arrived at mcf_model_input(): embed it (interrupts masked, counted like INFER); after the last
 * one run the rest of the model and answer with the logits. */
static void handle_infer_row(const mcf_frame *request) {
    const uint32_t row = stream_rows_done;
    mcf_irq_disable();
    const uint32_t start = mcf_bsp_counter_start();
    if (row == 0) {
        mcf_profile_begin(start);
        stream_ticks = 0;
    } else {
        mcf_profile_resume(start);
    }
    mcf_status status = mcf_model_embed_row((int32_t)row);
    int8_t logits[MCF_MODEL_NUM_CLASSES];
    const int last = row + 1u == MCF_MODEL_STREAM_ROWS;
    if (status == MCF_OK && last) {
        status = mcf_model_finish(logits);
    }
    stream_ticks += mcf_bsp_counter_ticks() - start;
    mcf_irq_enable();
    stream_rows_done = status == MCF_OK && !last ? row + 1u : 0u;
    if (status != MCF_OK) {
        reply_error(request->seq, MCF_ERR_MODEL, request->type, (int32_t)status);
        return;
    }
    if (!last) {
        uint8_t payload[2];
        mcf_put_u16(payload, (uint16_t)(row + 1u));
        reply(request, payload, sizeof payload, 0, 0);
        return;
    }
    reply_logits(request, logits, stream_ticks);
}
#endif

static void reply_logits(const mcf_frame *request, const int8_t *logits, uint32_t ticks) {
    uint32_t best = 0;
    for (uint32_t i = 1; i < MCF_MODEL_NUM_CLASSES; i++) {
        if (logits[i] > logits[best]) {
            best = i;
        }
    }
    const uint64_t count = (uint64_t)ticks * MCF_BSP_COUNTER_SCALE;
    uint8_t head[12];
    uint8_t *p = mcf_put_u32(head, (uint32_t)count);
    p = mcf_put_u32(p, (uint32_t)(count >> 32));
    p = mcf_put_u16(p, best);
    mcf_put_u16(p, MCF_MODEL_NUM_CLASSES);
    reply(request, head, sizeof head, (const uint8_t *)logits, MCF_MODEL_NUM_CLASSES);
}

static void handle_memory(const mcf_frame *request) {
    uint8_t payload[28];
    uint8_t *p = mcf_put_u32(payload, mcf_stack_high_water());
    p = mcf_put_u32(p, MCF_ADDR(__stack_top__) - MCF_ADDR(__stack_limit__));
    p = mcf_put_u32(p, MCF_ADDR(__arena_end__) - MCF_ADDR(__arena_start__));
    p = mcf_put_u32(p, (MCF_ADDR(__data_end__) - MCF_ADDR(__data_start__)) +
                           (MCF_ADDR(__bss_end__) - MCF_ADDR(__bss_start__)));
    p = mcf_put_u32(p, MCF_ADDR(__ram_end__) - MCF_ADDR(__ram_start__));
    p = mcf_put_u32(p, MCF_ADDR(__flash_used_end__) - MCF_ADDR(__flash_start__));
    mcf_put_u32(p, mcf_rx_overruns());
    reply(request, payload, sizeof payload, 0, 0);
}

/* PROFILE: u32 number of ops, then each op's count (cycles or instructions) in the last inference. */
static void handle_profile(const mcf_frame *request) {
    uint8_t payload[4u + 4u * MCF_MODEL_NUM_OPS];
    uint8_t *p = mcf_put_u32(payload, MCF_MODEL_NUM_OPS);
    for (uint32_t i = 0; i < MCF_MODEL_NUM_OPS; i++) {
        p = mcf_put_u32(p, mcf_profile_ticks(i) * MCF_BSP_COUNTER_SCALE);
    }
    reply(request, payload, sizeof payload, 0, 0);
}

static void handle_exit(const mcf_frame *request) {
    const uint32_t code = request->length >= 4u ? mcf_get_u32(request->payload) : 0u;
    reply(request, 0, 0, 0, 0);
    mcf_bsp_uart_flush();
    mcf_bsp_exit(code);
}

#if MCF_DEBUG_COMMANDS
/* Debug builds only: read or write any word. Used by the tests to show that the MPU guards the budget. */
static void handle_peek_poke(const mcf_frame *request) {
    const uint32_t needed = request->type == MCF_MSG_PEEK ? 4u : 8u;
    if (request->length != needed) {
        reply_error(request->seq, MCF_ERR_LENGTH, request->type, (int32_t)request->length);
        return;
    }
    volatile uint32_t *address = (volatile uint32_t *)(uintptr_t)mcf_get_u32(request->payload);
    uint8_t payload[4];
    if (request->type == MCF_MSG_PEEK) {
        mcf_put_u32(payload, *address);
        reply(request, payload, sizeof payload, 0, 0);
    } else {
        *address = mcf_get_u32(request->payload + 4);
        mcf_dsb();
        reply(request, 0, 0, 0, 0);
    }
}
#endif

int main(void) {
    /* Announce the start: a host that was talking to an earlier run of the firmware handshakes again. */
    mcf_proto_send(MCF_MSG_BOOT, 0, (const uint8_t *)MCF_MODEL_HASH, MCF_HASH_BYTES, 0, 0);
    for (;;) {
        mcf_frame request;
        const mcf_rx_status status = mcf_proto_receive(&request, payload_sink);
        if (status != MCF_RX_OK) {
            reply_error(request.seq, (uint8_t)status, request.type, (int32_t)request.length);
            continue;
        }
        switch (request.type) {
            case MCF_MSG_HELLO:
                handle_hello(&request);
                break;
            case MCF_MSG_INFER:
                handle_infer(&request);
                break;
#if MCF_MODEL_STREAM_ROWS
            case MCF_MSG_INFER_ROW:
                handle_infer_row(&request);
                break;
#endif
            case MCF_MSG_MEMORY:
                handle_memory(&request);
                break;
            case MCF_MSG_EXIT:
                handle_exit(&request);
                break;
#if MCF_DEBUG_COMMANDS
            case MCF_MSG_PEEK:
            case MCF_MSG_POKE:
                handle_peek_poke(&request);
                break;
#endif
            case MCF_MSG_PROFILE:
                handle_profile(&request);
                break;
            default:
                reply_error(request.seq, MCF_ERR_UNKNOWN_TYPE, request.type, 0);
                break;
        }
    }
}
