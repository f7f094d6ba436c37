# Two commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch (pinned here so a fresh machine does not pull a multi-GB CUDA build).
# On a CUDA laptop or a Jetson bring your own: `make demo TORCH_SPEC=` keeps whatever torch
# the venv has, and VENV_FLAGS=--system-site-packages lets the venv see JetPack's torch.
TORCH_SPEC ?= torch==2.13.0
VENV_FLAGS ?=
HEADLESS := SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy

.PHONY: demo test test-fast lint format bench model clean sysdeps firmware replay-reference

# System packages the tests drive for real (an X server and key events for the teleop window,
# the AVR toolchain, Arduino core and simulator for the firmware, Chromium for the web console).
# Installed when missing (Debian, as root, as CI runs); elsewhere the affected tests skip, but in
# CI (CI=true) they fail rather than skip.
SYSDEPS_TOOLS := Xvfb xdotool avr-gcc simavr chromium
SYSDEPS_PKGS := xvfb xdotool gcc-avr avr-libc arduino-core-avr simavr libsimavr-dev \
	chromium chromium-driver iproute2 pkg-config

$(BIN)/rover-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || test -z "$(TORCH_SPEC)" || \
		$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: $(BIN)/rover-installed
	$(BIN)/rover demo

sysdeps:
	@missing=""; for t in $(SYSDEPS_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	test -n "$$missing" || test ! -e /usr/include/simavr/sim_avr.h || \
		test ! -d /usr/share/arduino/hardware/arduino/avr/cores/arduino || exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing system packages for the tests (missing:$$missing)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSDEPS_PKGS) >/dev/null; \
	else echo "warning: missing$$missing; install: apt-get install $(SYSDEPS_PKGS)"; fi

# The motor controller firmware for the ATmega328P (Uno/Nano), both output stages, and the AVR
# harness that runs it in simavr: build/firmware/{esc_servo,hbridge}/rover_mcu.{elf,hex}.
# Flashing a board: drivers/firmware/README.md.
firmware: sysdeps
	$(MAKE) -C drivers/firmware O=$(CURDIR)/build/firmware

# The firmware suite runs against the compiled firmware too: build it first where we can.
test: $(BIN)/rover-installed sysdeps
	if command -v avr-gcc >/dev/null && test -e /usr/include/simavr/sim_avr.h; then \
		$(MAKE) -C drivers/firmware O=$(CURDIR)/build/firmware; fi
	$(BIN)/ruff check .
	$(HEADLESS) $(BIN)/python -m pytest -q

test-fast: $(BIN)/rover-installed
	$(HEADLESS) $(BIN)/python -m pytest -q -m "not slow"

lint: $(BIN)/rover-installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(BIN)/rover-installed
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: $(BIN)/rover-installed
	$(HEADLESS) $(BIN)/rover bench bus
	$(HEADLESS) $(BIN)/rover bench serial
	$(HEADLESS) $(BIN)/rover bench sim

# The bundled steering model through the user's own path, every step a CLI command: record 20
# min of the simulator expert's driving with perturbations it corrects, over the training
# families with repainted materials; train with the defaults; evaluate on the regression suite
# and the 30 held-out worlds; bundle only when both meet the targets (docs/steering.md).
MODEL_RUN ?= runs/model
MODEL_NAMESPACE ?= make-model
model: $(BIN)/rover-installed
	rm -rf $(MODEL_RUN)
	$(HEADLESS) $(BIN)/rover drive --sim forest,open,corridor --model expert --headless \
		--lockstep --duration 1200 --perturb 0.3,0.5 --randomise-materials \
		--record $(MODEL_RUN)/recordings --namespace $(MODEL_NAMESPACE)
	$(HEADLESS) $(BIN)/rover train steering $(MODEL_RUN)/recordings --out $(MODEL_RUN)/steering.pt
	$(HEADLESS) $(BIN)/rover eval --model $(MODEL_RUN)/steering.pt \
		--suite sim/scenarios/regression --straight --out $(MODEL_RUN)/eval
	$(HEADLESS) $(BIN)/rover eval --model $(MODEL_RUN)/steering.pt --only 'heldout_*' \
		--seeds 10 --no-expert --out $(MODEL_RUN)/heldout
	$(HEADLESS) $(BIN)/python -m perception.steering.bundle $(MODEL_RUN)/steering.pt \
		$(MODEL_RUN)/eval/report.json $(MODEL_RUN)/heldout/report.json

# The reference answers that tests/rover/replay/test_replay.py checks every node against: run when a
# change is meant to move an answer (the diff of the old and new reference is the review).
REPLAY_FIXTURES = tests/fixtures/replay
replay-reference: $(BIN)/rover-installed
	$(HEADLESS) $(BIN)/rover replay $(REPLAY_FIXTURES)/session --update-reference $(REPLAY_FIXTURES)/reference

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build/firmware
