# The two entry points of the README: `make demo` (the main job) and `make test` (every test).
# Both create their own virtualenv in .venv and install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench deps system-deps clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

deps: $(STAMP)

# iproute2, iptables and the real CNI plugins (bridge, host-local, portmap, loopback in /usr/lib/cni)
# for the dataplane tests (root on Debian).
system-deps:
	@if ! command -v iptables-restore >/dev/null || ! command -v ip >/dev/null \
	    || ! test -x /usr/lib/cni/bridge || ! test -x /usr/lib/cni/portmap; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    iproute2 iptables containernetworking-plugins >/dev/null; \
	fi

demo: $(STAMP)
	$(BIN)/routectl simulate --cloud aws --nodes 60

lint: $(STAMP)
	$(BIN)/ruff check routectl tests benchmarks

test: system-deps $(STAMP) lint
	$(BIN)/pytest -q

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
