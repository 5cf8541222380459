/* pkt_ring.pml - the ring under the packet pool's shared store (buffet_packet.h, >>ring:
   buffet__ring_put, buffet__ring_take, buffet__ring_wait), checked with spin by
   tools/check_model.sh. pkt_store.pml models the store built on it.

   WHAT THE C CODE IS. A DPDK-style multi-producer multi-consumer ring of pointers: a side
   claims an index with a CAS on its head, copies the slot, then publishes by moving its tail
   once every earlier claim on that side has published (buffet__ring_wait spins until
   tail == its claim). Claims are lock-free; publishing is not: a thread stalled between its
   claim and its publish stops every later claimant of its side. So the ring is BLOCKING (not
   lock-free, not even obstruction-free); it is free of deadlock and livelock when every
   thread keeps being scheduled (weak fairness). The model checks both statements.
   The store always moves one pointer per call (n == 1); each pointer is a batch (a free
   buffer whose data room lists the batch's other buffers), here an opaque identity 0..NB-1.

   STEP MAP (one Promela step per C atomic operation or plain shared access; arithmetic on
   locals is folded into the step that loads its operand):
     put   P1  head = LOAD(prod_head, RELAXED)                          buffet__ring_put
           P2  CAS(prod_head, &head, head+1, RELAXED); on failure head = the current value,
               retry P2
           P3  wait for room: LOAD(cons_tail, ACQUIRE) until head+1 - cons_tail - 1 <= mask
           P4  slots[head & mask] = obj                                 plain store
           P5  buffet__ring_wait(&prod_tail, head): LOAD(ACQUIRE) until equal
           P6  STORE(prod_tail, head+1, RELEASE)
     take  T1  head = LOAD(cons_head, RELAXED)                          buffet__ring_take
           T2  avail = LOAD(prod_tail, ACQUIRE) - head; 0: return 0
           T3  CAS(cons_head, &head, head+1, RELAXED); on failure head = current, back to T2
           T4  obj = slots[head & mask]                                 plain load
           T5  buffet__ring_wait(&cons_tail, head)
           T6  STORE(cons_tail, head+1, RELEASE); return 1

   SIZES. CAP = 4 slots. buffet_pkt_pool_create sizes the ring so that cap >= max/batch + 1,
   so at most CAP-1 batches exist: NB = CAP-1, and the ring can hold all of them. NPROC
   workers (2, or 3 with HOLD 1) loop forever (or OPS times), each taking a batch while it
   holds fewer than HOLD or putting back the one it took last (a cache is LIFO).

   COUNTERS AND ABA. The C counters are uint32_t that run free (slot = counter & mask, fill =
   difference mod 2^32). Here they are W = 3 bits (mod CMOD = 8) and wrap all the time, so the
   modular arithmetic is exercised. ABA: a thread loads head = h, is preempted, and the others
   claim exactly CMOD times, bringing head back to h: its CAS then succeeds on a stale value.
   A ghost monitor counts, per thread holding a loaded head, the claims made by others since
   (moved[]), and asserts moved == 0 at every successful CAS. The ASSUMPTION (DPDK's): a
   thread between its load of a head and its CAS is overtaken by at most D = CMOD - CAP
   claims; in C, 2^32 - cap claims, i.e. billions during one preemption of a few
   instructions. The model enforces it by disabling a claim that would overtake a holder
   D+1 times. D is the most for which T2's stale difference (prod_tail - an old head, at most
   NB + D) cannot wrap; with -DD=7 (CMOD - 1) the model is still safe (a wrapped difference
   can only make a take report empty), with -DD=8 the no-ABA assertion fails. -DABA drops
   the assumption and that assertion: spin finds the wrap and the batch it duplicates.

   ABSTRACTIONS. A slot that a take has read is marked EMPTY (the C code leaves the stale
   pointer): P4 asserts it overwrites only an EMPTY slot (no unread batch lost) and T4 that
   it reads a full one (a second read would be a duplicate); the correct algorithm never does
   either, so its behaviour is unchanged.

   MEMORY MODEL. Spin explores sequentially consistent interleavings only; the orders are
   argued in the C comments, not checked here: T2's acquire of prod_tail pairs with P6's
   release (chained through P5's acquiring waits), so a consumer sees the slot written at
   P4; P3's acquire of cons_tail pairs with T6's release, so a consumer's read at T4 happens
   before a producer of the next lap overwrites the slot. Under SC, P3 never waits (asserted):
   it exists for the memory order alone.

   PROPERTIES (all checked exhaustively for the sizes above):
     - no batch duplicated: a take reads only a batch that is in the ring (ghost own[]);
     - no batch lost: P4 never overwrites an unread slot, and whenever no operation is in
       flight the heads equal the tails and the entries [cons_tail, prod_tail) are exactly
       the batches the ghost says are in the ring, each once;
     - the ring never runs full (P3 never waits);
     - no ABA under the assumption above (assert at each successful CAS);
     - no deadlock (no invalid end state) and, with weak fairness, no cycle in which no
       operation completes (progress label at the top of the loop: a worker gets back there
       only by completing an operation);
     - expected to FAIL, which shows the ring is blocking: without fairness there is a
       non-progress cycle, a worker spinning at P5 or T5 behind a stalled claimant.
   Variants that spin must reject: -DBROKEN_NOWAIT (put publishes without waiting for the
   earlier claims: P5 dropped), -DABA (see above). */

