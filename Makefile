# sensorpub: `make demo` for the quick start, `make test` for the whole suite.
VENV     ?= .venv
PY       := $(VENV)/bin/python
SP       := $(VENV)/bin/sensorpub
FLEET    ?= demo
DEVICE   ?= dev1
BOARD    ?=
PORT     ?=
PYTEST_ARGS ?=
# tests mostly wait on boards, brokers and timeouts: run them in parallel (pytest-xdist); 1 runs serially.
# worksteal: a worker that runs out takes tests queued on a busy one (plain 'load' left one worker running
# its last five board tests in a row while the others stood idle)
# 12: most of a test is waiting on a board's timers; 16 overloads 2 cores (slower, and timing tests fail)
PYTEST_WORKERS ?= 12
# real umqtt.simple copies (versions/<X.Y.Z>/umqtt/simple.py): the firmware suite runs against each
UMQTT_VERSIONS ?= $(abspath $(wildcard ../shared/umqtt-simple/versions))
export UMQTT_VERSIONS
# a run starts ~1,500 Python processes (commands, supervisors, mpremote) and a dozen pytest workers: with
# PYTHONDONTWRITEBYTECODE set (some CI images set it) each one compiles our modules from source again and
# every worker re-rewrites the tests' asserts (3 s each). Caches go to __pycache__/, which git ignores.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup test test-deps chaos bench demo flash flash-micropython typecheck clean mosquitto

setup: $(VENV)/.installed mosquitto

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# the tests' system packages: a real PostgreSQL server (the store) and headless Chromium (the report)
test-deps:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing postgresql and chromium with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql chromium >/dev/null; \
	else \
		echo "make test needs PostgreSQL and Chromium: sudo apt-get install postgresql chromium"; exit 1; \
	fi

# Mosquitto comes from the system: installed with apt when we are root on Debian/Ubuntu.
mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing mosquitto with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients openssl >/dev/null; \
	else \
		echo "mosquitto is missing: install it (Debian/Ubuntu: sudo apt-get install mosquitto mosquitto-clients; macOS: brew install mosquitto)"; exit 1; \
	fi

# first one collection (compiles our modules and rewrites the tests' asserts into __pycache__), so the
# workers load those instead of all doing it at once on a fresh checkout (~3 s of CPU each)
test: setup test-deps
	@$(PY) -m compileall -q host_tools tools tests >/dev/null; $(PY) -m pytest -q --collect-only -p no:xdist >/dev/null 2>&1 || true
	$(PY) -m pytest -q $(if $(filter-out 1,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist worksteal) $(PYTEST_ARGS)

# the full chaos suite (make test runs it shortened): 10 broker kills, 20 power cuts, a dead link; figures printed
chaos: setup
	CHAOS_FULL=1 $(PY) -m pytest -q -s tests/test_chaos.py $(PYTEST_ARGS)

bench: setup
	$(PY) tools/bench.py

typecheck: setup
	$(PY) tools/typecheck.py

# Real hardware. 1) stock MicroPython onto the ESP32 (download the .bin for your board from
# micropython.org/download first); 2) sensorpub firmware, credentials and config.
flash-micropython: setup
	@[ -n "$(PORT)" ] && [ -n "$(FIRMWARE)" ] || { echo "usage: make flash-micropython PORT=/dev/ttyUSB0 FIRMWARE=ESP32_GENERIC-xxx.bin [CHIP=esp32]"; exit 2; }
	$(VENV)/bin/pip install -q esptool
	$(VENV)/bin/esptool.py --chip $(or $(CHIP),esp32) --port $(PORT) erase_flash
	$(VENV)/bin/esptool.py --chip $(or $(CHIP),esp32) --port $(PORT) --baud 460800 write_flash -z $(if $(filter esp32,$(or $(CHIP),esp32)),0x1000,0) $(FIRMWARE)

flash: setup
	@[ -n "$(PORT)" ] || { echo "usage: make flash PORT=/dev/ttyUSB0 DEVICE=dev1 BROKER=192.168.1.10 SSID=home [BOARD=esp32_generic]"; exit 2; }
	@[ -f certs/$(FLEET)/devices/$(DEVICE)/client.der ] || $(SP) pki device $(DEVICE) --fleet $(FLEET)
	$(SP) flash --fleet $(FLEET) --port $(PORT) --device $(DEVICE) $(if $(BOARD),--board $(BOARD)) --mpy \
		--broker-host $(or $(BROKER),localhost) $(if $(SSID),--wifi-ssid $(SSID))

clean:
	rm -rf run build .pytest_cache .mypy_cache

# The quick start: PKI, broker, virtual board, flash, verify 3 readings (listening before the board
# starts, so seq 0 is among them), then stop what it started. DEMO_PORT: another port if 8883 is taken.
DEMO_PORT ?= 8883
demo: setup
	@echo "== PKI for fleet $(FLEET), device $(DEVICE)"
	@[ -f certs/$(FLEET)/ca/ca.pem ] || $(SP) pki init --fleet $(FLEET)
	@[ -f certs/$(FLEET)/server/server.pem ] || $(SP) pki server --fleet $(FLEET)
	@[ -f certs/$(FLEET)/verifier/verifier.pem ] || $(SP) pki verifier --fleet $(FLEET)
	@[ -f certs/$(FLEET)/devices/$(DEVICE)/client.der ] || $(SP) pki device $(DEVICE) --fleet $(FLEET)
	@echo "== broker, virtual board, flash, verify"
	@$(SP) broker start --fleet $(FLEET) --port $(DEMO_PORT) || exit 1; \
	 trap '$(SP) vboard stop --fleet $(FLEET) >/dev/null; $(SP) broker stop --fleet $(FLEET) >/dev/null; echo "== stopped the broker and the virtual board"' EXIT; \
	 $(SP) vboard start --fleet $(FLEET) --erase || exit 1; \
	 $(SP) verify --fleet $(FLEET) --device $(DEVICE) --count 3 --timeout 60 & verifier=$$!; \
	 $(SP) flash --fleet $(FLEET) --port vboard --device $(DEVICE) --board unix --interval 3 || { kill $$verifier; exit 1; }; \
	 wait $$verifier || exit 1; \
	 echo "== the board's console:" && $(SP) console --fleet $(FLEET) --port vboard -n 8
