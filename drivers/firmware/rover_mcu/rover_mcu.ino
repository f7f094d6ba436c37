// Rover motor controller: DRIVE frames in over USB serial, PWM out, STATE frames back.
//
// Protocol and behaviour: drivers/firmware/README.md. The logic lives in rover_logic.h
// (shared with host tests); this sketch only wires it to the serial port and the pins.
// Boards: Arduino Nano/Uno (ATmega328P: pulses from our own Timer1 driver, rover_pulse.h),
// RP2040 (arduino-pico) and anything else whose core has Servo.h.

#include <Arduino.h>

#if defined(__AVR_ATmega328P__)
#include <avr/wdt.h>

#include "rover_pulse.h"
#define ROVER_TIMER1_PULSES
#else
#include <Servo.h>
#endif

#include "rover_logic.h"
#include "rover_proto.h"

// ---- configuration (edit here or pass -D flags) ----
#ifndef ROVER_BAUD
#define ROVER_BAUD 1000000  // exact on a 16 MHz ATmega; USB CDC boards ignore it
#endif
#ifndef ROVER_WATCHDOG_MS
#define ROVER_WATCHDOG_MS 250  // zero the motors after this long without a valid DRIVE
#endif
// Output stage: an RC ESC + steering servo (default) or a brushed motor on an H-bridge
// (L298N/TB6612-style: one PWM pin, two direction pins) + steering servo.
#if !defined(ROVER_OUTPUT_ESC_SERVO) && !defined(ROVER_OUTPUT_HBRIDGE)
#define ROVER_OUTPUT_ESC_SERVO
#endif
#define PIN_STEERING_SERVO 9
#if defined(ROVER_OUTPUT_ESC_SERVO)
#define PIN_ESC 10
#else
#define PIN_HBRIDGE_PWM 5
#define PIN_HBRIDGE_IN1 7
#define PIN_HBRIDGE_IN2 8
#endif
#define SERVO_MIN_US 1000
#define SERVO_MAX_US 2000
#if SERVO_MAX_US - SERVO_MIN_US != 1000
#error "milli_to_half_us assumes a 1000 us range"
#endif
// Pulse channels: 0 steering servo (pin 9), 1 ESC (pin 10).
#if defined(ROVER_OUTPUT_ESC_SERVO)
#define PULSE_CHANNELS 2
#else
#define PULSE_CHANNELS 1
#endif

static rover_mcu_t mcu;
#if defined(__AVR__)
// The AVR harness's driver (drivers/avr_sim.py) watches mcu.tripped by its address: keep it here.
static_assert(offsetof(rover_mcu_t, tripped) == 19, "update TRIPPED_OFFSET in drivers/avr_sim.py");
#endif

#if defined(ROVER_TIMER1_PULSES)
// The AVR's own watchdog resets the board if loop() ever stops running (a hang, a stuck
// peripheral): after a reset the pins float (no pulses: an ESC's signal-loss failsafe), then
// setup() starts them at neutral. loop() takes microseconds, so 120 ms is a wide margin.
#ifndef ROVER_HW_WATCHDOG
#define ROVER_HW_WATCHDOG WDTO_120MS
#endif
// After a watchdog reset the watchdog stays on at its shortest timeout: turn it off before
// the core's init() runs, or the board resets again and again (avr-libc's recipe).
extern "C" void rover_wdt_off(void) __attribute__((naked, used, section(".init3")));
extern "C" void rover_wdt_off(void) {
  MCUSR = 0;
  wdt_disable();
}

static void pulses_begin() { rover_pulse_begin(PULSE_CHANNELS); }
// Half-microseconds: Timer1's tick, so each thousandth of the command is its own width.
static void pulse_write(uint8_t channel, int half_us) {
  rover_pulse_write_half_us(channel, (uint16_t)half_us);
}
#else
static Servo servos[PULSE_CHANNELS];
static const uint8_t servo_pins[2] = {PIN_STEERING_SERVO, 10};

