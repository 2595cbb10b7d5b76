# Every target creates .venv on first use; re-running only reinstalls when pyproject.toml changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Byte-code caches (and pytest's rewritten test modules) make every later run start faster.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo demo-quick test test-fast bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/singerid demo

demo-quick: $(STAMP)
	$(BIN)/singerid demo --quick

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=20

# What to run while working: everything but the tests marked slow.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not slow' --durations=10

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) runs build *.egg-info
