/* rover_avr_harness: the compiled motor-controller firmware in simavr, served on a pty.
 *
 *   rover_avr_harness FIRMWARE.elf [--watch ADDR]... [--stall-at-ms MS --stall-pc ADDR]
 *                     [--no-pace]
 *
 * - Loads the ELF into a simulated ATmega328P at 16 MHz.
 * - Bridges UART0 to a pseudo-terminal of its own (no fixed path: parallel runs never
 *   collide) and prints "PTY /dev/pts/N" as its first line. Bytes from the host enter the
 *   simulated UART one at a time at its baud rate, as on a wire; a simulation running behind
 *   the wall clock (a starved machine) keeps the pauses between the host's writes (up to
 *   2 ms each) instead of delivering its backlog back to back.
 * - Paces simulated time to the wall clock: simavr runs the firmware's busy loop several times
 *   faster than real time, which would make millis(), and so the 250 ms watchdog, race.
 * - Streams events on stdout, one a line, stamped with simulated time in ns since power-on:
 *     T_NS PIN D9 1         a watched pin changed (D5 D7 D8 D9 D10: PWM and direction pins)
 *     T_NS RX 44            a byte from the host started on the wire (hex; in UDR0 a byte
 *                           time later: 11 us at 1 Mbaud in simavr's model)
 *     T_NS TX 53            the firmware wrote a byte to the UART (hex)
 *     T_NS STALL            --stall-at-ms reached: loop() now spins forever
 *     T_NS RESET            the CPU reset (the AVR watchdog fired); the stall is undone
 *     T_NS MEM ADDR 01      a --watch'ed RAM byte changed (ADDR in hex, data space)
 *     T_NS LAG US           pacing fell behind the wall clock by US microseconds (once a second)
 * - --stall-at-ms MS --stall-pc ADDR: at simulated MS, overwrite the instruction at flash byte
 *   address ADDR (the firmware's loop(), from avr-nm) with a jump to itself: a hung main loop,
 *   interrupts still running. The firmware's hardware watchdog must then reset the board.
 * Exits on SIGINT/SIGTERM or when the CPU crashes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "avr_ioport.h"
#include "avr_uart.h"
#include "sim_avr.h"
#include "sim_elf.h"
#include "sim_irq.h"

#define F_CPU_HZ 16000000UL
#define CHECK_EVERY 256          /* instructions between clock/pty checks (~20 us simulated) */
#define AHEAD_SLACK_NS 200000    /* sleep once simulated time leads the wall clock by this */
#define MAX_GAP_NS 2000000ULL    /* the longest pause between host writes kept when behind */
#define TX_BUF 8192
#define RX_RING 16384 /* host bytes waiting for the wire, each with its arrival time */

static volatile sig_atomic_t stop_requested;
static avr_t *avr;
static int pty_master = -1;
/* Single producer (the pty reader thread), single consumer (the simulation): the indices
 * only grow, each written by one side and read by the other with acquire/release. */
static uint8_t rx_ring[RX_RING];
static uint64_t rx_ring_ns[RX_RING]; /* arrival, as simulated ns (wall clock since start) */
static size_t rx_head, rx_tail;
static unsigned long rx_dropped;
static uint64_t wall0;
static int paced = 1;
static int wake_pipe[2] = {-1, -1}; /* the reader thread wakes a pacing sleep through it */
static int uart_xoff;          /* simavr's input FIFO (the wire) is full */
static uint8_t tx_buf[TX_BUF];
static size_t tx_len;
static unsigned long tx_dropped;

#define MAX_WATCH 8
static uint16_t watch_addr[MAX_WATCH];
static int watch_value[MAX_WATCH];
static int n_watch;

static uint64_t sim_ns(void) { return avr->cycle * 1000000000ULL / F_CPU_HZ; }

static uint64_t wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void on_signal(int signum) {
  (void)signum;
  stop_requested = 1;
}

