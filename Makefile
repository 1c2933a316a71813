# tenancy — run `make help` for the targets.
GO ?= go
# The toolkit, and the modules of its own beside it (go.work): the benchmarks and the example app.
PACKAGES := ./... ./bench/... ./examples/notes/...

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: test
test: ## Vet, then run the whole suite with the race detector against the local PostgreSQL and Redis (what CI runs); fail if it leaves a database, role or Redis key behind.
	$(GO) vet $(PACKAGES)
	@$(GO) run ./internal/leakcheck snapshot $${TMPDIR:-/tmp}/tenancy-leakcheck.json
	$(GO) test -race -count=1 -timeout 8m $(PACKAGES)
	@$(GO) run ./internal/leakcheck compare $${TMPDIR:-/tmp}/tenancy-leakcheck.json

.PHONY: short
short: ## The suite without -race, quicker while editing.
	$(GO) test -count=1 $(PACKAGES)

.PHONY: bench
bench: ## Side-by-side benchmarks against the baselines (go run ./bench; BENCH_FLAGS=-quick for a short run).
	$(GO) run ./bench $(BENCH_FLAGS)

.PHONY: lint
lint: ## gofmt and go vet.
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PACKAGES)

.PHONY: fuzz
fuzz: ## Run every fuzz test in the repository, each for FUZZTIME (default 30s).
	@set -e; for pkg in $$($(GO) list $(PACKAGES)); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "$$pkg $$f"; $(GO) test -run XXX -fuzz "^$$f\$$" -fuzztime $${FUZZTIME:-30s} $$pkg; \
		done; \
	done

.PHONY: run
run: ## The reference service with the demo tenants (go run ./cmd/tenancy serve --demo).
	$(GO) run ./cmd/tenancy serve --demo
