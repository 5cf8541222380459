#!/bin/sh
# make_spv.sh - compiles transform.comp into transform_spv.h, the SPIR-V as a C array of uint32_t
# words (static const uint32_t buffet_test_transform_spv[]), so that tests need no shader compiler.
#   examples/shaders/make_spv.sh           writes transform_spv.h
#   examples/shaders/make_spv.sh --check   exits 1 when the committed transform_spv.h differs from what
#                                       the source compiles to now (exit 77: no glslc here)
# Needs glslc (Debian: apt-get install glslc). -O0 and no debug info keep the output a function of
# the source and the compiler alone; another glslc release may emit other words (its generator
# version is word 2), in which case --check reports a difference for a source that did not change.
set -eu
dir=$(cd "$(dirname "$0")" && pwd)
src="$dir/transform.comp" out="$dir/transform_spv.h"
check=0
case "${1:-}" in
    --check) check=1 ;;
    "") ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
if ! command -v glslc >/dev/null 2>&1; then
    echo "make_spv.sh: glslc not found (apt-get install glslc)" >&2
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
glslc -fshader-stage=compute --target-env=vulkan1.1 -O0 -o "$tmp/transform.spv" "$src"
{
    echo "/* transform_spv.h - made by examples/shaders/make_spv.sh from transform.comp: do not edit."
    echo "   The SPIR-V of out[i] = in[i] * 2654435761u + 1 (local_size_x 64, push constant n), as"
    echo "   little-endian words. Check it against the source with: examples/shaders/make_spv.sh --check */"
    echo "#include <stdint.h>"
    echo "static const uint32_t buffet_test_transform_spv[] = {"
    od -An -v -t x4 --endian=little "$tmp/transform.spv" | awk '
        { for (i = 1; i <= NF; i++) { line = line sprintf("0x%su,", $i); n++
              if (n % 8 == 0) { print "    " line; line = "" } else line = line " " } }
        END { if (line != "") { sub(/ $/, "", line); print "    " line } }'
    echo "};"
} > "$tmp/transform_spv.h"
if [ $check = 1 ]; then
    if cmp -s "$tmp/transform_spv.h" "$out"; then
        echo "make_spv.sh: transform_spv.h matches transform.comp"
    else
        echo "make_spv.sh: transform_spv.h differs from what transform.comp compiles to: run examples/shaders/make_spv.sh" >&2
        exit 1
    fi
else
    cp "$tmp/transform_spv.h" "$out"
    echo "make_spv.sh: wrote $out ($(wc -c < "$tmp/transform.spv") bytes of SPIR-V)"
fi
