#!/usr/bin/env bash
# check_model.sh - checks the Promela models of the packet pool's shared store
# (tests/model/pkt_ring.pml: the lock-free ring; tests/model/pkt_store.pml: the store of
# batches, pending and counter around it) with spin. Each check is one configuration: spin
# writes its verifier (pan.c), gcc builds it in build/model/NAME/, and pan searches the whole
# state space (no bitstate, no hash compaction). A check passes when pan finishes with the
# expected result: "errors: 0" for the models of the C code, at least one error for the
# deliberately broken variants (which shows that the properties can fail).
#
# Usage: tools/check_model.sh [--full] [NAME...]
#   default   the checks below that fit in about two minutes on two cores
#   --full    adds the larger configurations (about 15 minutes, 3 GB per verifier, 6 GB for one)
#   NAME...   only these checks
# Environment: MODEL_JOBS (parallel verifiers, default 2), MODEL_MEMLIM (MB per verifier,
# default 3072), MODEL_TIMEOUT (seconds per verifier, default 900).
# Exit 0: every check as expected; 1: one was not; 77 after a SKIP line: no spin or no gcc.
set -eu
cd "$(dirname "$0")/.."
. tools/common.sh

# NAME|MODEL|SPIN FLAGS|SEARCH|EXPECT|WHAT[|MB]
#   SEARCH: safety (assertions, invalid end states; depth-first), bfs (the same breadth-first:
#   for the deep ones), live (non-progress cycles under weak fairness), unfair (non-progress
#   cycles, no fairness).  EXPECT: 0, or fail.  MB: the memory limit when it must exceed
#   MODEL_MEMLIM.
# The C code counts `stored` as the model's FIX_STORED does (buffet_packet.h, store_put): the
# model without it is the code as it was, whose livelock the check store-live-old keeps showing:
# buffet__pkt_take busy-waited, taking the pool's mutex twice a round, for buffers that `stored`
# counted but whose owner needed that mutex to hand them over (see pkt_store.pml, PROPERTIES).
CHECKS_DEFAULT='
store|pkt_store.pml|-DHOLD=2 -DFIX_STORED|safety|0|store: no buffer lost or duplicated, stored exact, no ABA
ring-2|pkt_ring.pml|-DNPROC=2|safety|0|ring, 2 threads forever: no batch lost or duplicated, never full, no ABA
ring-2-live|pkt_ring.pml|-DNPROC=2|live|0|ring, 2 threads: progress with weak fairness
ring-3|pkt_ring.pml|-DNPROC=3 -DHOLD=1 -DOPS=4|safety|0|ring, 3 threads, 4 operations each
store-live|pkt_store.pml|-DHOLD=1 -DFIX_STORED|live|0|store: progress with weak fairness, glibc-like unfair mutex
store-live-fair|pkt_store.pml|-DHOLD=1 -DFIX_STORED -DFAIR_MUTEX|live|0|store: progress with a FIFO mutex
store-live-old|pkt_store.pml|-DHOLD=1|live|fail|OLD store (stored counted a rest on its way to pending): a taker livelocks
ring-2-block|pkt_ring.pml|-DNPROC=2|unfair|fail|ring without fairness: a stalled claimant blocks its side (not lock-free)
ring-nowait|pkt_ring.pml|-DNPROC=2 -DBROKEN_NOWAIT|safety|fail|BROKEN ring: put publishes without waiting for earlier claims
ring-aba|pkt_ring.pml|-DNPROC=2 -DABA|safety|fail|BROKEN assumption: counters wrap during one preemption (ABA)
store-broken|pkt_store.pml|-DHOLD=2 -DBROKEN_PENDING|safety|fail|BROKEN store: the rest of a batch goes to pending without the mutex (lost, duplicated or overflowed)
'
CHECKS_FULL='
ring-3-ops6|pkt_ring.pml|-DNPROC=3 -DHOLD=1 -DOPS=6|safety|0|ring, 3 threads, 6 operations each
ring-3-forever|pkt_ring.pml|-DNPROC=3 -DHOLD=1|bfs|0|ring, 3 threads forever (about 6 GB)|8000
store-d2|pkt_store.pml|-DHOLD=2 -DD=2 -DFIX_STORED|safety|0|store, the widest ABA bound the 2-bit counters allow
store-fine|pkt_store.pml|-DHOLD=2 -DFINE -DFIX_STORED|safety|0|store, every slot and area access its own step
store-live-2|pkt_store.pml|-DHOLD=2 -DFIX_STORED|live|0|store: progress, unfair mutex, HOLD 2
'

