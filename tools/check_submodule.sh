#!/usr/bin/env bash
# check_submodule.sh - vendors this repository as a git submodule of a fresh project, the other way
# users take buffet, and builds it with nothing but `cc main.c -o app`: no -I, no flags (glibc
# 2.34 and later has threads and dlopen in libc itself).
# git clones committed state, so this tests HEAD, not the working tree.
# Exit 0: passed; 77 after a SKIP line: no git, or no commit yet (1 if BUFFET_REQUIRE names git).
set -eu
cd "$(dirname "$0")/.."
. tools/common.sh
command -v git >/dev/null || unavailable git "git not installed"
git rev-parse -q --verify HEAD >/dev/null || unavailable git "this repository has no commit yet to clone"
repo=$PWD
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
git init -q consumer
cd consumer
# protocol.file.allow: git >= 2.38.1 refuses local submodule clones by default.
# safe.directory: CI checkouts are often owned by a user other than the one running the tests.
git -c protocol.file.allow=always -c safe.directory='*' submodule --quiet add "$repo" third_party/buffet

{
    echo '#define BUFFET_IMPLEMENTATION'
    # every buffet header committed so far, buffet.h itself last: any order must work
    for h in third_party/buffet/buffet_*.h third_party/buffet/buffet.h; do
        [ ! -e "$h" ] || echo "#include \"$h\""
    done
    cat <<'C'
#include <stdio.h>
int main(void) {
    printf("buffet %lu\n", (unsigned long)buffet_version());
    return buffet_version() == BUFFET_VERSION_NUMBER ? 0 : 1;
}
C
} >main.c
${CC:-cc} main.c -o app
./app
