# keyfleet's front door. A fresh Debian 12 machine needs only `make run` and `make test`.
#
#   make run     install missing packages, build, make a deployment in ./keyfleet-data (once)
#                and serve it with keyfleetd in the foreground (Ctrl-C stops it)
#   make test    install missing packages, then build and run the whole suite twice:
#                a normal build and an AddressSanitizer + UndefinedBehaviorSanitizer build
#   make bench   build optimised and run the benchmarks (results in bench/BENCHMARKS.md)
#   make fuzz    build the libFuzzer targets with clang and run each for FUZZ_SECONDS
#   make format  clang-format every C file

BUILD      ?= build
ASAN_BUILD ?= build-asan
BENCH_BUILD ?= build-bench
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
FUZZ_SECONDS ?= 60
CTEST_JOBS ?= $(JOBS)

.PHONY: all deps build run test test-normal test-asan bench fuzz format clean

all: build

deps:
	@sh scripts/deps.sh
	@sh scripts/npm.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

run: build
	@sh scripts/run.sh $(BUILD)

test: deps
	@$(MAKE) --no-print-directory test-normal test-asan

test-normal:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory
	@echo "== tests: normal build =="
	@cd $(BUILD) && ctest --output-on-failure -j $(CTEST_JOBS)

test-asan:
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DKF_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS) -- --no-print-directory
	@echo "== tests: AddressSanitizer + UndefinedBehaviorSanitizer build =="
	@cd $(ASAN_BUILD) && ctest --output-on-failure -j $(CTEST_JOBS)

bench: deps
	@cmake -S . -B $(BENCH_BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BENCH_BUILD) -j $(JOBS) -- --no-print-directory
	@sh bench/run.sh $(BENCH_BUILD)

fuzz: deps
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKF_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) -- --no-print-directory
	@sh fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(BENCH_BUILD) $(FUZZ_BUILD)