static void pulses_begin() {
  for (uint8_t i = 0; i < PULSE_CHANNELS; i++) {
    servos[i].attach(servo_pins[i], SERVO_MIN_US, SERVO_MAX_US);
    servos[i].writeMicroseconds((SERVO_MIN_US + SERVO_MAX_US) / 2);
  }
}
static void pulse_write(uint8_t channel, int half_us) {
  servos[channel].writeMicroseconds(half_us / 2);
}
#endif
// What the pins currently drive; -32768 is outside [-1000, 1000], so the first apply writes.
static int16_t written_steering = -32768;
static int16_t written_throttle = -32768;

// Thousandths in [-1000, 1000] to a servo pulse in half-microseconds: -1000 -> 1000 us,
// 0 -> 1500 us, 1000 -> 2000 us; one thousandth is half a microsecond (no division needed).
static int milli_to_half_us(int16_t milli) { return SERVO_MIN_US + SERVO_MAX_US + milli; }

static void write_throttle(int16_t milli) {
#if defined(ROVER_OUTPUT_ESC_SERVO)
  pulse_write(1, milli_to_half_us(milli));
#else
  // Zero coasts (both inputs low); the sign picks the direction.
  digitalWrite(PIN_HBRIDGE_IN1, milli > 0 ? HIGH : LOW);
  digitalWrite(PIN_HBRIDGE_IN2, milli < 0 ? HIGH : LOW);
  long duty = (long)(milli < 0 ? -milli : milli) * 255 / 1000;
  analogWrite(PIN_HBRIDGE_PWM, (int)duty);
#endif
}

// Push the logic's outputs to the pins, only when they changed (servo writes are not free).
static void apply_outputs() {
  if (mcu.steering != written_steering) {
    pulse_write(0, milli_to_half_us(mcu.steering));
    written_steering = mcu.steering;
  }
  if (mcu.throttle != written_throttle) {
    write_throttle(mcu.throttle);
    written_throttle = mcu.throttle;
  }
}

// A STATE is 18 bytes against a DRIVE's 12, so commands arriving back to back outrun their
// replies. Waiting for room in the transmit buffer would stop loop() reading, and the receive
// buffer would overflow and lose commands; so a reply that does not fit is dropped instead (the
// host counts it lost) and the newest command is always applied.
static void send_reply(const uint8_t *reply, size_t n) {
#if defined(ROVER_TIMER1_PULSES)
  if ((size_t)Serial.availableForWrite() < n) return;
#endif
  Serial.write(reply, n);
}

void setup() {
  rover_init(&mcu, ROVER_WATCHDOG_MS);
  // An RC ESC arms only after it has seen neutral (1500 us) for a moment: start there.
  pulses_begin();
#if defined(ROVER_OUTPUT_HBRIDGE)
  pinMode(PIN_HBRIDGE_PWM, OUTPUT);
  pinMode(PIN_HBRIDGE_IN1, OUTPUT);
  pinMode(PIN_HBRIDGE_IN2, OUTPUT);
#endif
  apply_outputs();
  Serial.begin(ROVER_BAUD);
#if defined(ROVER_TIMER1_PULSES)
  wdt_enable(ROVER_HW_WATCHDOG);
#endif
}

void loop() {
  uint8_t reply[ROVER_TX_MAX];
  // One clock reading per pass, not per byte: at 1 Mbaud a byte comes every 160 cycles and the
  // core's receive interrupt takes half of them, so the per-byte path must stay short.
  // At most a receive buffer's worth per pass, so a host that floods the port cannot keep
  // loop() from ticking the watchdogs.
  uint32_t now_ms = millis();
  for (uint8_t i = 0; i < 64; i++) {
    int c = Serial.read();
    if (c < 0) break;
    size_t n = rover_feed(&mcu, (uint8_t)c, now_ms, reply);
    if (n > 0) {
      // Outputs first, so the STATE reports what the pins really drive.
      apply_outputs();
      send_reply(reply, n);
    }
  }
  rover_tick(&mcu, millis());
  apply_outputs();
#if defined(ROVER_TIMER1_PULSES)
  wdt_reset();
#endif
}
