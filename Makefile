# signalbus — make targets. Run `make help` for the list.
GO        ?= go
PKGS      ?= ./...
BENCHTIME ?= 1s
COUNT     ?= 6

.PHONY: help test lint bench fuzz demo build clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

test: lint ## gofmt, go vet, then every test with the race detector
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

lint: ## gofmt and go vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

bench: ## throughput and routing benchmarks (signals/s and the ratio to a raw channel, same run)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(COUNT) ./bus/ | tee bench.txt
	$(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da bench.txt

fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	$(GO) test ./bus -run '^$$' -fuzz '^FuzzUnmarshalJSON$$' -fuzztime $${FUZZTIME:-30s}
	$(GO) test ./bus -run '^$$' -fuzz '^FuzzPatternMatch$$' -fuzztime $${FUZZTIME:-30s}

demo: ## the main job: an in-process bus with a live summary, totals and spans
	$(GO) run ./cmd/signalbus demo

build: ## the signalbus binary, static, in bin/
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/signalbus ./cmd/signalbus

clean:
	rm -rf bin bench.txt
