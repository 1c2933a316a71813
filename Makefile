# tenancy — run `make help` for the targets.
GO ?= go
# The toolkit, and the modules of its own beside it (go.work): the benchmarks and the example app.
PACKAGES := ./... ./bench/... ./examples/notes/...

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: test
test: ## Vet, then run the whole suite with the race detector against the local PostgreSQL and Redis (and the console's test in headless Chromium, when installed), and the allocation tests without it (what CI runs); fail if it leaves a database, role or Redis key behind. Screenshots go to ./artifacts.
	$(GO) vet $(PACKAGES)
	@$(GO) run ./internal/leakcheck snapshot $${TMPDIR:-/tmp}/tenancy-leakcheck.json
	TENANCY_ARTIFACTS=$(CURDIR)/artifacts $(GO) test -race -count=1 -timeout 8m $(PACKAGES)
	@$(MAKE) --no-print-directory allocs
	@$(GO) run ./internal/leakcheck compare $${TMPDIR:-/tmp}/tenancy-leakcheck.json

# The allocation tests count allocations with testing.AllocsPerRun, and the race detector
# allocates on its own: under -race some are not built (tenancyhttp/alloc_test.go) or skip
# themselves (the router's), so the race-enabled suite does not check those claims. `allocs`
# runs every allocation test again without -race.
# They are selected by name: every test that calls testing.AllocsPerRun has Alloc in its name
# (TestXDoesNotAllocate, TestXAllocations). The packages are found by the call, not listed, so a
# test that moves to another package is still run; a package that calls it but has no test of that
# name, or a test that skips, fails the step instead of passing with nothing checked.
ALLOC_RUN := ^Test.*Alloc

.PHONY: allocs
allocs: ## Run the allocation tests without -race (they skip under it); fail if one fails, skips or is not found.
	@set -e; \
	dirs=$$(grep -rl --include='*_test.go' 'testing\.AllocsPerRun' . | xargs -r -n1 dirname | sort -u); \
	if [ -z "$$dirs" ]; then echo "allocs: no _test.go file calls testing.AllocsPerRun; want the allocation tests found"; exit 1; fi; \
	out=$$(mktemp); trap 'rm -f "$$out"' EXIT; \
	status=0; $(GO) test -count=1 -v -run '$(ALLOC_RUN)' $$dirs >"$$out" 2>&1 || status=$$?; \
	grep -E '^(ok|FAIL|---|    ---)' "$$out" || true; \
	if [ $$status -ne 0 ]; then cat "$$out"; echo "allocs: an allocation test failed (go test exited $$status); want all to pass without -race"; exit 1; fi; \
	if grep -E '^ *--- SKIP' "$$out"; then echo "allocs: the tests above skipped; want every allocation test to run without -race"; exit 1; fi; \
	for dir in $$dirs; do \
		pkg=$$($(GO) list "$$dir"); \
		passed=$$(awk -v pkg="$$pkg" '/^--- PASS: / { n++ } /^(ok|FAIL)[ \t]/ { if ($$2 == pkg) print n + 0; n = 0 }' "$$out"); \
		if [ "$${passed:-0}" -eq 0 ]; then echo "allocs: $$pkg calls testing.AllocsPerRun, but no test matching $(ALLOC_RUN) ran there; want its allocation tests named with Alloc"; exit 1; fi; \
	done

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
