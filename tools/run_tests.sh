#!/usr/bin/env bash
# run_tests.sh MODE - builds and runs buffet's programs for `make test*`, `make demo`, `make bench`.
#   test      tests/test_*.c with gcc and clang, each as C11 and as C++17 (gcc C11 at -O1, the
#             others at -O0); the compile checks
#             (tests/compile_*); the install test and the submodule test (tools/check_*.sh)
#   asan      tests/test_*.c with gcc under ASan and UBSan, as C11
#   tsan      tests/test_*.c with gcc under TSan, as C11
#   valgrind  tests/test_*.c with gcc as C11, each run under valgrind memcheck
#   aarch64   tests/test_*.c cross-built with Debian's aarch64-linux-gnu-gcc (C11), run under
#             qemu-aarch64-static; each also compiled by -g++ (C++17, front end only); every header
#             compiled alone for aarch64
#   fuzz      tests/fuzz/fuzz_*.c under libFuzzer with ASan and UBSan (clang), each for
#             BUFFET_FUZZ_SECONDS (default 60) from its seed corpus tests/fuzz/corpus/NAME/
#   demo      examples/*.c, gcc, C11, -O2          bench   bench/*.c, gcc, C11, -O2 -g
#   count     bench/*.c under valgrind --tool=callgrind: instructions per operation (make bench-count)
#   cuda      tests/test_gpu_*.c against the real CUDA driver (a machine with a GPU), and the nvcc
#             checks (test mode runs these too: every header as CUDA, examples/*.cu built and run)
# The test, asan, valgrind and aarch64 modes also replay every fuzzer's seed corpus (the fuzzer
# built with -DBUFFET_FUZZ_MAIN), and test checks the Promela models (tools/check_model.sh).
# A program that prints "<file>: N passed, N failed, N skipped" adds those numbers to the totals;
# any other program is one test (exit 0: passed, 77: skipped, else failed). Programs run from the
# repository root with BUFFET_TEST_MODE=MODE set, so that they can tell how they are being run.
# A source file asks for libraries with comment lines such as "// link: -lz" or "// pkg-config: zlib"
# (required: the program is skipped without it) or "// pkg-config-optional: libdpdk" (used when present).
# The last line printed is always the totals, "N passed, N failed, N skipped"; exit 1 if any failed.
# shellcheck disable=SC2086 # compilers and flag lists in variables are meant to split into words
set -eu
cd "$(dirname "$0")/.."
. tools/common.sh

mode=${1:-}
export BUFFET_TEST_MODE=$mode
passed=0 failed=0 skipped=0
# A hung test fails rather than stalling CI: no program needs more than a minute or two in the plain
# and ASan builds; TSan's and valgrind's stress runs and qemu take longer.
case $mode in tsan | valgrind | aarch64) timeout_s=900 ;; *) timeout_s=300 ;; esac
timeout_s=${BUFFET_TEST_TIMEOUT:-$timeout_s}
C="-x c -std=c11" CXX="-x c++ -std=c++17" BASE="$WARN -O1 -g -pthread"
# make test's other three builds (gcc C++17, clang C11 and C++17) run unoptimised: they compile
# in less than half the time (compiling is most of make test), run the same code under other
# code generation, and the optimised gcc C11 build and the sanitizer builds keep -O1's warnings.
BASE0="$WARN -O0 -g -pthread"
mkdir -p build/checks

pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
skip() {  # skip FEATURE WHY: a skip, or a failure when BUFFET_REQUIRE names FEATURE
    if required "$1"; then fail "$1: required, but $2"; else skipped=$((skipped + 1)); echo "SKIP $1: $2"; fi
}

# directive SRC WORD: the rest of SRC's "// WORD:" comment lines.
directive() { sed -n "s|^[[:space:]]*//[[:space:]]*$2:||p" "$1" | tr '\n' ' '; }

