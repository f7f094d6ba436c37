/* Servo/ESC pulses from Timer1 on the ATmega328P: pins 9 (OC1A) and 10 (OC1B), 50 Hz.
 *
 * Used instead of <Servo.h>, which Debian's Arduino core does not ship. Timer1 runs free
 * (normal mode, prescaler 8: one tick is 0.5 us at 16 MHz) and each compare unit toggles its
 * pin in hardware on a match, so a pulse edge lands on its tick whatever other interrupt is
 * running; the compare interrupt only schedules the next edge (the fall, or the next frame's
 * rise 20 ms after the last), with at least a millisecond to do it in. A new width takes
 * effect at the next frame. simavr models this mode exactly (unlike fast-PWM mode 14,
 * simavr#579), so the harness's pin recordings are the pulses a board would emit.
 */
#ifndef ROVER_PULSE_H
#define ROVER_PULSE_H

#include <avr/interrupt.h>
#include <avr/io.h>
#include <stdint.h>
#include <util/atomic.h>

#define ROVER_PULSE_TICKS_PER_US (F_CPU / 8 / 1000000UL)
#define ROVER_PULSE_FRAME_TICKS ((uint16_t)(20000UL * ROVER_PULSE_TICKS_PER_US))
#define ROVER_PULSE_NEUTRAL_US 1500
#define ROVER_PULSE_CHANNELS 2

typedef struct {
  uint16_t rise;  /* tick of this frame's rising edge */
  uint16_t width; /* ticks, read at each rise */
  uint8_t high;   /* the pin is in its pulse */
} rover_pulse_channel_t;

static volatile rover_pulse_channel_t rover_pulse_ch[ROVER_PULSE_CHANNELS];

/* Called at each match of a channel: the pin just toggled, program its next edge. */
static inline uint16_t rover_pulse_next_edge(volatile rover_pulse_channel_t *c) {
  if (!c->high) {
    c->high = 1;
    return (uint16_t)(c->rise + c->width);
  }
  c->high = 0;
  c->rise = (uint16_t)(c->rise + ROVER_PULSE_FRAME_TICKS);
  return c->rise;
}

ISR(TIMER1_COMPA_vect) { OCR1A = rover_pulse_next_edge(&rover_pulse_ch[0]); }
ISR(TIMER1_COMPB_vect) { OCR1B = rover_pulse_next_edge(&rover_pulse_ch[1]); }

/* Set channel 0 (pin 9) or 1 (pin 10) to width_half_us half-microseconds (clamped to
 * 2000-4000, i.e. 1000-2000 us) from the next frame: one Timer1 tick each at 16 MHz. */
static inline void rover_pulse_write_half_us(uint8_t channel, uint16_t width_half_us) {
  if (width_half_us < 2000) width_half_us = 2000;
  if (width_half_us > 4000) width_half_us = 4000;
  uint16_t ticks = (uint16_t)(width_half_us * (uint16_t)ROVER_PULSE_TICKS_PER_US / 2u);
  ATOMIC_BLOCK(ATOMIC_RESTORESTATE) { rover_pulse_ch[channel].width = ticks; }
}

/* Start channels 0 .. n_channels-1 (1: pin 9 only; 2: pins 9 and 10) at neutral (1500 us):
 * pins low, first rise 1 ms from now. */
static inline void rover_pulse_begin(uint8_t n_channels) {
  uint8_t pins = n_channels > 1 ? (uint8_t)(_BV(PB1) | _BV(PB2)) : (uint8_t)_BV(PB1);
  ATOMIC_BLOCK(ATOMIC_RESTORESTATE) {
    PORTB &= (uint8_t)~pins;
    DDRB |= pins;
    TCCR1B = 0; /* stop; the Arduino core set it up for analogWrite */
    /* toggle OC1A (and OC1B) on match, normal mode */
    TCCR1A = (uint8_t)(_BV(COM1A0) | (n_channels > 1 ? _BV(COM1B0) : 0));
    TCCR1C = 0;
    TCNT1 = 0;
    uint16_t first = (uint16_t)(1000 * ROVER_PULSE_TICKS_PER_US);
    for (uint8_t i = 0; i < ROVER_PULSE_CHANNELS; i++) {
      rover_pulse_ch[i].rise = first;
      rover_pulse_ch[i].width = (uint16_t)(ROVER_PULSE_NEUTRAL_US * ROVER_PULSE_TICKS_PER_US);
      rover_pulse_ch[i].high = 0;
    }
    OCR1A = first;
    OCR1B = first;
    TIFR1 = _BV(OCF1A) | _BV(OCF1B);
    TIMSK1 = (uint8_t)(_BV(OCIE1A) | (n_channels > 1 ? _BV(OCIE1B) : 0));
    TCCR1B = _BV(CS11); /* prescaler 8 */
  }
}

#endif /* ROVER_PULSE_H */
