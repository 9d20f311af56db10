# Quick start: `make run` (main job on embedded defaults) and `make test` (whole suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint sysdeps bench clean

$(BIN)/firelink: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# System packages the tests drive for real: Mosquitto, headless Chromium, ffmpeg.
sysdeps:
	@bash scripts/sysdeps.sh

run: $(BIN)/firelink
	$(BIN)/firelink run

test: $(BIN)/firelink sysdeps
	$(BIN)/python -m pytest

lint: $(BIN)/firelink
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(BIN)/firelink
	$(BIN)/python bench/alarm_latency.py

clean:
	rm -rf $(VENV) var build *.egg-info
