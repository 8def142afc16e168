# Two commands for a newcomer:  `make dev` (run everything locally) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install tools debian-packages dev test check lint generate generate-check kafka-start kafka-stop clean image

# Command-line tools from the Go module proxy, pinned, installed into the venv's bin/.
GRPCURL_VERSION := v1.9.4
GRPCURL := $(BIN)/grpcurl
# promtool (`promtool check metrics`, tests/e2e/test_observability.py): Prometheus' Go module
# version v0.316.0 is Prometheus 3.x's promtool; built from the module proxy (~1 min).
PROMETHEUS_MODULE_VERSION := v0.316.0
PROMTOOL := $(BIN)/promtool
# ghz: the benchmark's Go load generator (bench/ghz.py).
GHZ_VERSION := v0.121.0
GHZ := $(BIN)/ghz

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,bench,tracing,archive]'
	touch $(STAMP)

install: $(STAMP)

$(GRPCURL): | $(STAMP)
	@command -v go >/dev/null || { echo "go is required to install grpcurl (Go module proxy)"; exit 1; }
	GOBIN=$(abspath $(BIN)) go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

$(PROMTOOL): | $(STAMP)
	@command -v go >/dev/null || { echo "go is required to install promtool (Go module proxy)"; exit 1; }
	GOBIN=$(abspath $(BIN)) go install github.com/prometheus/prometheus/cmd/promtool@$(PROMETHEUS_MODULE_VERSION)

$(GHZ): | $(STAMP)
	@command -v go >/dev/null || { echo "go is required to install ghz (Go module proxy)"; exit 1; }
	GOBIN=$(abspath $(BIN)) go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)

# Debian packages the tests use, installed with apt-get when missing (sudo unless root):
# kcat (the README's kcat recipe, tests/e2e/test_decode.py), iproute2 (ip, tc), curl (Connect tests),
# nftables (nft: the network fault tests, tests/faults/netns.py).
DEBIAN_PACKAGES := kcat iproute2 curl nftables

debian-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing; \
	fi

tools: $(GRPCURL) $(PROMTOOL) $(GHZ) debian-packages

## Start broker, topics, processor and gateway in the foreground; Ctrl-C stops everything.
dev: $(STAMP)
	$(BIN)/prgate dev

## Everything CI checks: generated code current, buf, ruff, mypy, then the tests against a real
## broker; the `cluster` tests (broker faults, tests/faults/test_cluster_faults.py) start a local
## three-node cluster when they are reached. PRGATE_TEST_BROKERS=3 runs everything on the cluster.
test: check tools
	$(BIN)/python -m pytest

check: $(STAMP)
	$(BIN)/python scripts/check.py

generate: $(STAMP)
	$(BIN)/python scripts/generate.py

## The container image (deploy/Containerfile) as localhost/prgate:latest, with podman; installs
## podman, runc and debootstrap (apt-get) when missing and makes the Debian base once (README: Deployment).
image:
	deploy/image.sh build

kafka-start: $(STAMP)
	$(BIN)/prgate kafka start

kafka-stop: $(STAMP)
	$(BIN)/prgate kafka stop

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
