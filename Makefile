# Two commands for a newcomer:  `make dev` (run everything locally) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install tools dev test check lint generate generate-check kafka-start kafka-stop clean

# Command-line tools from the Go module proxy, pinned, installed into the venv's bin/.
GRPCURL_VERSION := v1.9.4
GRPCURL := $(BIN)/grpcurl

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,bench,tracing]'
	touch $(STAMP)

install: $(STAMP)

$(GRPCURL): | $(STAMP)
	@command -v go >/dev/null || { echo "go is required to install grpcurl (Go module proxy)"; exit 1; }
	GOBIN=$(abspath $(BIN)) go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

tools: $(GRPCURL)

## Start broker, topics, processor and gateway in the foreground; Ctrl-C stops everything.
dev: $(STAMP)
	$(BIN)/prgate dev

## Everything CI checks: generated code current, buf, ruff, mypy, then the tests against a real broker.
test: check tools
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
