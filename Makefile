# The index of commands. CI runs `make ci` (that is, .ci/run).

SHELL    := bash
GO       ?= go
PKGS     ?= ./...
FUZZTIME ?= 30s

.PHONY: test race vet lint bench fuzz ci

test: ## run every test (integration tests skip when their service is down, unless CI=true)
	$(GO) test $(PKGS)

race: ## the tests with the race detector, as CI runs them
	$(GO) test -race -count=1 -timeout 25m $(PKGS)

vet:
	$(GO) vet $(PKGS)

lint: ## gofmt (fails listing unformatted files) and go vet
	@files=$$(gofmt -l .); \
	if [ -n "$$files" ]; then echo "gofmt needed:"; echo "$$files"; exit 1; fi
	$(GO) vet $(PKGS)

bench:
	$(GO) test -run='^$$' -bench=. $(PKGS)

fuzz: ## run each Fuzz target for FUZZTIME, one after the other
	@set -eo pipefail; $(GO) test -list '^Fuzz' $(PKGS) \
	| awk '/^Fuzz/ { f[n++] = $$1 } /^ok/ { for (i = 0; i < n; i++) print $$2, f[i]; n = 0 }' \
	| while read -r pkg target; do \
		echo "==> $$pkg $$target ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$target$$" -fuzztime=$(FUZZTIME) "$$pkg"; \
	done

ci: ## what CI runs: start the loopback services, go vet, go test -race
	bash .ci/run
