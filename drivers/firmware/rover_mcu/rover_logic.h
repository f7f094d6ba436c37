/* Rover MCU logic: arming, e-stop latch, watchdog, STATE replies. No hardware access.
 *
 * drivers/emulator.py (FirmwareEmulator) is the Python twin of this file; a test compiles
 * this header on the host and checks both give the same replies and outputs.
 */
#ifndef ROVER_LOGIC_H
#define ROVER_LOGIC_H

#include <string.h>

#include "rover_proto.h"

typedef struct {
  uint32_t watchdog_ms;
  uint32_t last_drive_ms;
  uint16_t seq;        /* last DRIVE accepted */
  uint16_t bad_frames; /* wraps, like the STATE field */
  int16_t steering;    /* applied, thousandths */
  int16_t throttle;
  uint8_t armed;
  uint8_t estop;         /* latched until the arm flag rises again */
  uint8_t prev_arm;      /* arm flag of the previous DRIVE, to see it rise */
  uint8_t tripped;       /* watchdog: outputs held at zero until the next DRIVE */
  uint8_t trip_reported; /* the next STATE tells the host about a trip */
  rover_rx_t rx;
} rover_mcu_t;

static inline void rover_init(rover_mcu_t *m, uint32_t watchdog_ms) {
  memset(m, 0, sizeof *m);
  m->watchdog_ms = watchdog_ms;
  m->tripped = 1; /* no command yet: motors at zero, nothing to report */
  m->trip_reported = 1;
}

static inline int16_t rover_clamp(int16_t milli) {
  return milli > 1000 ? 1000 : (milli < -1000 ? -1000 : milli);
}

/* Call often (every loop): zeroes the outputs once no valid DRIVE came for watchdog_ms. */
static inline void rover_tick(rover_mcu_t *m, uint32_t now_ms) {
  if (!m->tripped && (uint32_t)(now_ms - m->last_drive_ms) >= m->watchdog_ms) {
    m->tripped = 1;
    m->trip_reported = 0;
    m->steering = 0;
    m->throttle = 0;
  }
}

static inline void rover_on_drive(rover_mcu_t *m, const rover_drive_t *cmd, uint32_t now_ms) {
  uint8_t arm = (cmd->flags & ROVER_FLAG_ARM) ? 1 : 0;
  m->seq = cmd->seq;
  m->last_drive_ms = now_ms;
  m->tripped = 0;
  if (cmd->flags & ROVER_FLAG_ESTOP) {
    m->estop = 1;
    m->armed = 0;
  } else if (arm) {
    if (!m->prev_arm) m->estop = 0; /* a rising arm flag is the explicit re-arm */
    m->armed = !m->estop;
  } else {
    m->armed = 0;
  }
  m->prev_arm = arm;
  m->steering = m->armed ? rover_clamp(cmd->steering) : 0;
  m->throttle = m->armed ? rover_clamp(cmd->throttle) : 0;
}

/* Feed one received byte at now_ms. When it completes a valid DRIVE, apply it and write the
 * STATE reply into out (ROVER_TX_MAX bytes); returns the reply's length, else 0. */
static inline size_t rover_feed(rover_mcu_t *m, uint8_t byte, uint32_t now_ms, uint8_t *out) {
  rover_drive_t cmd = {0, 0, 0, 0}; /* filled only for a valid DRIVE; zeroed for -Wall */
  int result = rover_rx_byte(&m->rx, byte, &cmd);
  if (result < 0 || result == 2) m->bad_frames++; /* 2: a bad frame, then a DRIVE in its tail */
  if (result <= 0) return 0;
  rover_on_drive(m, &cmd, now_ms);
  rover_state_t state;
  state.seq = m->seq;
  state.status = (uint8_t)((m->armed ? ROVER_STATUS_ARMED : 0) |
                           (m->trip_reported ? 0 : ROVER_STATUS_WATCHDOG) |
                           (m->estop ? ROVER_STATUS_ESTOP : 0));
  state.steering = m->steering;
  state.throttle = m->throttle;
  state.bad_frames = m->bad_frames;
  state.uptime_ms = now_ms;
  m->trip_reported = 1;
  return rover_encode_state(&state, out);
}

#endif /* ROVER_LOGIC_H */
