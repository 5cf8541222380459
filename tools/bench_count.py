#!/usr/bin/env python3
"""bench_count.py DIR - the instruction-count table of `make bench-count`.

DIR holds callgrind's dumps of the benches run with BUFFET_BENCH_COUNT=1 (tools/run_tests.sh
count): bench.h's bench_run dumps each contestant's run on its own, named
"bench-count|TABLE|NAME|OPERATIONS". Prints, per bench and table, instructions per operation and
the ratio to buffet's row (the first whose name starts with "buffet", or the one that ends with
the same parenthesised tag, such as "(raw)"): above 1 means the peer executes more instructions
than buffet. Exit 1 when no dump was found."""
import collections
import os
import re
import sys


def dumps(folder):
    """(bench, pid, dump number, table, name, operations, instructions) for every counted run."""
    found = []
    for fname in os.listdir(folder):
        m = re.fullmatch(r"(bench_\w+)\.(\d+)\.out\.(\d+)", fname)
        if not m:
            continue
        label = total = None
        with open(os.path.join(folder, fname), encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("desc: Trigger: Client Request: bench-count|"):
                    label = line.split("Client Request: ", 1)[1].rstrip("\n")
                elif line.startswith(("summary:", "totals:")):
                    total = int(line.split()[1])
        if label and total is not None:
            _, table, name, ops = label.split("|", 3)
            found.append((m.group(1), int(m.group(2)), int(m.group(3)), table, name, float(ops), total))
    found.sort(key=lambda d: (d[0], d[1], d[2]))
    return found


def main():
    rows = dumps(sys.argv[1] if len(sys.argv) > 1 else "build/count")
    if not rows:
        print("bench_count: no counted runs found (was BUFFET_BENCH_COUNT=1 set, under callgrind?)")
        return 1
    tables = collections.OrderedDict()
    for bench, _, _, table, name, ops, ir in rows:
        tables.setdefault((bench, table), []).append((name, ir / ops if ops else 0.0))
    print("\ninstructions per operation (valgrind --tool=callgrind; each contestant's run counted alone):")
    bench_now = None
    for (bench, table), entries in tables.items():
        if bench != bench_now:
            print("\n%s" % bench)
            bench_now = bench
        print("  %s" % (table or "(untitled)"))
        first = next((v for n, v in entries if n.startswith("buffet")), None)
        for name, per_op in entries:
            # a peer's row tagged "(raw)" is compared with buffet's row of the same tag, if any
            tag = re.search(r"\([^()]*\)$", name)
            ref = next((v for n, v in entries if n.startswith("buffet") and tag and n.endswith(tag.group(0))), first)
            ratio = "%8.2fx" % (per_op / ref) if ref and not name.startswith("buffet") else ""
            print("    %-58s %12.1f %s" % (name, per_op, ratio))
    print("\n(ratios: the peer's instructions over buffet's; above 1: buffet executes fewer)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
