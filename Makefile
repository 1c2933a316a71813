# tenancy — run `make help` for the targets.
GO ?= go

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: test
test: ## Vet, then run the whole suite with the race detector against the local PostgreSQL and Redis (what CI runs).
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 8m ./...

.PHONY: short
short: ## The suite without -race, quicker while editing.
	$(GO) test -count=1 ./...

.PHONY: bench
bench: ## Side-by-side benchmarks against the baselines (go run ./bench; BENCH_FLAGS=-quick for a short run).
	$(GO) run ./bench $(BENCH_FLAGS)

.PHONY: lint
lint: ## gofmt and go vet.
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: fuzz
fuzz: ## Run each fuzz test for FUZZTIME (default 30s).
	$(GO) test -run XXX -fuzz FuzzNormalizeHost -fuzztime $${FUZZTIME:-30s} ./tenancyhttp
	$(GO) test -run XXX -fuzz FuzzValidateSlug -fuzztime $${FUZZTIME:-30s} .

.PHONY: run
run: ## The reference service with the demo tenants (go run ./cmd/tenancy serve --demo).
	$(GO) run ./cmd/tenancy serve --demo
