# dnsedge: make build | test | bench | fuzz
GO      ?= go
BIN     ?= bin/dnsedge
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: build test unit e2e race vet fuzz bench clean consul-agent image

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/dnsedge

# The container image, built without a container engine (internal/ociimage):
# a static binary, the CA bundle, user 65532, entrypoint dnsedge serve,
# tagged VERSION. bin/image is an OCI layout (skopeo copy oci:bin/image:TAG),
# bin/dnsedge-image.tar is for docker load. IMAGE_ARCH picks the platform.
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
image:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/image-root/dnsedge ./cmd/dnsedge
	$(GO) run ./internal/ociimage/mkimage -binary bin/image-root/dnsedge -arch $(IMAGE_ARCH) -version $(VERSION) \
	  -revision "$$(git rev-parse HEAD 2>/dev/null)" -source https://github.com/dnsedge/dnsedge \
	  -oci bin/image -tar bin/dnsedge-image.tar

# Everything that proves dnsedge works: vet, each fuzz target for a short
# run, and every test with the race detector. TestUpgradeUnderLoad runs
# last, alone: it offers 20,000 queries a second from five load
# generators and fails when they fall behind, which they did beside
# another package's tests on two cores.
test: vet consul-agent
	$(MAKE) fuzz FUZZTIME=5s
	$(GO) test -race -count=1 -timeout 15m -skip '^TestUpgradeUnderLoad$$' ./...
	$(GO) test -race -count=1 -timeout 10m -run '^TestUpgradeUnderLoad$$' ./cmd/dnsedge

# The Consul tests run a real agent, built from Consul's module once per
# machine into the Go build cache (a few minutes cold, nothing warm; see
# internal/consultest): build it before the test packages that use it run
# in parallel under their timeouts.
consul-agent:
	$(GO) test -count=1 -run '^TestAgentStopStart$$' ./internal/consultest/

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above are not formatted"; exit 1; }

# Run every native fuzz target for FUZZTIME each. A failing input fails at
# once; a fuzzer that fails without one shows its output and gets one more
# run of FUZZRETRY executions. That failure is a race in Go's fuzzing
# engine at the end of a timed run (golang/go#75804, fixed in Go 1.27): a
# run counted in executions has no deadline to race.
FUZZTIME ?= 30s
FUZZRETRY ?= 20000x
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "fuzz $$pkg $$f"; \
	    out=$$(mktemp); \
	    if ! $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg >$$out 2>&1; then \
	      tail -n 30 $$out; \
	      if grep -q "Failing input written" $$out; then echo "fuzz $$f found a failing input"; rm -f $$out; exit 1; fi; \
	      echo "fuzz $$f: the fuzzer failed without a failing input; running it once more"; \
	      $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZRETRY) $$pkg >$$out 2>&1 || { tail -n 30 $$out; rm -f $$out; echo "fuzz $$f failed"; exit 1; }; \
	    fi; \
	    rm -f $$out; \
	  done; \
	done

# Load benchmarks against dnsdist, unbound and CoreDNS; writes BENCHMARKS.md.
bench:
	bash bench/run.sh

clean:
	rm -rf bin bench/out
