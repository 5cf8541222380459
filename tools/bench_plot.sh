#!/usr/bin/env bash
# bench_plot.sh - draws the benchmark summary's ratios as a chart (`make bench-plot`), because a
# reader compares allocators by looking at a chart before reading a table. The figures are not
# measured here: they are copied by hand from the README's summary table into a data file, so the
# chart shows exactly what the table says, and redrawing it needs no benchmark run.
#
# Usage: tools/bench_plot.sh [DATA [SVG]]   (paths relative to the repository root)
#   DATA  one comparison a line: "label in double quotes" ratio (peer time / buffet time, or
#         buffet / peer for throughput; above 1: buffet faster); '#' starts a comment line.
#         Default docs/bench_ratios.dat.
#   SVG   the chart to write, default docs/bench_ratios.svg (written only when gnuplot succeeds).
# Horizontal bars from parity (1.0, a dashed line) to each ratio, on a log scale: the ratios span
# 0.3x to 56x today, and 0.5x and 2x must look equally far from parity. Green: buffet faster; red: slower.
# Exit 0: chart written; 1: bad data or gnuplot failed; 77 after a SKIP line: no gnuplot.
set -eu
cd "$(dirname "$0")/.."
. tools/common.sh

data=${1:-docs/bench_ratios.dat}
svg=${2:-docs/bench_ratios.svg}

command -v gnuplot >/dev/null 2>&1 || unavailable gnuplot "not installed (apt-get install gnuplot-nox)"
[ -r "$data" ] || { echo "bench_plot: cannot read $data" >&2; exit 1; }

# Check every data line before drawing: a typo would otherwise become a silently missing bar.
# Prints the number of rows, and the smallest and largest ratio (for the axis range).
stats=$(awk '
    /^[ \t]*(#|$)/ { next }
    {
        if (match($0, /^"[^"]+"[ \t]+/) == 0) { printf "%d: no quoted label\n", NR; bad = 1; next }
        r = substr($0, RLENGTH + 1)
        sub(/[ \t]+$/, "", r)
        if (r !~ /^[0-9]*\.?[0-9]+$/ || r + 0 <= 0) { printf "%d: ratio \"%s\"\n", NR, r; bad = 1; next }
        n++
        if (n == 1 || r + 0 < lo) lo = r + 0
        if (n == 1 || r + 0 > hi) hi = r + 0
    }
    END {
        if (bad) exit 1
        if (n == 0) { print "no data lines"; exit 1 }
        print n, lo, hi
    }' "$data") || { echo "bench_plot: $data: $stats" >&2; exit 1; }
read -r rows lo hi <<<"$stats"

# The axis runs over whole decades around the data and parity.
range=$(awk -v lo="$lo" -v hi="$hi" 'BEGIN {
    a = 1; while (a > lo) a /= 10
    b = 1; while (b < hi) b *= 10
    print a, b }')
read -r xmin xmax <<<"$range"

height=$((110 + 19 * rows))
tmp="$svg.tmp.$$"
trap 'rm -f "$tmp"' EXIT

gnuplot <<EOF
set terminal svg size 1000,$height fixed noenhanced font "sans,12" background rgb "white"
set encoding utf8
set output "$tmp"
set title "buffet against its peers: peer time / buffet time (log scale; right of 1, buffet is faster)"
set logscale x 10
set xrange [$xmin:$xmax]
set xtics ("0.001×" 0.001, "0.01×" 0.01, "0.1×" 0.1, "0.2×" 0.2, "0.5×" 0.5, "1×" 1, "2×" 2, \
           "5×" 5, "10×" 10, "20×" 20, "50×" 50, "100×" 100, "1000×" 1000)
set mxtics default
set grid xtics lc rgb "#dddddd" lt 1
set yrange [$rows - 0.4:-0.6]
set ytics scale 0 font "sans,11"
set lmargin 46
set rmargin 4
set key off
set border 1
set xtics nomirror
set style fill solid 0.85 noborder
set arrow from 1, graph 0 to 1, graph 1 nohead lc rgb "#333333" lw 1.5 dt 2 front
lo(r) = r < 1 ? r : 1
hi(r) = r < 1 ? 1 : r
plot "$data" using 2:0:(lo(\$2)):(hi(\$2)):(\$0 - 0.36):(\$0 + 0.36): \
                    (\$2 >= 1 ? 0x2e7d32 : 0xc62828):ytic(1) with boxxyerror lc rgb variable, \
     "" using (\$2 >= 1 ? \$2 * 1.07 : 1/0):0:(strcol(2) . "×") with labels left font "sans,10", \
     "" using (\$2 < 1 ? \$2 / 1.07 : 1/0):0:(strcol(2) . "×") with labels right font "sans,10"
EOF

mv "$tmp" "$svg"
trap - EXIT
echo "bench_plot: $svg ($rows comparisons from $data, $lo× to $hi×)"
