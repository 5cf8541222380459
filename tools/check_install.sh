#!/usr/bin/env bash
# check_install.sh - installs buffet into a temporary prefix the way a user would, builds and runs a
# consumer through pkg-config and through CMake's find_package (also after moving the prefix, since
# the CMake package claims to be relocatable), then uninstalls and checks that nothing is left.
# Exit 0: passed; 77 after a SKIP line: pkg-config or cmake missing (1 if BUFFET_REQUIRE names it).
set -eu
cd "$(dirname "$0")/.."
. tools/common.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CC=${CC:-cc}

make --no-print-directory -s install PREFIX="$tmp/prefix"

# The consumer prints the version it was compiled against, to compare with what the packages say.
cat >"$tmp/consumer.c" <<'C'
#define BUFFET_IMPLEMENTATION
#include "buffet.h"
#include "buffet_frame.h"
#include "buffet_packet.h"
#include "buffet_net.h"
#include "buffet_gpu.h"
#include <stdio.h>
int main(void) {
    if (buffet_version() != BUFFET_VERSION_NUMBER) {
        fprintf(stderr, "FAIL install: buffet_version() is %lu, BUFFET_VERSION_NUMBER is %lu\n",
                (unsigned long)buffet_version(), (unsigned long)BUFFET_VERSION_NUMBER);
        return 1;
    }
    printf("%d.%d.%d\n", BUFFET_VERSION_MAJOR, BUFFET_VERSION_MINOR, BUFFET_VERSION_PATCH);
    return 0;
}
C
cat >"$tmp/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.13)
project(consumer C)
find_package(buffet 0.1 REQUIRED)
add_executable(app consumer.c)
target_link_libraries(app buffet::buffet)
file(WRITE "${CMAKE_BINARY_DIR}/found-version" "${buffet_VERSION}\n")
CMAKE

same() {  # same WHAT EXPECTED GOT
    [ "$2" = "$3" ] || { echo "FAIL install: $1 says $3, the headers say $2"; exit 1; }
}
cmake_consumer() {  # cmake_consumer PREFIX: configure, build and run against PREFIX
    rm -rf "$tmp/cmake-build"
    if ! { cmake -S "$tmp" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$1" &&
        cmake --build "$tmp/cmake-build"; } >"$tmp/cmake.log" 2>&1; then
        cat "$tmp/cmake.log"; exit 1
    fi
    ran=$("$tmp/cmake-build/app")  # a separate assignment, so that set -e sees the app fail
    same "CMake package found in $1" "$ran" "$(cat "$tmp/cmake-build/found-version")"
}

missing=""
if command -v pkg-config >/dev/null; then
    export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
    # shellcheck disable=SC2046 # the flags are meant to split into words
    "$CC" "$tmp/consumer.c" $(pkg-config --cflags --libs buffet) -o "$tmp/consumer"
    ran=$("$tmp/consumer")
    same "pkg-config --modversion" "$ran" "$(pkg-config --modversion buffet)"
    echo "pkg-config consumer: ok"
else missing="pkg-config"; fi

if command -v cmake >/dev/null; then
    cmake_consumer "$tmp/prefix"
    mv "$tmp/prefix" "$tmp/moved"
    cmake_consumer "$tmp/moved"
    mv "$tmp/moved" "$tmp/prefix"
    echo "CMake consumer: ok, also after moving the prefix"
else missing="$missing cmake"; fi

make --no-print-directory -s uninstall PREFIX="$tmp/prefix"
left=$(find "$tmp/prefix" -type f)
[ -z "$left" ] || { echo "FAIL install: uninstall left $left"; exit 1; }

# A missing tool skips only its half of the test; a required one fails it.
for tool in $missing; do ! required "$tool" || unavailable "$tool" "$tool not installed"; done
for tool in $missing; do echo "SKIP $tool: $tool not installed"; done
[ -z "$missing" ] || exit 77
