# Kairos. `make help` lists the targets.
GO      ?= go
BIN     := bin/kairos
# Packages whose code runs goroutines concurrently get -race in `make test`.
RACE_PKGS ?= ./state/... ./p2p/... ./node/... ./runtime/exec/... ./runtime/vm/... ./sdk/... ./internal/sdktest/...
FUZZTIME ?= 30s
EXEC_SEEDS ?= 2000

.PHONY: help build contracts wabt wat wat-check test check fuzz bench long run demo sim exec-soak clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: contracts ## build bin/kairos (and the example modules)
	$(GO) build -o $(BIN) ./cmd/kairos

# Go example modules (contracts/<name>/main.go) built to bin/contracts/<name>.wasm;
# contracts/counter_wat/counter.wasm and contracts/token_wat/token.wasm are
# committed, rebuilt by `make wat` and checked by `make check` (see below).
CONTRACTS := $(patsubst contracts/%/main.go,%,$(wildcard contracts/*/main.go))

contracts: ## build the Go example modules to bin/contracts/*.wasm (wasip1, c-shared)
	@mkdir -p bin/contracts
	@echo $(CONTRACTS) | tr ' ' '\n' | xargs -P 2 -I{} env GOOS=wasip1 GOARCH=wasm \
	  $(GO) build -buildmode=c-shared -o bin/contracts/{}.wasm ./contracts/{}

# The WAT modules' committed .wasm must be what their .wat builds to; wabt comes
# from Debian (bookworm: 1.0.32, the version that built them), installed here
# when missing so a fresh machine needs nothing by hand.
WAT  := $(wildcard contracts/*_wat/*.wat)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

wabt: ## install wat2wasm (Debian package wabt) if it is missing
	@command -v wat2wasm >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wabt >/dev/null; } \
	  || echo "WARNING: could not install wabt (apt-get failed)"

wat: wabt ## rebuild the committed WAT modules' .wasm from their .wat
	@for f in $(WAT); do echo "wat2wasm $$f"; wat2wasm $$f -o $${f%.wat}.wasm || exit 1; done

# Without wabt (no apt on this machine) the check says loudly that it did not
# run rather than failing every other check with it.
wat-check: wabt ## fail if a committed WAT module's .wasm differs from what its .wat builds to
	@if ! command -v wat2wasm >/dev/null; then echo "WARNING: wat-check NOT RUN: no wat2wasm"; exit 0; fi; \
	tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; for f in $(WAT); do \
	  wat2wasm $$f -o $$tmp/out.wasm || exit 1; \
	  cmp -s $$tmp/out.wasm $${f%.wat}.wasm || { echo "$${f%.wat}.wasm is stale: run make wat"; exit 1; }; \
	done

test: ## run the whole test suite (race detector on concurrent packages)
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -race $(RACE_PKGS)

check: wat-check ## gofmt, go vet, go mod tidy diff, dependency rules, committed WAT builds
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(GO) test -count=1 ./internal/depcheck/
	@if command -v staticcheck >/dev/null; then staticcheck ./...; fi

fuzz: ## run every fuzz target for FUZZTIME each
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg || exit 1; \
	  done; done

# STATE_BENCH_FLAGS scales the state benchmark (defaults: 1M keys, 10k-key
# blocks, 2000 blocks, K=100 — the state.md workload, which takes long here).
STATE_BENCH_FLAGS ?=
bench: build ## print the benchmark tables: block execution (native, wat, wattoken, go), the devnet under load and the state store
	for m in native wat wattoken go; do $(BIN) bench exec --module $$m || exit 1; done
	$(BIN) bench node --rates 500,1000,2500,5000 --duration 10s
	$(BIN) bench state $(STATE_BENCH_FLAGS)

long: ## the long randomized runs: model/metamorphic seeds, kill -9 x100, crash points x300, exec seeds
	KAIROS_LONG=1 KAIROS_SEEDS=2000 KAIROS_KILL_ROUNDS=100 KAIROS_CRASH_POINTS=300 \
	  $(GO) test -count=1 -timeout 60m ./state/ ./runtime/enginetest/
	KAIROS_EXEC_SEEDS=$(EXEC_SEEDS) $(GO) test -count=1 -timeout 60m ./runtime/exec/

run: build ## a 4-validator devnet under ./.kairos/devnet: deploys the examples, runs transfers, proves a balance; Ctrl-C stops
	$(BIN) devnet --dir ./.kairos/devnet $(RUN_FLAGS)

demo: build ## the state-store demo under ./.kairos
	$(BIN) demo

sim: ## run the consensus simulator over many seeds
	$(GO) test -count=1 -timeout 60m -run Sim ./consensus/sim -sim.seeds=5000
	KAIROS_SIMEXEC_SEEDS=500 $(GO) test -count=1 -timeout 60m -run SimS2 ./internal/simexec

exec-soak: ## parallel = serial block execution over EXEC_SEEDS random chains per test
	KAIROS_EXEC_SEEDS=$(EXEC_SEEDS) $(GO) test -count=1 -run 'ParallelEqualsSerial|DAGAgainstReference' ./runtime/exec/

clean: ## remove build output and the demo data
	rm -rf bin .kairos
