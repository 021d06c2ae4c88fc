# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv first if it is absent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench pi-check clean-venv

# Pinned versions (requirements/lock.txt: resolved from pyproject.toml's train and dev extras, measured
# together in ../shared/docs/STACK.md), then edgekd itself in editable mode without re-resolving.
$(STAMP): pyproject.toml requirements/lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/lock.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edgekd demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# ruff (pyproject.toml: line length 120): CI runs `make lint` before the tests; `make format` rewrites in place.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Heavy measurements for benchmarks/RESULTS.md; not part of `make test`.
bench: $(STAMP)
	$(BIN)/python benchmarks/spine.py
	$(BIN)/python benchmarks/stream.py
	$(BIN)/python benchmarks/frontier.py
	$(BIN)/python benchmarks/methods.py
	$(BIN)/python benchmarks/loso.py
	$(BIN)/python benchmarks/kernels.py

# The device profile on emulated 64-bit ARM Debian (Raspberry Pi OS's base): builds a bookworm arm64 root file
# system once (cached in ~/.cache/edgekd/pi), installs edgekd there as README tells a Pi user, checks bench and
# stream against the host. Needs root (chroot, binfmt_misc). Measured: cold 11 minutes, warm 1.5.
pi-check: $(STAMP)
	bash scripts/pi-check.sh
	$(BIN)/python benchmarks/results_md.py PI benchmarks/out/pi-check.md

clean-venv:
	rm -rf $(VENV)
