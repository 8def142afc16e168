# Two commands for a newcomer:  `make dev` (run everything locally) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install dev test check lint generate generate-check kafka-start kafka-stop clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start broker, topics, processor and gateway in the foreground; Ctrl-C stops everything.
dev: $(STAMP)
	$(BIN)/prgate dev

## Everything CI checks: generated code current, buf, ruff, mypy, then the tests against a real broker.
test: check
	$(BIN)/python -m pytest

check: $(STAMP)
	$(BIN)/python scripts/check.py

generate: $(STAMP)
	$(BIN)/python scripts/generate.py

kafka-start: $(STAMP)
	$(BIN)/prgate kafka start

kafka-stop: $(STAMP)
	$(BIN)/prgate kafka stop

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
