# Thin wrapper over scripts/ and CMake. Every target works from a fresh clone.
BUILD   ?= build
JOBS    ?= 2
EBM_DATA ?= $(CURDIR)/data
export EBM_DATA

.PHONY: all setup build test test-asan test-asan-fast asan-configure demo bench soak zoo package fuzz clean

all: build

## setup: install Debian packages, build, and install the datasets (idempotent)
setup:
	scripts/setup

## build: configure and compile (ccache, a shared precompiled header, unity batches)
build:
	@test -f $(BUILD)/CMakeCache.txt || cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j$(JOBS)

## test: unit + CLI tests through ctest (a few minutes), then the fast unit tests
##       under AddressSanitizer + UBSan (test-asan-fast; about 6 more minutes cold)
test: setup build
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)
	$(MAKE) --no-print-directory test-asan-fast

ASAN_ENV = OMP_NUM_THREADS=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1
asan-configure: setup
	@test -f build-asan/CMakeCache.txt || cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DEBM_SANITIZE=ON -DEBM_BUILD_BENCH=OFF

## test-asan: every unit test (ebm_tests: all layers, the server included, and the
##            CLI it drives) under AddressSanitizer + UBSan, leak checks on, in the
##            tree build-asan (about 30 min cold on 2 cores; never part of CI)
test-asan: asan-configure
	cmake --build build-asan -j$(JOBS) --target ebm_tests ebm_cli
	$(ASAN_ENV) build-asan/tests/ebm_tests

## test-asan-fast: the unit tests of the lower layers (core, io, metrics; ebm_tests_fast)
##                 under the same sanitizers (about 6 min cold, 17 s to run); `make test`
##                 and so CI end with it
test-asan-fast: asan-configure
	cmake --build build-asan -j$(JOBS) --target ebm_tests_fast
	$(ASAN_ENV) build-asan/tests/ebm_tests_fast

## demo: one short visual section per capability (OOD, denoise, inpaint, compose,
##       sample, defend) on the shipped models; PNGs under out/demo/; < 3 min once built
demo: setup build
	scripts/demo

## bench: regenerate every report README.md cites (results/) and the micro-benchmarks
##        (hours; never part of ctest)
bench: setup build
	scripts/bench

## soak: `ebm serve` under 100,000 valid and malformed requests from 32 connections
##       (wrk); checks every answer, 5xx, memory drift -> results/serve/soak.{json,md}
##       (about 2 min; never part of ctest)
soak: build
	bench/serve/soak.sh

## zoo: retrain every shipped model in models/ (hours on 2 cores)
zoo: setup build
	scripts/train-zoo

## package: build the .deb with CPack, install it with apt, use it, remove it (root)
package: build
	scripts/check-deb $(BUILD)

## fuzz: build the libFuzzer harnesses (clang, ASan+UBSan, tree build-fuzz) and run each
##       for FUZZ_SECONDS (default 600) seconds, one after another (fuzz/README.md)
FUZZ_SECONDS ?= 600
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(JOBS) fuzz/run.sh $(FUZZ_TARGETS)

clean:
	rm -rf $(BUILD) out
