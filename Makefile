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

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/vla-demo out=runs/demo

test: setup
	$(BIN)/python -m pytest -q -n 2

clean:
	rm -rf runs outputs .pytest_cache