typedef struct {
  char port;
  int bit;
  uint16_t pin_reg; /* PINx in data space: simavr keeps every pin's level there */
  const char *name;
} watched_pin_t;

/* Arduino pin numbers of the ATmega328P (variants/standard) the output stages drive. */
static const watched_pin_t watched[] = {
    {'D', 5, 0x29, "D5"}, {'D', 7, 0x29, "D7"}, {'B', 0, 0x23, "D8"},
    {'B', 1, 0x23, "D9"}, {'B', 2, 0x23, "D10"},
};
#define N_WATCHED (sizeof watched / sizeof watched[0])
static int8_t pin_level[N_WATCHED];
static int pins_dirty;
static avr_cycle_count_t pins_dirty_cycle;

/* A pin IRQ fired: simavr may raise the same pin several times for one change (a port write
 * re-raises every output pin), so note when and report the settled levels after the step. */
static void on_pin(struct avr_irq_t *irq, uint32_t value, void *param) {
  (void)irq;
  (void)value;
  (void)param;
  if (!pins_dirty) pins_dirty_cycle = avr->cycle;
  pins_dirty = 1;
}

static void report_pins(void) {
  uint64_t t_ns = pins_dirty_cycle * 1000000000ULL / F_CPU_HZ;
  for (size_t i = 0; i < N_WATCHED; i++) {
    int8_t level = (avr->data[watched[i].pin_reg] >> watched[i].bit) & 1;
    if (level != pin_level[i]) {
      printf("%" PRIu64 " PIN %s %d\n", t_ns, watched[i].name, level);
      pin_level[i] = level;
    }
  }
  pins_dirty = 0;
}

static void on_uart_out(struct avr_irq_t *irq, uint32_t value, void *param) {
  (void)irq;
  (void)param;
  printf("%" PRIu64 " TX %02x\n", sim_ns(), value & 0xFF);
  if (tx_len < sizeof tx_buf) {
    tx_buf[tx_len++] = (uint8_t)value;
  } else {
    tx_dropped++;
  }
}

static void on_xoff(struct avr_irq_t *irq, uint32_t value, void *param) {
  (void)irq;
  (void)param;
  uart_xoff = value ? 1 : 0;
}

static void on_xon(struct avr_irq_t *irq, uint32_t value, void *param) {
  (void)irq;
  (void)param;
  if (value) uart_xoff = 0;
}

static int open_pty(void) {
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) return -1;
  const char *name = ptsname(master);
  if (!name) return -1;
  /* Keep a slave fd open ourselves, so the master never reads EIO between host opens. */
  int slave = open(name, O_RDWR | O_NOCTTY);
  if (slave < 0) return -1;
  struct termios tio;
  if (tcgetattr(slave, &tio) == 0) {
    cfmakeraw(&tio);
    tcsetattr(slave, TCSANOW, &tio);
  }
  fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
  printf("PTY %s\n", name);
  fflush(stdout);
  return master;
}

/* simavr's time for one byte at the firmware's UART setting (UBRR0, U2X0), as its UART
 * model computes it (start + 8 data + parity + stop bits), so bytes enter at the wire's pace. */
static avr_cycle_count_t uart_cycles_per_byte(void) {
  uint16_t ubrr = (uint16_t)(avr->data[0xC4] | (avr->data[0xC5] << 8));
  avr_cycle_count_t per_bit = (avr_cycle_count_t)(ubrr + 1) * 8;
  if (!(avr->data[0xC0] & 0x02)) per_bit *= 2; /* U2X0 off */
  return per_bit * 11;
}

static avr_cycle_count_t next_feed_cycle;

static int rx_pending(void) {
  return __atomic_load_n(&rx_tail, __ATOMIC_ACQUIRE) != rx_head;
}

