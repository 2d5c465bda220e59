# exitnet — `make help` lists the targets.
#
# Fresh machine: `make demo` and `make test` create the virtual environment
# (.venv) and install what they need from PyPI and the Go module proxy; no root.

SHELL := /bin/bash
GO ?= go
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PREFIX ?= /usr/local
BUILD := build
LIB := $(BUILD)/libexitnet.so
# The test-only library: the exitnet_debug exports of tests/c/exitnet_debug.h compiled in.
DEBUG_LIB := $(BUILD)/debug/libexitnet.so
STAGE := $(BUILD)/install
# C programs link through exitnet.pc; without pkg-config (not in every base image, and
# installing it needs root) the same flags the .pc holds are used, with a note.
PKG_FLAGS = $$(if command -v pkg-config >/dev/null 2>&1; then pkg-config --cflags --libs exitnet; \
  else echo "-I$(CURDIR)/$(STAGE)/include -L$(CURDIR)/$(STAGE)/lib -Wl,-rpath,$(CURDIR)/$(STAGE)/lib -lexitnet"; fi)
VERSION := $(shell sed -n 's/^\#define EXITNET_VERSION_STRING "\(.*\)"/\1/p' include/exitnet.h)
GO_SOURCES := $(shell find golib capi -name '*.go' -o -name '*.c' -o -name '*.h' -o -name '*.s' -o -name '*.map') include/exitnet.h go.mod go.sum

ABI_GENERATED := python/exitnet/_abi.py capi/exitnet_types.h capi/abi_gen.go tests/c/test_abi.c

WHEEL_PLAT ?= manylinux_2_17_$(shell uname -m)

.PHONY: help abi lib wheel test-wheel install venv demo test test-go test-purego test-header test-c test-py bench bench-go bench-c bench-py fuzz fuzz-long clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

abi: ## regenerate the ctypes, cgo and C-test views of include/exitnet.h (scripts/abi.py)
	$(PY) scripts/abi.py gen

lib: $(LIB) ## build build/libexitnet.so (and copy it into python/exitnet/)

$(LIB): $(GO_SOURCES) scripts/build-lib.sh
	scripts/build-lib.sh $(BUILD)
	cp -f $(LIB) python/exitnet/.libexitnet.so.tmp && mv -f python/exitnet/.libexitnet.so.tmp python/exitnet/libexitnet.so

$(DEBUG_LIB): $(GO_SOURCES) scripts/build-lib.sh
	EXITNET_TAGS=exitnet_debug EXITNET_SONAME=libexitnet.so scripts/build-lib.sh $(BUILD)/debug

install: $(LIB) ## install library, header and exitnet.pc under PREFIX
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 0755 $(LIB) $(DESTDIR)$(PREFIX)/lib/libexitnet.so.$(VERSION)
	ln -sf libexitnet.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libexitnet.so.0
	ln -sf libexitnet.so.0 $(DESTDIR)$(PREFIX)/lib/libexitnet.so
	install -m 0644 include/exitnet.h $(DESTDIR)$(PREFIX)/include/exitnet.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' capi/exitnet.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/exitnet.pc

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[torch,dev]'
	touch $@

venv: $(VENV)/.installed ## create .venv with the package (editable), torch and test tools

demo: $(VENV)/.installed lib ## train a 4-exit net on the embedded default data, run it in the Go runtime
	$(PY) -m exitnet demo --out demo-output

test: test-go test-purego test-header test-c test-py ## run every test (Go -race, pure Go, header, C, Python)

test-go: ## go vet + Go tests with the race detector
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

test-purego: ## the pure-Go lane: golib without cgo, and with the assembly kernels off
	CGO_ENABLED=0 $(GO) test -count=1 ./golib/...
	CGO_ENABLED=0 $(GO) test -count=1 -tags purego ./golib/...

test-header: ## the header alone compiles as strict C99 and as C++
	gcc -std=c99 -Wall -Wextra -Werror -pedantic -fsyntax-only -x c include/exitnet.h
	g++ -std=c++11 -Wall -Wextra -Werror -pedantic -fsyntax-only -x c++ include/exitnet.h