# libs_for SRC: the link flags SRC asks for ("// link:", "// pkg-config:", and the optional
# packages that are present); status 1, with the missing packages printed, when a required one is absent.
libs_for() {
    local src=$1 pkgs opt libs
    pkgs=$(directive "$src" pkg-config | xargs) libs=$(directive "$src" link)
    opt=$(directive "$src" pkg-config-optional | xargs)
    # an optional package (a benchmark's peer) joins the build when present; the program copes without
    if [ -n "$opt" ] && pkg-config --exists $opt 2>/dev/null; then
        libs="$libs $(pkg-config --cflags --libs $opt | sed 's/\(^\| \)-I/\1-isystem /g')"
    fi
    if [ -n "$pkgs" ]; then
        if ! pkg-config --exists $pkgs 2>/dev/null; then echo "$pkgs"; return 1; fi
        # -isystem: a peer's headers are not held to our -Werror
        libs="$libs $(pkg-config --cflags --libs $pkgs | sed 's/\(^\| \)-I/\1-isystem /g')"
    fi
    echo "$libs"
}

# build VARIANT SRC COMPILER FLAGS: compiles SRC into build/VARIANT/NAME; on success leaves the
# marker NAME.built, which tells program() that this build is done (see prebuild).
build() {
    local exe=build/$1/$(basename "$2" .c) libs
    mkdir -p "build/$1"
    rm -f "$exe.built"
    libs=$(libs_for "$2") || return 0   # program() reports the skip
    $3 $4 -I. "$2" -x none -o "$exe" $libs >"$exe.build.log" 2>&1 && touch "$exe.built"
    return 0
}

# prebuild VARIANT COMPILER FLAGS: every test program and corpus replay of a variant compiled
# first, as many at once as there are CPUs (compiling is most of a run's time); program() then
# only runs them, one at a time, so that the tests never compete with each other.
prebuild() {
    local src running=0 jobs
    jobs=$(nproc 2>/dev/null || echo 2)
    for src in tests/test_*.c tests/fuzz/fuzz_*.c; do
        [ -e "$src" ] || continue
        case $src in
        tests/fuzz/*) build "$1-replay" "$src" "$2" "$3 -DBUFFET_FUZZ_MAIN -Itests/fuzz" & ;;
        *) build "$1" "$src" "$2" "$3" & ;;
        esac
        running=$((running + 1))
        if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
    done
    wait
}

# program VARIANT SRC COMPILER FLAGS [RUNNER...]: builds SRC into build/VARIANT/ (unless prebuild
# did), runs it, counts it.
program() {
    local variant=$1 src=$2 cc=$3 flags=$4 name libs exe log sum p f s start rc=0
    shift 4
    name=$(basename "$src" .c)
    exe=build/$variant/$name log=build/$variant/$name.log
    mkdir -p "build/$variant"
    if ! libs=$(libs_for "$src"); then skip "${libs%% *}" "$name needs pkg-config packages: $libs"; return; fi
    if [ -e "$exe.built" ]; then
        rm -f "$exe.built"
    elif ! $cc $flags -I. "$src" -x none -o "$exe" $libs >"$log" 2>&1; then
        head -n 40 "$log"; fail "$variant/$name: does not build (all of it in $log)"; return
    fi
    echo "== $variant/$name"
    start=$SECONDS
    timeout -k 10 "$timeout_s" "$@" "./$exe" ${prog_args:-} 2>&1 | tee "$log"; rc=${PIPESTATUS[0]}
    echo "-- $variant/$name: $((SECONDS - start)) s"   # where CI's time goes
    sum=$(grep -E '^[^ ]+: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log" | tail -n 1)
    if [ -n "$sum" ]; then
        read -r p f s <<<"$(echo "${sum##*: }" | tr -cs '0-9' ' ')"
        passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
        if [ "$f" -gt 0 ]; then echo "FAIL $variant/$name: $f failed"
        # an error found after the summary (a leak at exit, valgrind's error exit) still fails
        elif [ "$rc" -ne 0 ]; then fail "$variant/$name: exit status $rc after its summary"; fi
    elif [ "$rc" -eq 0 ]; then pass
    elif [ "$rc" -eq 77 ]; then skipped=$((skipped + 1))
    elif [ "$rc" -eq 124 ]; then fail "$variant/$name: timed out after ${timeout_s}s"
    else fail "$variant/$name: exit status $rc"; fi
    return 0
}

# syntax VARIANT COMPILER FLAGS: every test program and fuzzer held to the warnings (-Werror) by
# COMPILER's front end, without code generation, one check each, as many at once as there are CPUs:
# for aarch64's C++17, whose code paths the native C++17 builds and the aarch64 C11 run cover.
syntax() {
    local src jobs libs incs log running=0 dir=build/$1
    jobs=$(nproc 2>/dev/null || echo 2)
    mkdir -p "$dir"
    rm -f "$dir"/*.syntax.log
    for src in tests/test_*.c tests/fuzz/fuzz_*.c; do
        # a program whose packages are missing: the runs already reported it as skipped
        [ -e "$src" ] && libs=$(libs_for "$src") || continue
        # only the include paths: the front end would call the link flags unused
        incs=$(echo "$libs" | tr ' ' '\n' | grep -e '^-I' -e '^-isystem' -e '^/.*include' | paste -sd' ' -)
        log=$dir/$(basename "$src" .c).syntax.log
        { $2 $3 -fsyntax-only -I. -Itests/fuzz -DBUFFET_FUZZ_MAIN $incs "$src" >"$log" 2>&1 && echo ok >>"$log"; } &
        running=$((running + 1))
        if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
    done
    wait
    for log in "$dir"/*.syntax.log; do
        [ -e "$log" ] || continue
        if [ "$(cat "$log")" = ok ]; then pass
        else head -n 40 "$log"; fail "$1/$(basename "$log" .syntax.log): warnings or errors"; fi
    done
    echo "== $1: every test and fuzzer compiled (front end only), $jobs at once"
}

# fake_drivers VARIANT COMPILER FLAGS: the GPU drivers that fail on request, built like the
# variant's tests (C only): the stand-in CUDA driver (tests/gpu_fake_cuda.c) as
# build/VARIANT/libfakecuda.so and the library in front of the real Vulkan loader
# (tests/gpu_fail_vulkan.c) as build/VARIANT/libfailvulkan.so; BUFFET_FAKE_CUDA and
# BUFFET_FAIL_VULKAN tell the tests where they are.
fake_drivers() {
    local src so
    mkdir -p "build/$1"
    for src in tests/gpu_fake_cuda.c:libfakecuda.so tests/gpu_fail_vulkan.c:libfailvulkan.so; do
        so=build/$1/${src#*:}
        rm -f "$so"
        if ! $2 ${3/$CXX/$C} -fPIC -shared "${src%%:*}" -o "$so" -ldl >"$so.build.log" 2>&1; then
            head -n 40 "$so.build.log"; fail "$1/${so##*/}: does not build"
        fi
    done
    export BUFFET_FAKE_CUDA=$PWD/build/$1/libfakecuda.so BUFFET_FAIL_VULKAN=$PWD/build/$1/libfailvulkan.so
}