/* One host byte onto the wire when the previous one is through (its RX stamp is when it
 * started on the wire; no byte waits in simavr's FIFO unseen). The host's pauses between
 * writes are kept, up to MAX_GAP_NS each: when the simulation runs behind the wall clock (a
 * starved machine) a backlog of a 50 Hz stream then goes in a few milliseconds apart, never
 * back to back (which would overflow the firmware's receive buffer, as no real host does),
 * and the lag does not grow (which keeping the whole 20 ms would do). */
static void feed_uart(avr_irq_t *uart_in) {
  /* Each write's gate counts from when the previous write's first byte went in, as the host's
   * pause counts from its arrival: anchored there, a late write does not delay the next. */
  static uint64_t chunk_arrival_ns, chunk_gate_ns, chunk_fed_ns;
  static int chunk_started;
  if (!rx_pending() || uart_xoff || avr->cycle < next_feed_cycle) return;
  size_t at = rx_head % RX_RING;
  if (rx_ring_ns[at] != chunk_arrival_ns) { /* the first byte of a new host write */
    uint64_t gap = rx_ring_ns[at] - chunk_arrival_ns;
    chunk_gate_ns = chunk_fed_ns + (gap < MAX_GAP_NS ? gap : MAX_GAP_NS);
    chunk_arrival_ns = rx_ring_ns[at];
    chunk_started = 0;
  }
  if (paced && sim_ns() < chunk_gate_ns) return;
  uint8_t byte = rx_ring[at];
  __atomic_store_n(&rx_head, rx_head + 1, __ATOMIC_RELEASE);
  if (!chunk_started) chunk_fed_ns = sim_ns();
  chunk_started = 1;
  printf("%" PRIu64 " RX %02x\n", sim_ns(), byte);
  avr_raise_irq(uart_in, byte);
  next_feed_cycle = avr->cycle + uart_cycles_per_byte();
}

/* The pty reader: stamps the host's bytes with their wall-clock arrival as they come. */
static void *read_pty(void *arg) {
  (void)arg;
  uint8_t buf[512];
  while (!stop_requested) {
    struct pollfd fd = {pty_master, POLLIN, 0};
    if (poll(&fd, 1, 100) <= 0) continue;
    ssize_t n = read(pty_master, buf, sizeof buf);
    if (n <= 0) continue;
    uint64_t t_ns = wall_ns() - wall0;
    size_t tail = rx_tail;
    size_t head = __atomic_load_n(&rx_head, __ATOMIC_ACQUIRE);
    for (ssize_t i = 0; i < n; i++) {
      if (tail - head >= RX_RING) {
        rx_dropped++;
        continue;
      }
      rx_ring[tail % RX_RING] = buf[i];
      rx_ring_ns[tail % RX_RING] = t_ns;
      tail++;
    }
    __atomic_store_n(&rx_tail, tail, __ATOMIC_RELEASE);
    uint8_t one = 1;
    if (write(wake_pipe[1], &one, 1) < 0 && errno != EAGAIN) break; /* wake a pacing sleep */
  }
  return NULL;
}

/* Write the firmware's bytes to the host. */
static void pump_tx(void) {
  if (tx_len > 0) {
    ssize_t n = write(pty_master, tx_buf, tx_len);
    if (n > 0) {
      memmove(tx_buf, tx_buf + n, tx_len - (size_t)n);
      tx_len -= (size_t)n;
    } else if (n < 0 && errno == EAGAIN) {
      tx_dropped += tx_len; /* the host is not reading: a real UART would not wait either */
      tx_len = 0;
    }
  }
}

/* Sleep while simulated time leads the wall clock, waking early when the host writes. */
static void pace(uint64_t *last_lag_report) {
  uint64_t sim = sim_ns();
  uint64_t wall = wall_ns() - wall0;
  if (sim > wall + AHEAD_SLACK_NS) {
    uint64_t ahead = sim - wall;
    struct timespec ts = {(time_t)(ahead / 1000000000ULL), (long)(ahead % 1000000000ULL)};
    struct pollfd fd = {wake_pipe[0], POLLIN, 0};
    if (!rx_pending() && ppoll(&fd, 1, &ts, NULL) > 0) {
      uint8_t drain[64];
      while (read(wake_pipe[0], drain, sizeof drain) > 0) {
      }
    }
  } else if (wall > sim + 5000000ULL && wall - *last_lag_report > 1000000000ULL) {
    printf("%" PRIu64 " LAG %" PRIu64 "\n", sim, (wall - sim) / 1000);
    *last_lag_report = wall;
  }
}

