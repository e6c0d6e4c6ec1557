# Two entry points do all set-up on a fresh Debian 12 machine (root or sudo):
#   make demo   install everything, then train -> compile -> run the C on the Fashion-MNIST test set
#   make test   install everything, then run the test suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := gcc make gcc-arm-none-eabi libnewlib-arm-none-eabi binutils-arm-none-eabi \
	qemu-system-arm dataset-fashion-mnist python3-venv
DEMO_DIR ?= runs/demo

.PHONY: setup apt venv demo test lint clean

setup: .stamp-apt $(VENV)/.stamp-install

.stamp-apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi
	@touch $@

# The pinned CPU torch goes in first: an unpinned torch would pull several GB of CUDA packages.
$(VENV)/.stamp-install: pyproject.toml .stamp-apt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,peers]'
	@touch $@

demo: setup
	$(VENV)/bin/mcuformer demo --out $(DEMO_DIR)

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy mcuformer codegen search
	git ls-files 'firmware/*.[ch]' | xargs $(VENV)/bin/clang-format --dry-run -Werror

clean:
	rm -rf $(VENV) .stamp-apt build runs
