# Quick start: `make demo` (record -> train -> evaluate) and `make test`. Each sets itself up.
SHELL := /bin/bash
PYTHON ?= python3.12
VENV := .venv
BIN := $(VENV)/bin
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: setup demo test system-deps clean

# MuJoCo renders offscreen through EGL (Mesa on a CPU machine). Install it only where it is missing.
system-deps:
	@if ! ldconfig -p | grep -q 'libEGL.so.1'; then \
		echo "installing Mesa EGL (libegl1, libgl1-mesa-dri)"; \
		apt-get update -qq && apt-get install -y -qq libegl1 libgl1-mesa-dri libgles2; \
	fi

setup: system-deps $(VENV)/.installed

# openpi's robot client, for the test that drives vla-serve with it. Installed without its dependencies: its
# metadata pins numpy<2 (lerobot needs numpy 2), while the client itself uses only msgpack, websockets and
# numpy calls that numpy 2 keeps. The one version pin of the test tools that pyproject.toml cannot hold.
OPENPI_CLIENT := openpi-client==0.1.2

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps $(OPENPI_CLIENT)
	touch $@

demo: setup
	$(BIN)/vla-demo out=runs/demo

# worksteal: a worker left idle takes queued tests from the other, so the few multi-minute tests (benchmarks run end
# to end) do not end up queued behind each other on one worker (on a 2-core AVX2 CPU: 16:47 with the default
# distribution, 14:04 with worksteal, one run each, session 57)
test: setup
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

clean:
	rm -rf runs outputs .pytest_cache
