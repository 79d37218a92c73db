# spillway. The README's two commands:
#
#	make demo	install what is missing, build, run the demo on the built-in emulator
#	make test	install what is missing, build, run every test
#
# `make` alone builds build/spillway. CI runs .ci/run (WERROR=1, then ASan+UBSan).

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 600
WERROR     ?= 0
DEPS = gcc make meson ninja-build pkg-config python3 curl openssl \
	libcurl4-openssl-dev libjansson-dev libssl-dev libuv1-dev \
	libmicrohttpd-dev libsqlite3-dev libcmocka-dev valgrind shellcheck pyflakes3 \
	clang libclang-rt-14-dev \
	python3-h2 python3-grpcio python3-websockets haproxy procps systemd

werror = $(if $(filter 1,$(WERROR)),true,false)

all: build

deps:
	@tools/install-deps $(DEPS)

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: deps $(BUILD)/build.ninja
	@meson configure $(BUILD) -Dwerror=$(werror)
	ninja -C $(BUILD)

demo: build
	./$(BUILD)/spillway demo

test: build
	tools/run-tests $(BUILD)

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false \
		-Dc_args=-fno-sanitize-recover=all

# The whole suite again with AddressSanitizer and UndefinedBehaviorSanitizer.
test-asan: deps $(ASAN_BUILD)/build.ninja
	@meson configure $(ASAN_BUILD) -Dwerror=$(werror)
	ninja -C $(ASAN_BUILD)
	tools/run-tests $(ASAN_BUILD)

# The unit tests under valgrind, and the end-to-end tests with the emulator under valgrind.
test-valgrind: build
	tools/run-tests $(BUILD) --setup valgrind --suite unit
	SPILLWAY_WRAPPER="valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99" \
		tools/run-tests $(BUILD) --suite e2e

$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) -Dfuzz=true -Db_sanitize=address,undefined \
		-Db_lundef=false -Dc_args=-fno-sanitize-recover=all

# The chaos tests' long mode: 5,000 kills, 50 fault cycles, 100,000 simulated days.
chaos: build
	SPILLWAY_CHAOS_LONG=1 meson test -C $(BUILD) --suite chaos --timeout-multiplier 10

# The libFuzzer harnesses (fuzz/), each for FUZZ_SECONDS after replaying its corpus.
fuzz: deps $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD)
	tools/run-fuzz $(FUZZ_BUILD) $(FUZZ_SECONDS)

# CI's share: the corpus, then 20 s each.
fuzz-short: deps $(FUZZ_BUILD)/build.ninja
	@meson configure $(FUZZ_BUILD) -Dwerror=$(werror)
	ninja -C $(FUZZ_BUILD)
	tools/run-fuzz $(FUZZ_BUILD) 20

bench: build
	bench/run $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

.PHONY: all deps build demo test test-asan test-valgrind chaos fuzz fuzz-short bench format clean
