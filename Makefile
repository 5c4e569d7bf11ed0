# dnsedge: make build | test | bench | fuzz
GO      ?= go
BIN     ?= bin/dnsedge
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: build test unit e2e race vet fuzz bench clean

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/dnsedge

# Everything that proves dnsedge works: vet, each fuzz target for a short
# run, and every test with the race detector.
test: vet
	$(MAKE) fuzz FUZZTIME=5s
	$(GO) test -race -count=1 -timeout 15m ./...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above are not formatted"; exit 1; }

# Run every native fuzz target for FUZZTIME each.
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "fuzz $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg >/dev/null || { echo "fuzz $$f failed"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 1x $$pkg; exit 1; }; \
	  done; \
	done

# Load benchmarks against dnsdist, unbound and CoreDNS; writes BENCHMARKS.md.
bench:
	bash bench/run.sh

clean:
	rm -rf bin bench/out
