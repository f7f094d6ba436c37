/* Rover serial protocol, MCU side: CRC-16/CCITT-FALSE, COBS, DRIVE and STATE frames.
 *
 * Plain C99 (also valid C++), no Arduino dependency, so the host can compile and test it.
 * The wire format is documented in drivers/protocol.py and drivers/firmware/README.md; both
 * sides must agree byte for byte (tests check the fixed vectors against this code).
 */
#ifndef ROVER_PROTO_H
#define ROVER_PROTO_H

#include <stddef.h>
#include <stdint.h>
#if defined(__AVR__)
#include <util/crc16.h> /* _crc_xmodem_update: the same CRC (poly 0x1021, MSB first), in asm */
#endif

#define ROVER_TYPE_DRIVE 0x44
#define ROVER_TYPE_STATE 0x53
#define ROVER_FLAG_ARM 0x01
#define ROVER_FLAG_ESTOP 0x02
#define ROVER_STATUS_ARMED 0x01
#define ROVER_STATUS_WATCHDOG 0x02
#define ROVER_STATUS_ESTOP 0x04

#define ROVER_DRIVE_LEN 8  /* payload bytes, CRC excluded */
#define ROVER_STATE_LEN 14
/* Receive buffer: a longer frame is dropped whole and counted as bad (MAX_ENCODED_LEN). */
#define ROVER_RX_MAX 32
/* payload + CRC, + 1 COBS code byte (frames < 254 bytes), + delimiter */
#define ROVER_TX_MAX (ROVER_STATE_LEN + 2 + 1 + 1)

typedef struct {
  uint16_t seq;
  int16_t steering; /* thousandths, [-1000, 1000] */
  int16_t throttle;
  uint8_t flags;
} rover_drive_t;

typedef struct {
  uint16_t seq;
  uint8_t status;
  int16_t steering;
  int16_t throttle;
  uint16_t bad_frames;
  uint32_t uptime_ms;
} rover_state_t;

/* A DRIVE on the wire, delimiter excluded: COBS adds one byte to its 8 + 2 (CRC). */
#define ROVER_DRIVE_WIRE_LEN (ROVER_DRIVE_LEN + 2 + 1)

typedef struct {
  uint8_t buf[ROVER_RX_MAX];
  uint8_t len;
  uint8_t overflow;
  /* The last DRIVE_WIRE_LEN bytes of the frame (a ring) and its length (saturating), so a
   * frame whose delimiter was lost does not also cost the DRIVE that follows it. */
  uint8_t tail[ROVER_DRIVE_WIRE_LEN];
  uint8_t tail_at;
  uint8_t count;
} rover_rx_t;

static inline uint16_t rover_crc16(const uint8_t *data, size_t len) {
  uint16_t crc = 0xFFFF;
  for (size_t i = 0; i < len; i++) {
#if defined(__AVR__)
    crc = _crc_xmodem_update(crc, data[i]); /* ~6x fewer cycles than the loop below */
#else
    crc ^= (uint16_t)((uint16_t)data[i] << 8);
    for (int bit = 0; bit < 8; bit++) {
      crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
#endif
  }
  return crc;
}

/* COBS-encode len (< 254) bytes into out (len + 1 bytes); returns the encoded length. */
static inline size_t rover_cobs_encode(const uint8_t *in, size_t len, uint8_t *out) {
  size_t code_at = 0;
  size_t o = 1;
  uint8_t code = 1;
  for (size_t i = 0; i < len; i++) {
    if (in[i] == 0) {
      out[code_at] = code;
      code_at = o++;
      code = 1;
    } else {
      out[o++] = in[i];
      code++;
    }
  }
  out[code_at] = code;
  return o;
}

/* COBS-decode len bytes into out (len bytes of room); returns the decoded length or -1. */
static inline int rover_cobs_decode(const uint8_t *in, size_t len, uint8_t *out) {
  size_t i = 0;
  size_t o = 0;
  while (i < len) {
    uint8_t code = in[i++];
    if (code == 0) return -1;
    size_t end = i + code - 1;
    if (end > len) return -1;
    while (i < end) {
      if (in[i] == 0) return -1;
      out[o++] = in[i++];
    }
    if (i < len && code < 0xFF) out[o++] = 0;
  }
  return (int)o;
}

static inline void rover_put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v & 0xFF);
  p[1] = (uint8_t)(v >> 8);
}

static inline uint16_t rover_get16(const uint8_t *p) {
  return (uint16_t)((uint16_t)p[0] | (uint16_t)((uint16_t)p[1] << 8));
}

/* Append the CRC to payload (room for len + 2), COBS it into out, add the delimiter. */
static inline size_t rover_frame(uint8_t *payload, size_t len, uint8_t *out) {
  rover_put16(payload + len, rover_crc16(payload, len));
  size_t n = rover_cobs_encode(payload, len + 2, out);
  out[n++] = 0;
  return n;
}

