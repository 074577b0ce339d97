# The index of commands. CI runs `make ci` (that is, .ci/run).

SHELL    := bash
GO       ?= go
PKGS     ?= ./...
FUZZTIME ?= 10s

.PHONY: test race vet lint bench fuzz ci

test: ## run every test (integration tests skip when their service is down, unless CI=true)
	$(GO) test $(PKGS)

race: ## the tests with the race detector, as CI runs them
	$(GO) test -race -count=1 -timeout 25m $(PKGS)

vet:
	$(GO) vet $(PKGS)
	$(GO) vet -tags failpoints ./internal/failpoint

lint: ## gofmt (fails listing unformatted files) and go vet
	@files=$$(gofmt -l .); \
	if [ -n "$$files" ]; then echo "gofmt needed:"; echo "$$files"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -tags failpoints ./internal/failpoint

bench:
	$(GO) test -run='^$$' -bench=. $(PKGS)

fuzz: ## run every Fuzz target in the module for FUZZTIME each (CI: 10s), one after the other
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

ci: ## what CI runs: start the loopback services, go vet, go test -race, then make fuzz
	bash .ci/run
