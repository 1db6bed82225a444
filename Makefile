# sensorpub: `make demo` for the quick start, `make test` for the whole suite.
VENV     ?= .venv
PY       := $(VENV)/bin/python
SP       := $(VENV)/bin/sensorpub
FLEET    ?= demo
DEVICE   ?= dev1
BOARD    ?= esp32_generic
PORT     ?=
PYTEST_ARGS ?=

.PHONY: setup test bench demo flash flash-micropython typecheck mpy-check clean mosquitto

setup: $(VENV)/.installed mosquitto

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# Mosquitto comes from the system: installed with apt when we are root on Debian/Ubuntu.
mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing mosquitto with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; \
	else \
		echo "mosquitto is missing: install it (Debian/Ubuntu: sudo apt-get install mosquitto mosquitto-clients; macOS: brew install mosquitto)"; exit 1; \
	fi

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf run build .pytest_cache .mypy_cache