/* Report the --watch'ed RAM bytes that changed in the last step. */
static void check_watches(void) {
  for (int i = 0; i < n_watch; i++) {
    uint8_t v = avr->data[watch_addr[i]];
    if (v != watch_value[i]) {
      printf("%" PRIu64 " MEM %x %02x\n", sim_ns(), watch_addr[i], v);
      watch_value[i] = v;
    }
  }
}

static void usage(const char *prog) {
  fprintf(stderr,
          "usage: %s FIRMWARE.elf [--watch ADDR]... [--stall-at-ms MS --stall-pc ADDR] "
          "[--no-pace]\n",
          prog);
  exit(2);
}

typedef struct {
  const char *elf_path;
  long stall_at_ms; /* -1: never */
  long stall_pc;
} options_t;

static options_t parse_args(int argc, char **argv) {
  options_t o = {NULL, -1, -1};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--stall-at-ms") && i + 1 < argc) {
      o.stall_at_ms = strtol(argv[++i], NULL, 0);
    } else if (!strcmp(argv[i], "--stall-pc") && i + 1 < argc) {
      o.stall_pc = strtol(argv[++i], NULL, 0);
    } else if (!strcmp(argv[i], "--watch") && i + 1 < argc && n_watch < MAX_WATCH) {
      /* avr-nm prints data addresses with the 0x800000 data-space offset */
      watch_addr[n_watch] = (uint16_t)(strtoul(argv[++i], NULL, 0) & 0xFFFF);
      watch_value[n_watch++] = -1;
    } else if (!strcmp(argv[i], "--no-pace")) {
      paced = 0;
    } else if (argv[i][0] == '-' || o.elf_path) {
      usage(argv[0]);
    } else {
      o.elf_path = argv[i];
    }
  }
  if (!o.elf_path || ((o.stall_at_ms >= 0) != (o.stall_pc >= 0))) usage(argv[0]);
  return o;
}

/* The ATmega328P with the firmware loaded; exits with a message if that fails. */
static void load_mcu(const options_t *o, const char *prog) {
  elf_firmware_t fw;
  memset(&fw, 0, sizeof fw);
  if (elf_read_firmware(o->elf_path, &fw) != 0) {
    fprintf(stderr, "rover_avr_harness: error: cannot read %s\n", o->elf_path);
    exit(1);
  }
  avr = avr_make_mcu_by_name("atmega328p");
  if (!avr) {
    fprintf(stderr, "rover_avr_harness: error: this simavr has no atmega328p\n");
    exit(1);
  }
  avr_init(avr);
  fw.frequency = F_CPU_HZ;
  avr_load_firmware(avr, &fw);
  if (o->stall_pc >= 0 && (uint32_t)o->stall_pc + 1 >= avr->flashend) usage(prog);
  for (int i = 0; i < n_watch; i++)
    if (watch_addr[i] > avr->ramend) usage(prog);
}

/* Listen to UART0 (bytes out, its FIFO's XON/XOFF) and the watched pins; returns UART0's input. */
static avr_irq_t *connect_irqs(void) {
  uint32_t flags = 0;
  avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags);
  flags &= ~(uint32_t)(AVR_UART_FLAG_STDIO | AVR_UART_FLAG_POLL_SLEEP);
  avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
  avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT),
                          on_uart_out, NULL);
  avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF),
                          on_xoff, NULL);
  avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON),
                          on_xon, NULL);
  for (size_t i = 0; i < N_WATCHED; i++) {
    pin_level[i] = -1; /* unknown: the first report prints every pin */
    avr_irq_t *irq = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(watched[i].port), watched[i].bit);
    avr_irq_register_notify(irq, on_pin, (void *)&watched[i]);
  }
  return avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
}

