/* The serial protocol between the host (mcuformer/device/protocol.py) and the firmware.
 *
 * Frame, little-endian:
 *   offset 0  u8   sync 0xA5
 *          1  u8   type (requests < 0x80; a reply is request | 0x80; MCF_MSG_ERROR, MCF_MSG_FAULT)
 *          2  u8   seq (the host's sequence number, echoed in the reply)
 *          3  u32  payload length
 *          7  u16  CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of bytes 0..6
 *          9  ...  payload
 *        9+n  u32  CRC-32 (IEEE 802.3, zlib.crc32) of the payload
 * The header has its own CRC so that a corrupt length is caught before any payload is waited for. The device
 * finds frames by their sync byte: after a header that fails its CRC it scans the bytes it read for the next
 * sync (no idle window is needed), and bytes that are no frame followed by MCF_PROTO_GAP_MS of silence count
 * as a lost frame. Each such stretch of noise is answered with one MCF_MSG_ERROR (seq 0); a frame with a
 * valid header but a bad payload, or one that stops arriving for MCF_PROTO_GAP_MS, is answered with an error
 * carrying its seq. The host retries on these errors. At start-up the device announces itself with
 * MCF_MSG_BOOT, so that a host sees a reset and handshakes again. Python mirrors these numbers;
 * tests/test_device.py checks that both sides agree. */
#ifndef MCF_PROTOCOL_H
#define MCF_PROTOCOL_H

#include <stdint.h>

#define MCF_PROTO_VERSION 1
#define MCF_PROTO_SYNC 0xA5
#define MCF_PROTO_HEADER_BYTES 9
#define MCF_PROTO_TRAILER_BYTES 4
#define MCF_PROTO_SMALL_PAYLOAD 64 /* payload limit of every request but INFER */
/* A frame whose next byte does not come within GAP_MS is dropped (short: a lost byte costs one retry, not a
 * minute; the host writes a frame in one go, so only a stalled host or a lost byte leaves such a gap). */
#define MCF_PROTO_GAP_MS 300

/* Requests (host -> device). */
#define MCF_MSG_HELLO 0x01     /* -> version, model hash, sizes, board */
#define MCF_MSG_INFER 0x02     /* image (MCF_MODEL_INPUT_BYTES int8, HWC) -> logits, argmax, counter */
#define MCF_MSG_MEMORY 0x03    /* -> stack high water, stack, arena, statics */
#define MCF_MSG_PROFILE 0x04   /* -> per-op counts of the last inference */
#define MCF_MSG_EXIT 0x05      /* u32 code -> empty reply, then the device stops (QEMU: semihosting exit) */
#define MCF_MSG_INFER_ROW 0x06 /* streaming: one strip -> u16 rows so far; the last -> the INFER reply */
#define MCF_MSG_PEEK 0x10      /* debug builds: u32 address -> u32 word read there */
#define MCF_MSG_POKE 0x11      /* debug builds: u32 address, u32 value -> empty reply after the write */
#define MCF_MSG_REPLY 0x80     /* reply type = request | MCF_MSG_REPLY */
/* Device -> host only. */
#define MCF_MSG_ERROR 0xEE /* u8 code, u8 request type, u16 0, i32 detail */
#define MCF_MSG_FAULT 0xFA /* unsolicited fault report, then the device halts */
#define MCF_MSG_BOOT 0xB0  /* unsolicited at start-up (seq 0): the model hash; the host handshakes again */

/* Error codes of MCF_MSG_ERROR. */
#define MCF_ERR_HEADER_CRC 1
#define MCF_ERR_PAYLOAD_CRC 2
#define MCF_ERR_LENGTH 3
#define MCF_ERR_UNKNOWN_TYPE 4
#define MCF_ERR_TIMEOUT 5
#define MCF_ERR_MODEL 6
#define MCF_ERR_UNSUPPORTED 7

#define MCF_HELLO_FLAG_DEBUG 0x01 /* PEEK/POKE are compiled in */

typedef struct {
    uint8_t type;
    uint8_t seq;
    uint32_t length;
    uint8_t *payload;
} mcf_frame;

typedef enum {
    MCF_RX_OK = 0,
    MCF_RX_HEADER_CRC = MCF_ERR_HEADER_CRC,
    MCF_RX_PAYLOAD_CRC = MCF_ERR_PAYLOAD_CRC,
    MCF_RX_LENGTH = MCF_ERR_LENGTH,
    MCF_RX_TIMEOUT = MCF_ERR_TIMEOUT,
} mcf_rx_status;

/* Where the payload of a request of `type` and `length` goes, or NULL to reject the length. */
typedef uint8_t *(*mcf_payload_sink)(uint8_t type, uint32_t length);

uint16_t mcf_crc16_update(uint16_t crc, const uint8_t *data, uint32_t length);
uint32_t mcf_crc32_update(uint32_t crc, const uint8_t *data, uint32_t length); /* crc = 0 to start */

/* Blocks until a frame starts (no timeout while idle), then receives it with MCF_PROTO_GAP_MS between bytes.
 * On error, frame->type/seq hold what was received (0 when the header itself was bad); the next call goes on
 * scanning from where this one stopped. */
mcf_rx_status mcf_proto_receive(mcf_frame *frame, mcf_payload_sink sink);

/* Sends one frame: the payload is the concatenation of head (head_length bytes) and tail (tail_length). */
void mcf_proto_send(uint8_t type, uint8_t seq, const uint8_t *head, uint32_t head_length, const uint8_t *tail,
                    uint32_t tail_length);

/* Little-endian stores and loads. */
static inline uint8_t *mcf_put_u16(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}

static inline uint8_t *mcf_put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
    return p + 4;
}

static inline uint32_t mcf_get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

#endif /* MCF_PROTOCOL_H */