# one NAME: build and run one check; its summary goes to build/model/NAME/result.
one() {
    local line name model flags search expect what mem dir cc run rc out errors states depth secs verdict
    line=$(printf '%s\n%s\n' "$CHECKS_DEFAULT" "$CHECKS_FULL" | grep "^$1|") || { echo "no check $1" >&2; return 1; }
    IFS='|' read -r name model flags search expect what mem <<<"$line"
    dir=build/model/$name
    rm -rf "$dir"
    mkdir -p "$dir"
    case $search in
        safety) cc="-DSAFETY"; run="" ;;
        bfs) cc="-DSAFETY -DBFS"; run="" ;;
        live) cc="-DNP"; run="-l -f" ;;
        unfair) cc="-DNP"; run="-l" ;;
    esac
    # shellcheck disable=SC2086 # flags are word lists
    (cd "$dir" && spin $flags -a "../../../tests/model/$model" >spin.log 2>&1 &&
        gcc -O1 -w $cc -DMEMLIM="${mem:-${MODEL_MEMLIM:-3072}}" -DCOLLAPSE -o pan pan.c >gcc.log 2>&1) || {
        echo "FAIL $name: spin or gcc failed (see $dir)" >"$dir/result"
        return 0
    }
    rc=0
    # -m: depth limit (deep: the workers loop forever); -w26: 64M hash slots; -E is not given,
    # so invalid end states (deadlocks) count as errors.
    # shellcheck disable=SC2086
    (cd "$dir" && timeout "${MODEL_TIMEOUT:-900}" ./pan -m20000000 -w26 $run >pan.out 2>&1) || rc=$?
    out=$dir/pan.out
    errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$out" | tail -1)
    states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$out" | tail -1)
    depth=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' "$out" | tail -1)
    secs=$(sed -n 's/.*elapsed time \([0-9.e+]*\) seconds.*/\1/p' "$out" | tail -1)
    verdict=ok
    if [ "$rc" = 124 ] || [ -z "$errors" ]; then
        verdict=FAIL what="$what: pan did not finish (rc $rc, see $out)"
    elif [ "$expect" = 0 ]; then
        if [ "$errors" != 0 ]; then
            verdict=FAIL what="$what: $(grep -m1 -E 'violated|cycle|invalid end' "$out" || echo error)"
        elif grep -q -E 'max search depth too small|out of memory' "$out"; then
            verdict=FAIL what="$what: search incomplete ($(grep -m1 -E 'too small|out of memory' "$out"))"
        fi
    elif [ "$errors" = 0 ]; then
        verdict=FAIL what="$what: spin found no error, but this variant must fail"
    else
        what="$what: $(grep -m1 -E 'violated|cycle|invalid end' "$out" | sed 's/^pan:1: //')"
    fi
    printf '%-4s %-17s errors %-2s states %-10s depth %-9s %6ss  %s\n' \
        "$verdict" "$name" "$errors" "${states:-?}" "${depth:-?}" "${secs:-?}" "$what" >"$dir/result"
}

if [ "${1:-}" = --one ]; then
    one "$2"
    exit 0
fi

command -v spin >/dev/null || unavailable spin "not installed"
command -v gcc >/dev/null || unavailable gcc "not installed (spin's verifiers are C)"

checks=$CHECKS_DEFAULT
if [ "${1:-}" = --full ]; then
    checks="$checks$CHECKS_FULL"
    shift
fi
if [ $# -gt 0 ]; then
    names="$*"
else
    names=$(printf '%s\n' "$checks" | sed -n 's/^\([^|]*\)|.*/\1/p' | tr '\n' ' ')
fi

echo "spin: $(spin -V | head -1); searching exhaustively, ${MODEL_JOBS:-2} at a time"
start=$SECONDS
# The first checks are the largest: they start first, the small ones fill in beside them.
# shellcheck disable=SC2086
printf '%s\n' $names | xargs -P "${MODEL_JOBS:-2}" -I{} "$PWD/tools/check_model.sh" --one {}
failed=0
for name in $names; do
    if [ -f "build/model/$name/result" ]; then
        cat "build/model/$name/result"
        grep -q '^ok ' "build/model/$name/result" || failed=1
    else
        echo "FAIL $name: no result"
        failed=1
    fi
done
echo "model checks: $((SECONDS - start)) s, $([ $failed = 0 ] && echo passed || echo FAILED)"
exit $failed
