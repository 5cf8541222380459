# shellcheck shell=bash
# common.sh - sourced by the other tools/*.sh scripts.

# The warnings every buffet build must pass (DESIGN: clean with -Wall -Wextra -Wpedantic -Werror).
# shellcheck disable=SC2034 # used by the scripts that source this
WARN="-Wall -Wextra -Wpedantic -Werror -Wshadow"

# required FEATURE: whether BUFFET_REQUIRE (comma-separated names, or "all") names FEATURE.
# Same rule as tests/bt.h: a missing feature is a skip unless CI said it must be there.
required() {
    case ",${BUFFET_REQUIRE:-}," in *",$1,"* | *",all,"*) return 0 ;; esac
    return 1
}

# unavailable FEATURE WHY: for the check_*.sh scripts. Prints SKIP and exits 77 (the skip
# status run_tests.sh counts), or prints FAIL and exits 1 when FEATURE is required.
unavailable() {
    if required "$1"; then echo "FAIL $1: required, but $2"; exit 1; fi
    echo "SKIP $1: $2"
    exit 77
}