#ifndef NPROC
#define NPROC 3
#endif
#define CAP   4              /* slots: a power of two */
#define RMASK (CAP - 1)
#define NB    (CAP - 1)      /* batches that can exist: max/batch <= cap - 1 */
#ifndef HOLD
#define HOLD  NB             /* batches a worker may hold */
#endif
#define CMOD  8              /* counters are mod 2^W, W = 3: more than CAP, as 2^32 > cap in C */
#define CMASK (CMOD - 1)
#ifndef D
#define D     (CMOD - CAP)      /* see COUNTERS AND ABA */
#endif
#define RING  255            /* own[]: in the ring */
#define EMPTY 254            /* a slot that was read (see ABSTRACTIONS) */

#define START (CMOD - 2)     /* the counters' first value: they wrap early even in short runs */
byte prod_head = (START + NB) & CMASK, prod_tail = (START + NB) & CMASK;
byte cons_head = START, cons_tail = START;
byte slots[CAP] = EMPTY;

/* ghost state: where each batch is, how many operations are in flight, the ABA monitor */
byte own[NB];
byte busy = 0;
#define PROD 0                /* the side of a head: [side * NPROC + thread] */
#define CONS NPROC
bool hold[2 * NPROC];         /* the thread holds a loaded value of that head */
byte moved[2 * NPROC];        /* claims by others since it loaded it */

/* Every holder of a stale head has been overtaken fewer than D times: a claim may happen. */
#define OK1(s, q) (!hold[s + q] || moved[s + q] < D)
#if NPROC == 2
#define ROOM(s) (OK1(s, 0) && OK1(s, 1))
#else
#define ROOM(s) (OK1(s, 0) && OK1(s, 1) && OK1(s, 2))
#endif
#ifdef ABA
#define BOUNDED(s) true
#else
#define BOUNDED(s) ROOM(s)
#endif

/* A claim overtakes every other thread holding a loaded value of that head (saturating). */
inline overtake(side) {
    qi = 0;
    do
    :: qi < NPROC ->
        if
        :: qi != me && hold[side + qi] && moved[side + qi] < CMOD -> moved[side + qi]++
        :: else
        fi;
        qi++
    :: else -> break
    od;
    qi = 0
}

/* No operation in flight: the ring holds exactly the batches the ghost says, each once. */
inline quiescent() {
    assert(prod_head == prod_tail && cons_head == cons_tail);
    qn = (prod_tail - cons_tail) & CMASK;
    assert(qn <= NB);
    qi = 0;
    do
    :: qi < qn -> seen[slots[(cons_tail + qi) & RMASK]]++; qi++
    :: else -> break
    od;
    qi = 0;
    do
    :: qi < NB ->
        assert(seen[qi] == (own[qi] == RING -> 1 : 0));
        seen[qi] = 0; qi++
    :: else -> break
    od;
    qi = 0; qn = 0
}