tests() {  # tests VARIANT COMPILER FLAGS [RUNNER...]
    local src
    fake_drivers "$1" "$2" "$3"
    prebuild "$1" "$2" "$3"
    for src in tests/test_*.c; do [ ! -e "$src" ] || program "$1" "$src" "$2" "$3" "${@:4}"; done
    replays "$@"
}

# replays VARIANT COMPILER FLAGS [RUNNER...]: each fuzzer, without libFuzzer, runs its seed corpus.
replays() {
    local src name
    for src in tests/fuzz/fuzz_*.c; do
        [ -e "$src" ] || continue
        name=$(basename "$src" .c)
        prog_args=tests/fuzz/corpus/${name#fuzz_} program "$1-replay" "$src" "$2" "$3 -DBUFFET_FUZZ_MAIN -Itests/fuzz" "${@:4}"
    done
}

# fuzz_one SRC: libFuzzer with ASan and UBSan from the seed corpus for BUFFET_FUZZ_SECONDS; new
# inputs go to build/fuzz/NAME-corpus, a crash to build/fuzz/NAME-crash-*.
fuzz_one() {
    local src=$1 name exe log work runs secs=${BUFFET_FUZZ_SECONDS:-60} rc=0
    name=$(basename "$src" .c)
    exe=build/fuzz/$name log=build/fuzz/$name.log work=build/fuzz/$name-corpus
    mkdir -p "$work"
    if ! clang $C $WARN -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I. -Itests/fuzz \
            "$src" -o "$exe" >"$log" 2>&1; then
        head -n 40 "$log"; fail "fuzz/$name: does not build"; return
    fi
    echo "== fuzz/$name: ${secs}s"
    timeout -k 10 $((secs + 120)) "./$exe" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="build/fuzz/$name-crash-" "$work" "tests/fuzz/corpus/${name#fuzz_}" >"$log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [ "$rc" -ne 0 ]; then
        grep -v '^#' "$log" | tail -n 60; fail "fuzz/$name: exit status $rc after ${runs:-?} executions (input in build/fuzz/)"
    else
        pass; echo "fuzz/$name: ${runs:-?} executions in ${secs}s, corpus $(ls "$work" | wc -l) inputs, no finding"
    fi
}

# fuzz_all: every fuzzer (fuzz_one), as many at once as there are CPUs: libFuzzer runs on one
# core, so each still gets its BUFFET_FUZZ_SECONDS of a CPU, and CI's wall time is halved. Each
# one's output is printed whole when it ends, and its counts added.
fuzz_all() {
    local src name p f running=0 jobs
    jobs=$(nproc 2>/dev/null || echo 2)
    for src in tests/fuzz/fuzz_*.c; do
        [ -e "$src" ] || continue
        name=$(basename "$src" .c)
        (passed=0 failed=0; fuzz_one "$src"; echo "$passed $failed" >"build/fuzz/$name.counts") >"build/fuzz/$name.out" 2>&1 &
        running=$((running + 1))
        if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
    done
    wait
    for src in tests/fuzz/fuzz_*.c; do
        [ -e "$src" ] || continue
        name=$(basename "$src" .c)
        cat "build/fuzz/$name.out"
        if read -r p f <"build/fuzz/$name.counts" 2>/dev/null; then passed=$((passed + p)) failed=$((failed + f))
        else fail "fuzz/$name: ended without a result"; fi
        rm -f "build/fuzz/$name.counts"
    done
}

# check NAME COMMAND...: one compile check, counted as one test; its output shows only on failure.
check() {
    local name=$1; shift
    if "$@" >build/checks/check.log 2>&1; then pass; else cat build/checks/check.log; fail "check $name"; fi
}

# The checks build without -I: a sibling's #include "buffet.h" must find buffet.h next to itself.
header_alone() {  # CC LANGFLAGS HEADER [FLAGS]: the header and its implementation, alone in a TU
    printf '#define BUFFET_IMPLEMENTATION\n#include "%s"\n' "$3" | $1 $2 $WARN -O1 ${4:-} -c -o /dev/null -
}
build_run() {  # CC LANGFLAGS SRC TAG
    $1 $2 $BASE "$3" -x none -o "build/checks/$4" && "./build/checks/$4"
}
static_only_main() {  # CC LANGFLAGS TAG: with BUFFET_STATIC nothing but main may be exported
    local obj=build/checks/$3.o exported
    $1 $2 $BASE -c tests/compile_static.c -o "$obj" || return
    exported=$(nm -g --defined-only "$obj" | awk '{ print $3 }')
    [ "$exported" = main ] || { echo "BUFFET_STATIC build exports:" $exported; return 1; }
    $1 -pthread "$obj" -o "build/checks/$3" && "./build/checks/$3"
}
two_units() {  # CC_A LANGFLAGS_A CC_B LANGFLAGS_B LINKER TAG: implementation in one TU, use in another
    $1 $2 $BASE -c tests/compile_two_a.c -o "build/checks/$6-a.o" &&
        $3 $4 $BASE -c tests/compile_two_b.c -o "build/checks/$6-b.o" &&
        $5 -pthread "build/checks/$6-a.o" "build/checks/$6-b.o" -o "build/checks/$6" && "./build/checks/$6"
}

layout_units() {  # CC LANGFLAGS EXTRA TAG: compile_layout_a.c and _b.c, configured differently, linked, run
    $1 $2 $BASE $3 -c tests/compile_layout_a.c -o "build/checks/$4-a.o" &&
        $1 $2 $BASE $3 -c tests/compile_layout_b.c -o "build/checks/$4-b.o" &&
        $1 $3 -pthread "build/checks/$4-a.o" "build/checks/$4-b.o" -o "build/checks/$4" && "./build/checks/$4"
}

compile_checks() {  # CC CXX
    local cc=$1 cxx=$2 h p0=$passed f0=$failed
    for h in buffet.h buffet_frame.h buffet_packet.h buffet_net.h buffet_gpu.h; do
        check "$cc C11 $h alone" header_alone "$cc" "$C" "$PWD/$h"
        check "$cxx C++17 $h alone" header_alone "$cxx" "$CXX" "$PWD/$h"
    done
    # a sibling copied away from buffet.h finds it through BUFFET_H_PATH
    cp buffet_frame.h build/checks/
    check "$cc BUFFET_H_PATH" header_alone "$cc" "$C" "$PWD/build/checks/buffet_frame.h" "-DBUFFET_H_PATH=\"$PWD/buffet.h\""
    check "$cc compile_all.c" build_run "$cc" "$C" tests/compile_all.c "all-$cc"
    check "$cxx compile_all.cc" build_run "$cxx" "$CXX" tests/compile_all.cc "all-$cxx"
    check "$cc compile_static.c" static_only_main "$cc" "$C" "static-$cc"
    check "$cxx compile_static.c as C++17" static_only_main "$cxx" "$CXX" "static-$cxx"
    check "$cc compile_two_a.c + compile_two_b.c" two_units "$cc" "$C" "$cc" "$C" "$cc" "two-$cc"
    check "$cxx compile_two_a.c as C++17 + $cc compile_two_b.c" two_units "$cxx" "$CXX" "$cc" "$C" "$cxx" "two-$cxx"
    check "$cc compile_layout_a.c + compile_layout_b.c (other limits)" layout_units "$cc" "$C" "" "layout-$cc"
    echo "== compile checks $cc/$cxx: $((passed - p0)) passed, $((failed - f0)) failed"
}

# bench_builds: every bench/*.c compiles (gcc, C11, -O2, warnings as errors), with the peers that
# are installed: nothing else in make test builds them, and make bench runs only where asked.
bench_builds() {
    local src libs
    for src in bench/*.c; do
        libs=$(libs_for "$src") || { skip "${libs%% *}" "$src needs pkg-config packages: $libs"; continue; }
        check "bench builds: $src" gcc $C $WARN -O2 -pthread -I. "$src" -x none -o "build/checks/$(basename "$src" .c)" $libs
    done
}

# optimised_builds: the misuse tests (a careless caller's constants: NULL arrays, SIZE_MAX / 2
# counts) compiled as users build them, gcc -O3 C11 and g++ -O2 C++17, and the examples (C) with
# gcc -O3, warnings as errors: GCC's middle-end warnings (-Warray-bounds, -Wmaybe-uninitialized,
# -Waggressive-loop-optimizations) come only from optimised builds of such call sites, which the
# runs above (-O1 and -O0) do not make.
optimised_builds() {
    local src
    for src in tests/test_misuse*.c examples/*.c; do
        check "gcc -O3 C11 $src" gcc $C $WARN -O3 -pthread -I. -c "$src" -o /dev/null
        case $src in tests/*) check "g++ -O2 C++17 $src" g++ $CXX $WARN -O2 -pthread -I. -c "$src" -o /dev/null ;; esac
    done
}

# nvcc_checks: every header compiles (implementation included) as CUDA C++ with nvcc, warnings as
# errors, and every examples/*.cu builds and runs (it says so and exits 0 where no GPU answers).
nvcc_checks() {
    local nvcc h src exe p0=$passed f0=$failed
    nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
    if [ ! -x "$nvcc" ]; then skip nvcc "nvcc not found (the CUDA toolkit): the headers are not compiled as CUDA"; return; fi
    for h in buffet.h buffet_frame.h buffet_packet.h buffet_net.h buffet_gpu.h; do
        printf '#define BUFFET_IMPLEMENTATION\n#include "%s"\n__global__ void k(unsigned char *p) { p[threadIdx.x] ^= 1; }\n' \
            "$PWD/$h" >"build/checks/nvcc-${h%.h}.cu"
        # -Wpedantic would flag the line markers nvcc writes into its own host code
        check "nvcc $h alone" "$nvcc" -std=c++17 -Werror all-warnings -Xcompiler -Wall,-Wextra,-Wshadow,-Werror \
            -c "build/checks/nvcc-${h%.h}.cu" -o /dev/null
    done
    for src in examples/*.cu; do
        [ -e "$src" ] || continue
        exe=build/checks/$(basename "$src" .cu)
        check "nvcc $src" "$nvcc" -std=c++17 -O2 -Werror all-warnings -I. "$src" -o "$exe" -ldl
        [ -x "$exe" ] && check "run $src" "$exe"
    done
    echo "== nvcc checks: $((passed - p0)) passed, $((failed - f0)) failed"
}

script() {  # NAME SCRIPT: one of tools/check_*.sh, counted as one test (exit 77: skipped)
    local rc=0
    "$2" >"build/checks/$1.log" 2>&1 || rc=$?
    case $rc in
        0) pass; echo "== $1 test: passed" ;;
        77) skipped=$((skipped + 1)); grep '^SKIP' "build/checks/$1.log" ;;
        *) cat "build/checks/$1.log"; fail "$1 test: exit status $rc" ;;
    esac
}

case $mode in
test)
    pairs="gcc:g++"
    if command -v clang >/dev/null && command -v clang++ >/dev/null; then pairs="$pairs clang:clang++"
    else skip clang "clang not installed"; fi
    for pair in $pairs; do
        if [ "$pair" = gcc:g++ ]; then tests gcc-c11 gcc "$C $BASE"; else tests "${pair%:*}-c11" "${pair%:*}" "$C $BASE0"; fi
        tests "${pair%:*}-c++17" "${pair#*:}" "$CXX $BASE0"
        compile_checks "${pair%:*}" "${pair#*:}"
    done
    nvcc_checks
    bench_builds
    optimised_builds
    if command -v glslc >/dev/null; then check "SPIR-V matches examples/shaders/transform.comp" sh examples/shaders/make_spv.sh --check
    else skip glslc "glslc not installed (make deps): the committed SPIR-V is not checked against its source"; fi
    script install tools/check_install.sh
    script submodule tools/check_submodule.sh
    if command -v spin >/dev/null; then script model tools/check_model.sh
    else skip spin "spin not installed (make deps): the Promela models are not checked"; fi
    ;;
asan)
    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
    export ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    export UBSAN_OPTIONS="print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
    # C11: the C++17 builds run the same code in make test, and memory errors do not depend on
    # the language the header was compiled as
    tests asan-c11 gcc "$C $BASE $SAN"
    check "ASan compile_layout_a.c + compile_layout_b.c (other limits)" layout_units gcc "$C" "$SAN" layout-asan
    ;;
tsan)
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
    tests tsan-c11 gcc "$C $BASE -fsanitize=thread"
    ;;
valgrind)
    if command -v valgrind >/dev/null; then
        tests valgrind-c11 gcc "$C $BASE" valgrind --error-exitcode=99 --leak-check=full \
            --errors-for-leak-kinds=definite,indirect,possible --show-leak-kinds=definite,indirect,possible -q
    else skip valgrind "valgrind not installed"; fi
    ;;
aarch64)
    # Another architecture for real: cross-built and run under qemu's user-mode emulation.
    qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
    if ! command -v aarch64-linux-gnu-gcc >/dev/null || [ -z "$qemu" ]; then
        skip aarch64 "aarch64-linux-gnu-gcc or qemu-aarch64-static not installed (make deps)"
    else
        export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
        # qemu's user mode refuses MAP_HUGETLB: huge pages are required (and tested) natively
        # only. Libraries come from the arm64 pkg-config tree, which holds none of the hooked
        # ones (Lua, SQLite): those are tested natively only. qemu also leaks the descriptors
        # it cuts from a message (MSG_CTRUNC) and refuses SO_ZEROCOPY: those are tested natively.
        # It has no io_uring, passes no AF_PACKET or AF_XDP option (SOL_PACKET, SOL_XDP) to the
        # kernel and applies no seccomp filter to its guest: natively only too.
        # No arm64 Vulkan driver is installed (the x86-64 lavapipe runs the Vulkan tests natively),
        # nor arm64 ngtcp2 (QUIC is tested natively, against aioquic too).
        BUFFET_REQUIRE=$(printf '%s' "${BUFFET_REQUIRE:-}" | tr ',' '\n' |
            grep -vx 'hugetlb\|lua5.4\|ctrunc\|zerocopy\|io_uring\|afpacket\|afxdp\|seccomp\|vulkan\|vulkan_validation\|vulkan_fail\|libngtcp2\|aioquic' | paste -sd, -)
        export BUFFET_REQUIRE PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig
        tests aarch64-c11 aarch64-linux-gnu-gcc "$C $BASE" "$qemu"
        # C++ changes no code path that depends on the architecture: held to the warnings only
        if command -v aarch64-linux-gnu-g++ >/dev/null; then
            syntax aarch64-c++17 aarch64-linux-gnu-g++ "$CXX $BASE"
        else skip aarch64 "aarch64-linux-gnu-g++ not installed (make deps)"; fi
        for h in buffet.h buffet_frame.h buffet_packet.h buffet_net.h buffet_gpu.h; do
            check "aarch64 C11 $h alone" header_alone aarch64-linux-gnu-gcc "$C" "$PWD/$h"
        done
    fi
    ;;
fuzz)
    mkdir -p build/fuzz
    if command -v clang >/dev/null; then fuzz_all
    else skip clang "clang not installed: libFuzzer needs it (make deps)"; fi
    ;;
cuda)
    # make test-cuda: the GPU tests against the real driver (libcuda.so.1) on a machine with a GPU
    export BUFFET_GPU_REAL_CUDA=1 BUFFET_REQUIRE=${BUFFET_REQUIRE:+$BUFFET_REQUIRE,}cuda
    fake_drivers cuda-c11 gcc "$C $BASE"
    for src in tests/test_gpu_*.c; do program cuda-c11 "$src" gcc "$C $BASE"; done
    nvcc_checks
    ;;
demo)
    for src in examples/*.c; do [ ! -e "$src" ] || program demo "$src" gcc "$C $WARN -O2 -pthread"; done
    ;;
bench)
    timeout_s=${BUFFET_TEST_TIMEOUT:-0}  # benchmarks take as long as they take
    for src in bench/*.c; do [ ! -e "$src" ] || program bench "$src" gcc "$C $WARN -O2 -g -pthread"; done
    ;;
count)
    # make bench-count: the benches' loops under callgrind, each contestant's run counted alone
    # (bench.h's bench_run), then instructions per operation (tools/bench_count.py): numbers that
    # do not move with the machine's noise. The settings are the ones the benches ask for under
    # valgrind (see their header comments).
    timeout_s=${BUFFET_TEST_TIMEOUT:-0}
    if ! command -v valgrind >/dev/null; then skip valgrind "valgrind not installed (make deps)"
    else
        rm -rf build/count
        export BUFFET_BENCH_COUNT=1 BUFFET_BENCH_DPDK_NOHUGE=1
        export BUFFET_BENCH_REEXEC=1 GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384
        for src in bench/*.c; do
            name=$(basename "$src" .c)
            # BENCH=bench_packet: that one alone (make bench-count BENCH=...)
            if [ -n "${BENCH:-}" ] && [ "$name" != "$BENCH" ]; then continue; fi
            # callgrind sees user space only; a socket benchmark's cost is the kernel's
            case $name in bench_net | bench_rings | bench_quic)
                echo "($name not counted: its cost is in the kernel, which callgrind does not see)"; continue ;;
            esac
            # a bench's "// count-iters: N" line: iterations per contestant (an iteration's size varies)
            iters=$(directive "$src" count-iters | xargs)
            BUFFET_BENCH_ITERS=${BUFFET_BENCH_ITERS:-${iters:-2000}} program count "$src" gcc "$C $WARN -O2 -g -pthread" \
                valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file="build/count/$name.%p.out"
        done
        python3 tools/bench_count.py build/count || fail "bench_count.py"
    fi
    ;;
*)
    echo "usage: tools/run_tests.sh test|asan|tsan|valgrind|aarch64|fuzz|demo|bench|count|cuda" >&2; exit 2 ;;
esac
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
