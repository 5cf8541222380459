#!/bin/sh
# version.sh - prints buffet's version ("0.1.0") as buffet.h defines it. The preprocessor reads
# the macros, so however buffet.h spells them there is no second copy of the version to drift.
set -eu
cd "$(dirname "$0")/.."
printf '#include "buffet.h"\nbuffet_version_is BUFFET_VERSION_MAJOR BUFFET_VERSION_MINOR BUFFET_VERSION_PATCH\n' |
    ${CC:-cc} -E -P -I. -x c - | sed -n 's/^buffet_version_is //p' | tr -d '()uUlL' |
    awk 'NF == 3 { print $1 "." $2 "." $3 }'
