# buffet - the targets. The headers themselves need no build: copy them, or `make install`.
#   make test            gcc and clang, C11 and C++17, tests + compile/install/submodule checks
#   make test-asan       ASan + UBSan        make test-tsan   TSan        make test-valgrind
#   make test-aarch64    the tests cross-built for aarch64 and run under qemu-user
#   make fuzz            each tests/fuzz/ fuzzer under libFuzzer + ASan + UBSan for
#                        BUFFET_FUZZ_SECONDS (default 60)
#   make demo            run examples/*.c    make bench       run bench/*.c
#   make bench-count     the benches' loops under callgrind: instructions per operation
#                        (BENCH=bench_packet: that bench alone)
#   make bench-plot      docs/bench_ratios.svg from docs/bench_ratios.dat (gnuplot; exit 77: none)
#   make test-cuda       the GPU tests on the real CUDA driver (a machine with a GPU) and nvcc
#   make install         PREFIX=/usr/local, DESTDIR honoured; make uninstall; make clean
#   make deps            (root) the Debian packages the tests need; make bench-deps for the peers
# Every test target ends with the line "N passed, N failed, N skipped" (see tools/run_tests.sh).
# BUFFET_REQUIRE=clang,cmake,... (or all) turns a skip for a missing feature into a failure.

PREFIX  ?= /usr/local
DESTDIR ?=
HEADERS  = buffet.h buffet_frame.h buffet_packet.h buffet_net.h buffet_gpu.h
# One version for the family, read from buffet.h so that no second copy can drift.
VERSION  = $(shell tools/version.sh)

INCLUDEDIR = $(DESTDIR)$(PREFIX)/include/buffet
PKGCONFIGDIR = $(DESTDIR)$(PREFIX)/lib/pkgconfig
CMAKEDIR = $(DESTDIR)$(PREFIX)/lib/cmake/buffet

DEPS = build-essential clang valgrind cmake pkg-config git zlib1g-dev libclang-rt-14-dev python3 \
       python3-prometheus-client libnuma1 gcc-aarch64-linux-gnu g++-aarch64-linux-gnu \
       libc6-dev-arm64-cross qemu-user-static spin liblua5.4-dev libsqlite3-dev socat iproute2 iputils-ping ethtool iperf3 \
       mesa-vulkan-drivers libvulkan1 libvulkan-dev vulkan-validationlayers glslc \
       libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev openssl ngtcp2-client ngtcp2-server
# QUIC's independent peer in the tests (tests/quic_peer.py), from PyPI
PIP_DEPS = aioquic==1.7.2
BENCH_DEPS = libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev libtalloc-dev libapr1-dev \
             libdpdk-dev python3-prometheus-client iperf3 gnuplot-nox

.PHONY: test test-asan test-tsan test-valgrind test-aarch64 test-cuda fuzz demo bench bench-count bench-plot install uninstall clean deps bench-deps version

test:
	@tools/run_tests.sh test
test-asan:
	@tools/run_tests.sh asan
test-tsan:
	@tools/run_tests.sh tsan
test-valgrind:
	@tools/run_tests.sh valgrind
test-aarch64:
	@tools/run_tests.sh aarch64
test-cuda:
	@tools/run_tests.sh cuda
fuzz:
	@tools/run_tests.sh fuzz
demo:
	@tools/run_tests.sh demo
bench:
	@tools/run_tests.sh bench
bench-count:
	@tools/run_tests.sh count
bench-plot:
	@tools/bench_plot.sh

version:
	@echo $(VERSION)

install:
	@test -n "$(VERSION)" || { echo "install: cannot read the version from buffet.h" >&2; exit 1; }
	install -d $(INCLUDEDIR) $(PKGCONFIGDIR) $(CMAKEDIR)
	install -m 644 $(HEADERS) $(INCLUDEDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' tools/buffet.pc.in >$(PKGCONFIGDIR)/buffet.pc
	install -m 644 tools/buffetConfig.cmake $(CMAKEDIR)/
	sed -e 's|@VERSION@|$(VERSION)|g' tools/buffetConfigVersion.cmake.in >$(CMAKEDIR)/buffetConfigVersion.cmake

# Removes only what install put there; lib/pkgconfig is shared with other packages and stays.
uninstall:
	rm -f $(addprefix $(INCLUDEDIR)/,$(HEADERS)) $(PKGCONFIGDIR)/buffet.pc \
	      $(CMAKEDIR)/buffetConfig.cmake $(CMAKEDIR)/buffetConfigVersion.cmake
	rmdir $(INCLUDEDIR) $(CMAKEDIR) 2>/dev/null || true

clean:
	rm -rf build

deps:
	DEBIAN_FRONTEND=noninteractive apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEPS)
	python3 -m pip install --quiet $(PIP_DEPS) || python3 -m pip install --quiet --break-system-packages $(PIP_DEPS)

bench-deps:
	DEBIAN_FRONTEND=noninteractive apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(BENCH_DEPS)
