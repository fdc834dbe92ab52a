# signalbus — make targets. Run `make help` for the list.
GO        ?= go
PKGS      ?= ./...
BENCHTIME ?= 1s
COUNT     ?= 6

.PHONY: help test lint bench bench-cluster fuzz demo build clean dashboards prometheus

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

test: lint prometheus ## gofmt, go vet, then every test with the race detector (the dashboards module too)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	cd dashboards && $(GO) vet ./... && CI=1 $(GO) test -race -count=1 -timeout 15m ./...

dashboards: ## regenerate dashboards/*.json from the Go code in dashboards/
	cd dashboards && $(GO) generate ./...

prometheus: ## install Debian's prometheus (with promtool) when absent: the dashboards test runs it
	@command -v promtool >/dev/null 2>&1 || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y --no-install-recommends prometheus; }

lint: ## gofmt and go vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

bench: ## throughput and routing benchmarks (signals/s and the ratio to a raw channel, same run)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(COUNT) ./bus/ | tee bench.txt
	$(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da bench.txt

# Every fuzz target, as package:Target; `make fuzz` runs each for FUZZTIME.
FUZZ_TARGETS = ./bus:FuzzUnmarshalJSON ./bus:FuzzSignalType ./bus:FuzzPatternMatch \
	./cluster/internal/wire:FuzzDecode ./cluster/internal/wire:FuzzDecodeBatch \
	./cluster/internal/wire:FuzzPercentEncoding

bench-cluster: ## cross-node benchmarks (fast, durable, paced latency) against raw NATS measured in the same run
	$(GO) test ./cluster -run '^$$' -bench 'CrossNode|Durable' -benchtime 3s -count 2 | tee bench-cluster.txt
	$(GO) test ./cluster -run '^$$' -bench PacedLatency -benchtime 20000x -count 2 | tee -a bench-cluster.txt

fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== $$t"; \
		$(GO) test $${t%%:*} -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $${FUZZTIME:-30s}; \
	done

demo: ## the main job: a three-node cluster through an isolation, with the verdict (demo --local: the in-process bus)
	$(GO) run ./cmd/signalbus demo

build: ## the signalbus binary, static, in bin/
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=auto -o bin/signalbus ./cmd/signalbus

clean:
	rm -rf bin bench.txt bench-cluster.txt