proctype worker(byte me) {
    byte seen[NB], qi, qn;   /* scratch of overtake() and quiescent(): 0 between steps */
    byte held[HOLD], nheld = 0;
    byte head, x, avail;
    bool claimed;
#ifdef OPS
    byte ops = 0;
#endif

    do
#ifdef OPS
    :: ops == OPS -> break
    :: ops < OPS -> ops++;
#else
    :: true ->
#endif
progress_top:
        if
        :: nheld < HOLD ->                                  /* buffet__ring_take(r, &x, 1) */
            atomic { busy++; head = cons_head; hold[CONS + me] = true; moved[CONS + me] = 0 }      /* T1 */
            do
            :: avail = (prod_tail - head) & CMASK;                                      /* T2 */
               if
               :: avail == 0 -> break
               :: else
               fi;
               atomic {                                                                 /* T3 */
                   if
                   :: cons_head == head && BOUNDED(CONS) ->
#ifndef ABA
                       assert(moved[CONS + me] == 0);
#endif
                       cons_head = (head + 1) & CMASK;
                       overtake(CONS);
                       claimed = true
                   :: cons_head != head -> head = cons_head; moved[CONS + me] = 0
                   fi
               }
               if
               :: claimed -> break
               :: else
               fi
            od;
            hold[CONS + me] = false; moved[CONS + me] = 0;
            if
            :: claimed ->
                atomic {                                                                /* T4 */
                    x = slots[head & RMASK]; slots[head & RMASK] = EMPTY;
                    assert(x != EMPTY && own[x] == RING); own[x] = me
                }
                do                                                                      /* T5 */
                :: cons_tail == head -> break
                :: else
                od;
                atomic {                                                                /* T6 */
                    cons_tail = (head + 1) & CMASK;
                    held[nheld] = x; nheld++;
                    busy--;
                    if
                    :: busy == 0 -> quiescent()
                    :: else
                    fi
                }
            :: else -> busy--                                   /* empty: return 0 */
            fi
        :: nheld > 0 ->                                     /* buffet__ring_put(r, &x, 1) */
            nheld--; x = held[nheld]; held[nheld] = 0;
            atomic { busy++; head = prod_head; hold[PROD + me] = true; moved[PROD + me] = 0 }      /* P1 */
            do
            :: atomic {                                                                 /* P2 */
                   if
                   :: prod_head == head && BOUNDED(PROD) ->
#ifndef ABA
                       assert(moved[PROD + me] == 0);
#endif
                       prod_head = (head + 1) & CMASK;
                       overtake(PROD);
                       claimed = true
                   :: prod_head != head -> head = prod_head; moved[PROD + me] = 0
                   fi
               }
               if
               :: claimed -> break
               :: else
               fi
            od;
            hold[PROD + me] = false; moved[PROD + me] = 0;
            do                                                                          /* P3 */
            :: ((head - cons_tail) & CMASK) <= RMASK -> break
            :: else ->
#ifndef ABA
               assert(false)       /* never, under SC: the ring never runs full */
#else
               skip
#endif
            od;
            atomic {                                                                    /* P4 */
                assert(own[x] == me);
                assert(slots[head & RMASK] == EMPTY);    /* no unread batch overwritten */
                slots[head & RMASK] = x; own[x] = RING
            }
#ifndef BROKEN_NOWAIT
            do                                                                          /* P5 */
            :: prod_tail == head -> break
            :: else
            od;
#endif
            atomic {                                                                    /* P6 */
                prod_tail = (head + 1) & CMASK;
                busy--;
                if
                :: busy == 0 -> quiescent()
                :: else
                fi
            }
        fi;
        head = 0; x = 0; avail = 0; claimed = false
    od
}

init {
    byte i = 0;
    atomic {
        do
        :: i < NB -> slots[(START + i) & RMASK] = i; own[i] = RING; i++
        :: else -> break
        od;
        i = 0;
        do
        :: i < NPROC -> run worker(i); i++
        :: else -> break
        od
    }
}
