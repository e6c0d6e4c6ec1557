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

/* Bytes read after a sync byte whose header failed its CRC: the next frame may start among them, so they are
 * scanned again before anything new is read. Twice a header: a second bad header may come out of the first.
 */
static uint8_t rescan[2u * MCF_PROTO_HEADER_BYTES];
static uint32_t rescan_count;
/* Damage the host has not been told about: noise or a bad header since the last frame. It is reported once
 * the line goes quiet (the rest of a damaged frame has passed by then), so each lost frame costs one error.
 */
static int unreported_damage;
/* Set after an error that named its frame: bytes of that frame still arriving (the leftover of a duplicated
 * byte) are not new damage. Ends at the next sync byte or silence. */
static int in_answered_frame;

static int32_t next_byte(uint32_t timeout_ms) {
    if (rescan_count == 0) {
        return mcf_rx_getc(timeout_ms);
    }
    const int32_t c = rescan[0];
    rescan_count--;
    for (uint32_t i = 0; i < rescan_count; i++) {
        rescan[i] = rescan[i + 1u];
    }
    return c;
}

/* Puts header[1..] in front of the bytes still to be rescanned. */
static void push_back(const uint8_t *header) {
    const uint32_t n = MCF_PROTO_HEADER_BYTES - 1u;
    for (uint32_t i = rescan_count; i > 0; i--) {
        rescan[i - 1u + n] = rescan[i - 1u];
    }
    for (uint32_t i = 0; i < n; i++) {
        rescan[i] = header[i + 1u];
    }
    rescan_count += n;
}

/* Skips the payload and trailer of a frame whose length was refused. */
static mcf_rx_status skip_frame(uint32_t length) {
    for (uint32_t i = 0; i < length + MCF_PROTO_TRAILER_BYTES; i++) {
        if (next_byte(MCF_PROTO_GAP_MS) < 0) {
            return MCF_RX_TIMEOUT;
        }
    }
    return MCF_RX_LENGTH;
}

/* Reads up to a valid header: MCF_RX_OK, or an error to answer (damage followed by silence, a header that
 * stopped arriving). */
static mcf_rx_status receive_header(uint8_t *header) {
    for (;;) {
        int32_t c = next_byte(MCF_PROTO_GAP_MS);
        if (c < 0) { /* silence: whatever was damaged has passed */
            in_answered_frame = 0;
            if (unreported_damage) {
                unreported_damage = 0;
                return MCF_RX_HEADER_CRC;
            }
            continue;
        }
        if (c != MCF_PROTO_SYNC) {
            unreported_damage |= !in_answered_frame;
            continue;
        }
        in_answered_frame = 0;
        header[0] = MCF_PROTO_SYNC;
        uint32_t got = 1;
        while (got < MCF_PROTO_HEADER_BYTES && (c = next_byte(MCF_PROTO_GAP_MS)) >= 0) {
            header[got++] = (uint8_t)c;
        }
        if (got < MCF_PROTO_HEADER_BYTES) { /* a header that stopped arriving: silence already */
            unreported_damage = 0;
            return MCF_RX_TIMEOUT;
        }
        if (mcf_crc16_update(0xFFFFu, header, 7) == (uint16_t)(header[7] | (header[8] << 8))) {
            unreported_damage = 0;
            return MCF_RX_OK;
        }
        unreported_damage = 1;
        push_back(header); /* a false sync or a damaged header: the next frame may start inside it */
    }
}

static mcf_rx_status receive_frame(mcf_frame *frame, mcf_payload_sink sink) {
    uint8_t header[MCF_PROTO_HEADER_BYTES];
    frame->type = 0;
    frame->seq = 0;
    frame->length = 0;
    frame->payload = 0;
    const mcf_rx_status header_status = receive_header(header);
    if (header_status != MCF_RX_OK) {
        return header_status;
    }
    frame->type = header[1];
    frame->seq = header[2];
    frame->length = mcf_get_u32(&header[3]);
    uint8_t *dest = sink(frame->type, frame->length);
    if (dest == 0) {
        return skip_frame(frame->length);
    }
    uint32_t state = 0xFFFFFFFFu;
    for (uint32_t i = 0; i < frame->length; i++) {
        const int32_t c = next_byte(MCF_PROTO_GAP_MS);
        if (c < 0) {
            return MCF_RX_TIMEOUT;
        }
        dest[i] = (uint8_t)c;
        state = crc32_step(state, (uint8_t)c);
    }
    uint8_t trailer[MCF_PROTO_TRAILER_BYTES];
    for (uint32_t i = 0; i < MCF_PROTO_TRAILER_BYTES; i++) {
        const int32_t c = next_byte(MCF_PROTO_GAP_MS);
        if (c < 0) {
            return MCF_RX_TIMEOUT;
        }
        trailer[i] = (uint8_t)c;
    }
    if (~state != mcf_get_u32(trailer)) {
        return MCF_RX_PAYLOAD_CRC;
    }
    frame->payload = dest;
    return MCF_RX_OK;
}

mcf_rx_status mcf_proto_receive(mcf_frame *frame, mcf_payload_sink sink) {
    const mcf_rx_status status = receive_frame(frame, sink);
    /* A frame with a valid header that went wrong is answered now, with its seq; what still follows of it (a
     * duplicated byte's leftover) must not be answered a second time, or the host would resend twice. */
    in_answered_frame = status != MCF_RX_OK && frame->type != 0u;
    return status;
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