test-c: $(LIB) $(DEBUG_LIB) $(VENV)/.installed ## C tests, linked against an installed copy through pkg-config (run_classify.sh needs the venv)
	rm -rf $(STAGE)
	$(MAKE) --no-print-directory install PREFIX=$(CURDIR)/$(STAGE)
	set -e; export PKG_CONFIG_PATH=$(CURDIR)/$(STAGE)/lib/pkgconfig LD_LIBRARY_PATH=$(CURDIR)/$(STAGE)/lib; \
	command -v pkg-config >/dev/null 2>&1 || echo "note: pkg-config not installed: linking with the flags exitnet.pc holds"; \
	for t in tests/c/test_*.c; do \
	  exe=$(BUILD)/c/$$(basename $$t .c); mkdir -p $(BUILD)/c; \
	  gcc -std=c99 -Wall -Wextra -Werror -O1 -o $$exe $$t $(PKG_FLAGS) -lpthread -lm; \
	  echo "== $$exe"; $$exe; \
	done; \
	for t in tests/c/debug/test_*.c; do \
	  exe=$(BUILD)/c/debug_$$(basename $$t .c); \
	  gcc -std=c99 -Wall -Wextra -Werror -O1 -Iinclude -Itests/c -o $$exe $$t -L$(BUILD)/debug -Wl,-rpath,$(CURDIR)/$(BUILD)/debug -lexitnet -lpthread -lm; \
	  echo "== $$exe (test-only library)"; LD_LIBRARY_PATH=$(CURDIR)/$(BUILD)/debug $$exe; \
	done; \
	for s in tests/c/*.sh; do [ -e "$$s" ] || continue; echo "== $$s"; PY=$(CURDIR)/$(PY) bash $$s; done

test-py: $(VENV)/.installed lib $(DEBUG_LIB) ## pytest (Python API, torch integration, notebook)
	$(PY) -m pytest -q tests/python

bench: bench-go bench-c bench-py ## every benchmark, side by side with the alternatives

bench-go:
	$(GO) test -run '^$$' -bench . -benchtime 20x ./golib/...

bench-c: $(LIB)
	rm -rf $(STAGE) && $(MAKE) --no-print-directory install PREFIX=$(CURDIR)/$(STAGE)
	set -e; export PKG_CONFIG_PATH=$(CURDIR)/$(STAGE)/lib/pkgconfig; mkdir -p $(BUILD)/c; \
	for b in bench/bench_*.c; do exe=$(BUILD)/c/$$(basename $$b .c); \
	  gcc -std=c99 -O2 -Itests/c -o $$exe $$b $(PKG_FLAGS) -lpthread -lm; echo "== $$b"; $$exe; done

$(VENV)/.bench: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[torch,dev,bench]'
	touch $@

bench-py: $(VENV)/.bench lib ## Python benchmarks (installs the bench extra: ONNX Runtime, BackPACK, Opacus)
	set -e; for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b; done

fuzz: ## a short run of every fuzz target
	scripts/fuzz.sh 20s

FUZZTIME ?= 10m
fuzz-long: ## every fuzz target for FUZZTIME each (default 10m), niced, one at a time; logs in build/fuzz
	nice -n 10 scripts/fuzz.sh $(FUZZTIME) build/fuzz

wheel: $(VENV)/.installed ## build the manylinux wheel into dist/ (Go, gcc; auditwheel repair to WHEEL_PLAT)
	rm -rf $(BUILD)/wheel-raw && mkdir -p dist && rm -f dist/exitnet-*.whl
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w $(BUILD)/wheel-raw .
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m auditwheel repair --only-plat --plat $(WHEEL_PLAT) -w dist $(BUILD)/wheel-raw/exitnet-*.whl
	$(PY) -m auditwheel show dist/exitnet-*.whl

test-wheel: wheel ## the wheel in a fresh venv outside the tree, no Go on PATH: policy, Fisher, runtime, C smoke test
	PY=$(CURDIR)/$(PY) scripts/test-wheel.sh dist/exitnet-*manylinux*.whl

clean: ## remove build outputs
	rm -rf $(BUILD) python/exitnet/libexitnet.so dist