/* The wire frame of a STATE into out (ROVER_TX_MAX bytes); returns its length. */
static inline size_t rover_encode_state(const rover_state_t *s, uint8_t *out) {
  uint8_t p[ROVER_STATE_LEN + 2];
  p[0] = ROVER_TYPE_STATE;
  rover_put16(p + 1, s->seq);
  p[3] = s->status;
  rover_put16(p + 4, (uint16_t)s->steering);
  rover_put16(p + 6, (uint16_t)s->throttle);
  rover_put16(p + 8, s->bad_frames);
  rover_put16(p + 10, (uint16_t)(s->uptime_ms & 0xFFFF));
  rover_put16(p + 12, (uint16_t)(s->uptime_ms >> 16));
  return rover_frame(p, ROVER_STATE_LEN, out);
}

/* The wire frame of a DRIVE into out (12 bytes); for host-side tools and tests. */
static inline size_t rover_encode_drive(const rover_drive_t *d, uint8_t *out) {
  uint8_t p[ROVER_DRIVE_LEN + 2];
  p[0] = ROVER_TYPE_DRIVE;
  rover_put16(p + 1, d->seq);
  rover_put16(p + 3, (uint16_t)d->steering);
  rover_put16(p + 5, (uint16_t)d->throttle);
  p[7] = d->flags;
  return rover_frame(p, ROVER_DRIVE_LEN, out);
}

/* Check one complete encoded frame: 1 and *cmd filled for a valid DRIVE, else -1. */
static inline int rover_parse_drive(const uint8_t *encoded, size_t len, rover_drive_t *cmd) {
  uint8_t frame[ROVER_RX_MAX];
  int n = rover_cobs_decode(encoded, len, frame);
  if (n < 0) return -1; /* bad COBS */
  if (n < 3) return -1; /* bad length */
  size_t plen = (size_t)n - 2;
  if (rover_crc16(frame, plen) != rover_get16(frame + plen)) return -1; /* bad CRC */
  if (frame[0] != ROVER_TYPE_DRIVE) return -1;                         /* unknown type */
  if (plen != ROVER_DRIVE_LEN) return -1;                              /* bad length */
  cmd->seq = rover_get16(frame + 1);
  cmd->steering = (int16_t)rover_get16(frame + 3);
  cmd->throttle = (int16_t)rover_get16(frame + 5);
  cmd->flags = frame[7];
  return 1;
}

/* A bad frame longer than a DRIVE may be a frame whose delimiter was lost followed by a whole
 * DRIVE: parse its last ROVER_DRIVE_WIRE_LEN bytes as one. 1 and *cmd filled if they are. */
static inline int rover_rx_tail(const rover_rx_t *rx, rover_drive_t *cmd) {
  uint8_t frame[ROVER_DRIVE_WIRE_LEN];
  if (rx->count <= ROVER_DRIVE_WIRE_LEN) return 0;
  for (uint8_t i = 0; i < ROVER_DRIVE_WIRE_LEN; i++) {
    uint8_t at = (uint8_t)(rx->tail_at + i);
    frame[i] = rx->tail[at < ROVER_DRIVE_WIRE_LEN ? at : at - ROVER_DRIVE_WIRE_LEN];
  }
  return rover_parse_drive(frame, ROVER_DRIVE_WIRE_LEN, cmd) == 1;
}

/* Feed one received byte: 1 when it completes a valid DRIVE (*cmd filled), -1 when it
 * completes a bad frame, 2 when it completes a bad frame that ended in a whole valid DRIVE
 * (*cmd filled: count one bad frame and apply the DRIVE), 0 otherwise. Empty frames (a lone
 * 0x00) are ignored. */
static inline int rover_rx_byte(rover_rx_t *rx, uint8_t byte, rover_drive_t *cmd) {
  if (byte != 0) {
    rx->tail[rx->tail_at] = byte;
    rx->tail_at = (uint8_t)(rx->tail_at + 1 < ROVER_DRIVE_WIRE_LEN ? rx->tail_at + 1 : 0);
    if (rx->count < 0xFF) rx->count++;
    if (rx->overflow) return 0;
    if (rx->len < ROVER_RX_MAX) {
      rx->buf[rx->len++] = byte;
    } else {
      rx->overflow = 1;
    }
    return 0;
  }
  int result = 0;
  if (rx->overflow) {
    result = -1;
  } else if (rx->len > 0) {
    result = rover_parse_drive(rx->buf, rx->len, cmd);
  }
  if (result < 0 && rover_rx_tail(rx, cmd)) result = 2;
  rx->len = 0;
  rx->overflow = 0;
  rx->count = 0;
  return result;
}

#endif /* ROVER_PROTO_H */