typedef struct {
  long pc;
  uint64_t at_ns; /* UINT64_MAX: not (or no longer) due */
  uint8_t saved[2];
  int active;
} stall_t;

/* A hung loop(): the instruction at pc becomes a jump to itself. */
static void stall_begin(stall_t *st) {
  st->saved[0] = avr->flash[st->pc];
  st->saved[1] = avr->flash[st->pc + 1];
  avr->flash[st->pc] = 0xFF; /* rjmp .-2: 0xCFFF, little-endian */
  avr->flash[st->pc + 1] = 0xCF;
  st->active = 1;
  st->at_ns = UINT64_MAX;
  printf("%" PRIu64 " STALL\n", sim_ns());
}

/* The CPU is at its reset vector: report it, undo a stall, step off the vector. */
static void on_reset(stall_t *st) {
  printf("%" PRIu64 " RESET\n", sim_ns());
  pins_dirty_cycle = avr->cycle; /* the reset cleared the port registers */
  report_pins();
  if (st->active) {
    avr->flash[st->pc] = st->saved[0];
    avr->flash[st->pc + 1] = st->saved[1];
    st->active = 0;
  }
  avr_run(avr); /* or the next check would report the same reset again */
}

/* Run until a signal or a crash; returns the CPU's final state. */
static int run(const options_t *o, avr_irq_t *uart_in) {
  stall_t st = {o->stall_pc, o->stall_at_ms >= 0 ? (uint64_t)o->stall_at_ms * 1000000ULL
                                                 : UINT64_MAX,
                {0, 0}, 0};
  uint64_t last_lag_report = 0;
  unsigned count = 0;
  int state = cpu_Running;
  while (!stop_requested && state != cpu_Done && state != cpu_Crashed) {
    state = avr_run(avr);
    if (pins_dirty) report_pins();
    if (n_watch) check_watches();
    if (rx_pending()) feed_uart(uart_in);
    if (avr->pc == 0 && avr->cycle > 0) on_reset(&st);
    if (++count % CHECK_EVERY) continue;
    if (sim_ns() >= st.at_ns) stall_begin(&st);
    pump_tx();
    if (paced) pace(&last_lag_report);
  }
  return state;
}

int main(int argc, char **argv) {
  options_t opts = parse_args(argc, argv);
  load_mcu(&opts, argv[0]);
  avr_irq_t *uart_in = connect_irqs();
  setvbuf(stdout, NULL, _IOLBF, 0); /* each event reaches the reader at once */
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN);
  pty_master = open_pty();
  if (pty_master < 0) {
    fprintf(stderr, "rover_avr_harness: error: cannot open a pty: %s\n", strerror(errno));
    return 1;
  }
  if (pipe2(wake_pipe, O_NONBLOCK) < 0) {
    fprintf(stderr, "rover_avr_harness: error: cannot make a pipe: %s\n", strerror(errno));
    return 1;
  }
  wall0 = wall_ns();
  pthread_t reader;
  if (pthread_create(&reader, NULL, read_pty, NULL) != 0) {
    fprintf(stderr, "rover_avr_harness: error: cannot start the pty reader\n");
    return 1;
  }
  int state = run(&opts, uart_in);
  stop_requested = 1;
  pthread_join(reader, NULL);
  fflush(stdout);
  if (rx_dropped) fprintf(stderr, "rover_avr_harness: %lu host bytes dropped\n", rx_dropped);
  if (tx_dropped) fprintf(stderr, "rover_avr_harness: %lu reply bytes dropped\n", tx_dropped);
  if (state == cpu_Crashed) {
    fprintf(stderr, "rover_avr_harness: error: the firmware crashed at pc 0x%x\n", avr->pc);
    return 1;
  }
  return 0;
}
