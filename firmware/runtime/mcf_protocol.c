/* Framing of the serial protocol (see mcf_protocol.h): CRCs, receive with timeouts and resynchronisation,
 * send. */
#include "mcf_protocol.h"

#include "mcf_bsp.h"
#include "mcf_runtime.h"

#define MCF_RX_FOREVER 0xFFFFFFFFu

/* CRC-32 (reflected polynomial 0xEDB88320) four bits at a time: a 64-byte table instead of 1 KB. */
static const uint32_t crc32_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

static inline uint32_t crc32_step(uint32_t state, uint8_t byte) {
    state ^= byte;
    state = (state >> 4) ^ crc32_nibble[state & 15u];
    return (state >> 4) ^ crc32_nibble[state & 15u];
}

uint32_t mcf_crc32_update(uint32_t crc, const uint8_t *data, uint32_t length) {
    uint32_t state = ~crc;
    for (uint32_t i = 0; i < length; i++) {
        state = crc32_step(state, data[i]);
    }
    return ~state;
}

uint16_t mcf_crc16_update(uint16_t crc, const uint8_t *data, uint32_t length) {
    for (uint32_t i = 0; i < length; i++) {
        crc ^= (uint16_t)(data[i] << 8);
        for (int bit = 0; bit < 8; bit++) {
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

/* Discards input until the line has been quiet for MCF_PROTO_IDLE_MS. */
static void drain_line(void) {
    while (mcf_rx_getc(MCF_PROTO_IDLE_MS) >= 0) {
    }
}

mcf_rx_status mcf_proto_receive(mcf_frame *frame, mcf_payload_sink sink) {
    uint8_t header[MCF_PROTO_HEADER_BYTES];
    int32_t c;
    frame->type = 0;
    frame->seq = 0;
    frame->length = 0;
    frame->payload = 0;
    do {
        c = mcf_rx_getc(MCF_RX_FOREVER);
    } while (c != MCF_PROTO_SYNC);
    header[0] = MCF_PROTO_SYNC;
    for (uint32_t i = 1; i < MCF_PROTO_HEADER_BYTES; i++) {
        c = mcf_rx_getc(MCF_PROTO_GAP_MS);
        if (c < 0) {
            return MCF_RX_TIMEOUT;
        }
        header[i] = (uint8_t)c;
    }
    const uint16_t header_crc = (uint16_t)(header[7] | (header[8] << 8));
    if (mcf_crc16_update(0xFFFFu, header, 7) != header_crc) {
        drain_line();
        return MCF_RX_HEADER_CRC;
    }
    frame->type = header[1];
    frame->seq = header[2];
    frame->length = mcf_get_u32(&header[3]);
    uint8_t *dest = sink(frame->type, frame->length);
    if (dest == 0) {
        drain_line();
        return MCF_RX_LENGTH;
    }
    uint32_t state = 0xFFFFFFFFu;
    for (uint32_t i = 0; i < frame->length; i++) {
        c = mcf_rx_getc(MCF_PROTO_GAP_MS);
        if (c < 0) {
            return MCF_RX_TIMEOUT;
        }
        dest[i] = (uint8_t)c;
        state = crc32_step(state, (uint8_t)c);
    }
    uint8_t trailer[MCF_PROTO_TRAILER_BYTES];
    for (uint32_t i = 0; i < MCF_PROTO_TRAILER_BYTES; i++) {
        c = mcf_rx_getc(MCF_PROTO_GAP_MS);
        if (c < 0) {
            return MCF_RX_TIMEOUT;
        }
        trailer[i] = (uint8_t)c;
    }
    if (~state != mcf_get_u32(trailer)) {
        drain_line();
        return MCF_RX_PAYLOAD_CRC;
    }
    frame->payload = dest;
    return MCF_RX_OK;
}

void mcf_proto_send(uint8_t type, uint8_t seq, const uint8_t *head, uint32_t head_length, const uint8_t *tail,
                    uint32_t tail_length) {
    uint8_t header[MCF_PROTO_HEADER_BYTES];
    header[0] = MCF_PROTO_SYNC;
    header[1] = type;
    header[2] = seq;
    mcf_put_u32(&header[3], head_length + tail_length);
    mcf_put_u16(&header[7], mcf_crc16_update(0xFFFFu, header, 7));
    mcf_bsp_uart_write(header, sizeof header);
    mcf_bsp_uart_write(head, head_length);
    mcf_bsp_uart_write(tail, tail_length);
    uint8_t trailer[MCF_PROTO_TRAILER_BYTES];
    mcf_put_u32(trailer, mcf_crc32_update(mcf_crc32_update(0, head, head_length), tail, tail_length));
    mcf_bsp_uart_write(trailer, sizeof trailer);
}
