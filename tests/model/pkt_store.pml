/* pkt_store.pml - the packet pool's shared store of one class (buffet_packet.h, >>store on
   >>ring), checked with spin by tools/check_model.sh. pkt_ring.pml checks the ring alone in
   more depth (three threads, the ABA assumption, why it is blocking).

   WHAT THE C CODE IS. Not one lock-free structure but three parts: a ring of full batches
   (buffet__ring: lock-free claims by CAS, blocking publication in claim order), a `pending`
   array of odd buffers under the pool's mutex, and the relaxed counter `stored` (buffers in
   the ring's batches and in pending). A batch is a free buffer (its head: the pointer in the
   ring) whose data room holds the count and the pointers of the batch's other buffers.
   Whole batches move without the mutex; odd counts take it.

   STEP MAP. One Promela step per C atomic operation or plain shared access; arithmetic on
   locals is folded into a neighbouring step. A critical section that touches only data
   under the mutex (pending, created) is one step from lock to unlock, as no other thread
   can see its middle; one that contains a ring put is split around the ring's steps.
     store_put   SP1 FETCH_ADD(stored, n, RELAXED)                   buffet__pkt_store_put
                 SP2 each full batch: batch_push                     buffet__pkt_batch_push
                 SP3 the rest: lock (unless locked); store_pending; unlock
     batch_push  BP1 memcpy(area(objs[0]), objs + 1)   (plain)       then ring_put(objs[0])
     store_pending   pending[count++] = x; a full pending is batch_push'ed, count = 0
                                                                     buffet__pkt_store_pending
     store_take  ST1 ring_take(&h)                                   buffet__pkt_store_take
                 ST2 batch_open: memcpy(one + 1, area(h))   (plain)  buffet__pkt_batch_open
                 ST3 FETCH_SUB(stored, use, RELAXED)
                 ST4 use < batch: lock; store_pending(rest); unlock
                 ST5 ring dry and got < want: lock; take from pending; unlock  (one step)
                 ST6 FETCH_SUB(stored, taken, RELAXED)
     pkt_take    PT1 store_take(n)                                   buffet__pkt_take
                 PT2 while got < need: lock; grew = LOAD(stored, ACQUIRE) >= need - got, or
                     else grow() (buffet__pkt_grow: created += k, store_put(new, locked));
                     unlock
                 PT3 more = store_take(n - got); stop when !grew && more == 0
     ring_put    P1 LOAD(prod_head); P2 CAS(prod_head) until it succeeds; P3 wait for room,
                 LOAD(cons_tail, ACQUIRE); P4 slot store; P5 buffet__ring_wait(prod_tail);
                 P6 STORE(prod_tail, RELEASE)                        buffet__ring_put
     ring_take   T1 LOAD(cons_head); T2 LOAD(prod_tail, ACQUIRE), 0: empty; T3 CAS(cons_head);
                 T4 slot load; T5 buffet__ring_wait(cons_tail); T6 STORE(cons_tail, RELEASE)
                                                                     buffet__ring_take
   The callers (each worker is a thread with a LIFO cache of up to HOLD buffers, looping
   forever):
     refill, alloc_bulk  pkt_take(n, need): n in 1..room; need 1 (buffet__pkt_alloc_slow, an
                         allocation without a cache) or n (buffet_pkt_alloc_bulk)
     flush, spill        store_put(the cache's top n, unlocked)  (buffet_pkt_cache_flush,
                         the half-cache spill in buffet__pkt_put)
     free, no cache      lock; store_put(h, 1, locked); unlock   (buffet__pkt_put)

   SIZES. Batch B = 2 buffers, MAX = 3 buffers: one batch at most, a ring of CAP = 2 slots
   (cap >= max/batch + 1, as buffet_pkt_pool_create sizes it). The pool was created with
   initial 1 and grow 2: buffers 0 and 1 are a batch in the ring; a grow during the run
   (clamped to max) makes buffer 2, which goes to pending. Two workers, HOLD 2 (the default)
   or 1 (the progress checks).

   ASSUMPTIONS AND ABSTRACTIONS.
   - Sequential consistency (spin). The memory orders are argued in the C comments.
   - Counters are 2 bits (mod 4) instead of 32 and wrap freely; a thread between its load of
     a head and its CAS is overtaken by at most D claims (C: up to 2^32 - cap). The ghost
     monitor moved[] enforces that and asserts that no CAS succeeds on a stale value. D is 1
     by default (a CAS can still fail, on every path), -DD=2 (CMOD - CAP, the widest exact
     bound) costs a third more states; pkt_ring.pml checks the bound in depth and shows with
     -DABA what breaks without it.
   - A slot or batch area that has been read is marked NONE (the C code leaves the stale
     bytes): a second read is then an error at once. The correct algorithm never does it.
   - memcpy of a batch area is one step: the area belongs to whoever holds its head
     (asserted at each access), so no other thread can see its middle.
   - Without -DFINE, steps that touch only memory the thread owns exclusively (asserted
     there) are merged with the next or previous shared step, a sound reduction: BP1 with
     P1, the slot store P4 with P3 (the slot is the claimant's: P3 never waits, asserted, and
     pkt_ring.pml checks the slot is empty), T4 with a successful T3, ST2 with T6. -DFINE
     keeps every step apart (slower; tools/check_model.sh --full runs it).
   - pthread_mutex_lock is unfair, as glibc's is: any waiter, or the thread that just
     unlocked, may take it next. -DFAIR_MUTEX makes it a ticket lock (FIFO).

   PROPERTIES.
   - no buffer duplicated: every buffer taken from the ring or from pending is in the store
     (ghost own[]), and every area is written and read by the owner of its buffer;
   - no buffer lost: whenever no operation is in flight, the ring's batches and pending hold
     exactly the buffers the ghost says are in the store, each once, `stored` counts them,
     and the unmade buffer is still unmade unless a grow made it; `stored` never goes
     negative (size_t underflow);
   - the ring never runs full; no ABA (within the assumption); no deadlock;
   - progress (with weak fairness, no cycle in which no operation completes): FAILS with the
     unfair mutex, a defect of buffet__pkt_take. A thread in its loop sees `stored` count
     buffers that another thread has added (SP1, or the rest of a batch before ST4) but can
     only hand over after taking the mutex; the loop takes and releases the mutex twice per
     round without pausing, so the other thread can lose the mutex every time. It holds with
     -DFAIR_MUTEX, and with -DFIX_STORED (the fix proposed: count the odd buffers when they
     enter pending, under the mutex), with the unfair mutex.
   -DBROKEN_PENDING (a take hands the rest of its batch to pending without the mutex) must
   be rejected. */

#ifndef NPROC
#define NPROC 2
#endif
#define B     2              /* buffers per batch */
#define MAX   3              /* buffers of the class */
#define GROW  2
#define CAP   2              /* ring slots: the power of two >= MAX / B + 1 */
#define RMASK (CAP - 1)
#define CMOD  4              /* counters mod 2^2: more than CAP, as 2^32 > cap in C */
#define CMASK (CMOD - 1)
#ifndef D
#define D     1              /* see ASSUMPTIONS */
#endif
#ifndef HOLD
#define HOLD  3              /* cache size */
#endif
#define START (CMOD - 2)

/* own[]: a worker's id, or where the buffer is */
#define RING  200            /* in a batch in the ring (its head or its area) */
#define PEND  201            /* in pending */
#define NEW   202            /* not created yet */
#define NONE  255            /* an empty slot, area or pending entry */

byte prod_head = (START + 1) & CMASK, prod_tail = (START + 1) & CMASK;
byte cons_head = START, cons_tail = START;
byte slots[CAP] = NONE;
byte area[MAX] = NONE;       /* the other buffer of the batch a buffer heads */
byte pending[B] = NONE, pending_count = 0;
byte mu = 0;                 /* the pool's mutex: 0, or the holder + 1 */
short stored = 0;            /* size_t in C: asserted never negative */
byte created = 0;

/* ghost */
byte own[MAX];
byte busy = 0;
#define PROD 0
#define CONS NPROC
bool hold[2 * NPROC];
byte moved[2 * NPROC];

#define OK1(s, q) (!hold[s + q] || moved[s + q] < D)
#if NPROC == 2
#define ROOM(s) (OK1(s, 0) && OK1(s, 1))
#else
#define ROOM(s) (OK1(s, 0) && OK1(s, 1) && OK1(s, 2))
#endif

/* pthread_mutex_lock/unlock: by default unfair (any waiter may win, the releasing thread
   included: glibc's mutex gives no order); -DFAIR_MUTEX makes it a ticket lock (FIFO). */
#ifdef FAIR_MUTEX
byte ticket = 0, serving = 0;  /* mod 4: at most NPROC < 4 tickets out */
#define LOCK    atomic { myt = ticket; ticket = (ticket + 1) & 3 }; \
                atomic { serving == myt -> mu = me + 1; myt = 0 }
#define UNLOCK  assert(mu == me + 1); mu = 0; serving = (serving + 1) & 3
#else
#define LOCK    atomic { mu == 0 -> mu = me + 1 }
#define UNLOCK  assert(mu == me + 1); mu = 0
#endif

/* -DFIX_STORED: the fix suggested for the progress defect (see the report): `stored` counts
   the odd buffers only once they are in pending, so it never counts buffers whose arrival
   waits for the mutex. */
#ifdef FIX_STORED
#define PUT_COUNT(n)   (n - n % B)
#define PEND_COUNT     stored++
#else
#define PUT_COUNT(n)   n
#define PEND_COUNT     skip
#endif

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

/* No operation in flight: the store holds exactly what the ghost says, each buffer once. */
inline quiescent() {
    assert(prod_head == prod_tail && cons_head == cons_tail && mu == 0);
    qn = (prod_tail - cons_tail) & CMASK;
    assert(qn <= MAX / B);
    qi = 0;
    do
    :: qi < qn ->
        qh = slots[(cons_tail + qi) & RMASK];
        assert(qh != NONE && area[qh] != NONE);
        seen[qh]++; seen[area[qh]]++;
        qi++
    :: else -> break
    od;
    qi = 0;
    do
    :: qi < pending_count -> seen[pending[qi]]++; qi++
    :: else -> break
    od;
    qi = 0; qn = 0;
    do
    :: qi < MAX ->
        assert(seen[qi] == (own[qi] == RING || own[qi] == PEND -> 1 : 0));
        assert(own[qi] != PEND || seen[qi] == 1);
        qn = qn + seen[qi];
        seen[qi] = 0; qi++
    :: else -> break
    od;
    assert(stored == qn);
    assert(created == MAX || own[MAX - 1] == NEW);
    qi = 0; qn = 0; qh = 0
}

inline op_end() {
    busy--;
    if
    :: busy == 0 -> quiescent()
    :: else
    fi
}

/* The ring's slot accesses and batch_open's read of the area (see ring_put, ring_take). */
#define PUT_SLOT(x, from) \
    assert(slots[head & RMASK] == NONE && own[x] == from && own[area[x]] == from); \
    slots[head & RMASK] = x; own[x] = RING; own[area[x]] = RING
#define TAKE_SLOT \
    h = slots[head & RMASK]; slots[head & RMASK] = NONE; \
    assert(h != NONE && own[h] == RING); own[h] = me
#define OPEN_BATCH \
    assert(own[h] == me); \
    rest = area[h]; area[h] = NONE; \
    assert(rest != NONE && own[rest] == RING); own[rest] = me

/* buffet__ring_put(r, &x, 1) after batch_push's BP1 (area[x] = other). Ghost: the batch
   headed by x enters the ring at P4, from `from` (the worker, or PEND). Without -DFINE, BP1
   is folded into P1 and P4 into P3's last check (see ABSTRACTIONS). */
inline ring_put(x, other, from) {
#ifdef FINE
    atomic { assert(own[x] == from && own[other] == from); area[x] = other }        /* BP1 */
    atomic { head = prod_head; hold[PROD + me] = true; moved[PROD + me] = 0 }       /* P1 */
#else
    atomic {                                                                  /* BP1 + P1 */
        assert(own[x] == from && own[other] == from); area[x] = other;
        head = prod_head; hold[PROD + me] = true; moved[PROD + me] = 0
    }
#endif
    do
    :: atomic {                                                                       /* P2 */
           if
           :: prod_head == head && ROOM(PROD) ->
               assert(moved[PROD + me] == 0);
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
    hold[PROD + me] = false; moved[PROD + me] = 0; claimed = false;
#ifdef FINE
    do                                                                                /* P3 */
    :: ((head - cons_tail) & CMASK) <= RMASK -> break
    :: else -> assert(false)    /* never, under SC: the ring never runs full */
    od;
    atomic { PUT_SLOT(x, from) }                                                     /* P4 */
#else
    atomic {                                                                    /* P3 + P4 */
        assert(((head - cons_tail) & CMASK) <= RMASK);    /* P3 never waits under SC */
        PUT_SLOT(x, from)
    }
#endif
    do                                                                                /* P5 */
    :: prod_tail == head -> break
    :: else
    od;
    prod_tail = (head + 1) & CMASK;                                                   /* P6 */
    head = 0
}

/* buffet__ring_take(r, &h, 1) and batch_open's ST2 (rest = area[h]): claimed = whether it got
   one. Ghost: h and rest become the worker's. Without -DFINE, T4 is folded into a successful
   T3 and ST2 into T6. */
inline ring_take() {
    atomic { head = cons_head; hold[CONS + me] = true; moved[CONS + me] = 0 }       /* T1 */
    do
    :: avail = (prod_tail - head) & CMASK;                                           /* T2 */
       if
       :: avail == 0 -> break
       :: else
       fi;
       atomic {                                                                       /* T3 */
           if
           :: cons_head == head && ROOM(CONS) ->
               assert(moved[CONS + me] == 0);
               cons_head = (head + 1) & CMASK;
               overtake(CONS);
               claimed = true;
#ifndef FINE
               TAKE_SLOT                                                              /* T4 */
#endif
           :: cons_head != head -> head = cons_head; moved[CONS + me] = 0
           fi
       }
       if
       :: claimed -> break
       :: else
       fi
    od;
    hold[CONS + me] = false; moved[CONS + me] = 0; avail = 0;
    if
    :: claimed ->
#ifdef FINE
        atomic { TAKE_SLOT }                                                          /* T4 */
#endif
        do                                                                            /* T5 */
        :: cons_tail == head -> break
        :: else
        od;
#ifdef FINE
        cons_tail = (head + 1) & CMASK;                                               /* T6 */
        atomic { OPEN_BATCH }                                                         /* ST2 */
#else
        atomic { cons_tail = (head + 1) & CMASK; OPEN_BATCH }                     /* T6 + ST2 */
#endif
    :: else
    fi;
    head = 0
}

#ifdef BROKEN_PENDING
#define BROKEN_OK true
#else
#define BROKEN_OK false
#endif

/* buffet__pkt_batch_push(objs = pending): under the lock. */
inline push_pending() {
    assert(mu == me + 1 || BROKEN_OK);
    ring_put(pending[0], pending[1], PEND);
    pending[0] = NONE; pending[1] = NONE; pending_count = 0
}

/* buffet__pkt_store_pending(p, k, &x, 1), with the lock held: x joins pending (B == 2: it
   holds at most one buffer, so x completes a batch or waits alone). */
inline pend_one(x) {
#ifdef BROKEN_PENDING
    /* c->pending[c->pending_count++] = x as the three accesses it is, racing now */
    pc = pending_count;
    atomic { assert(own[x] == me); pending[pc] = x; own[x] = PEND; PEND_COUNT }
    pending_count = pc + 1; pc = 0;
#else
    atomic {
        assert(mu == me + 1);
        assert(own[x] == me);
        pending[pending_count] = x; pending_count++; own[x] = PEND;
        PEND_COUNT
    }
#endif
    if
    :: pending_count == B -> push_pending()
    :: else
    fi
}

/* buffet__pkt_store_put(p, k, objs + base, n, locked), objs[base..base+n) the worker's. */
inline store_put(locked, base) {
    stored = stored + PUT_COUNT(n);                                                   /* SP1 */
    i = 0;
    do
    :: n - i >= B ->                                                                  /* SP2 */
        ring_put(objs[base + i], objs[base + i + 1], me);                             /* BP1 */
        objs[base + i] = NONE; objs[base + i + 1] = NONE;
        i = i + B
    :: else -> break
    od;
    if
    :: n > i ->                                                                       /* SP3 */
        if
        :: !locked -> LOCK
        :: else
        fi;
        pend_one(objs[base + i]);       /* n - i < B == 2: one buffer */
        objs[base + i] = NONE;
        if
        :: !locked -> UNLOCK
        :: else
        fi
    :: else
    fi;
    i = 0
}

/* buffet__pkt_store_take(p, k, objs + got, want - got): adds to got. */
inline store_take() {
    do
    :: got < want ->
        ring_take();                                                                  /* ST1 */
        if
        :: !claimed -> break
        :: else
        fi;
        claimed = false;
        objs[got] = h; got++; h = 0;
        if
        :: got < want ->
            objs[got] = rest; got++;
            atomic { assert(stored >= B); stored = stored - B }                       /* ST3 */
        :: else ->
#ifdef FIX_STORED
            atomic { assert(stored >= B); stored = stored - B }                       /* ST3 */
#else
            atomic { assert(stored >= 1); stored = stored - 1 }                       /* ST3 */
#endif
#ifndef BROKEN_PENDING
            LOCK;                                                                     /* ST4 */
#endif
            pend_one(rest);
#ifndef BROKEN_PENDING
            UNLOCK
#endif
        fi;
        rest = 0
    :: else -> break
    od;
    claimed = false;
    if
    :: got < want ->                                                                  /* ST5 */
#ifdef FAIR_MUTEX
        atomic { myt = ticket; ticket = (ticket + 1) & 3 };
        atomic {
            serving == myt -> myt = 0;
#else
        atomic {
            mu == 0 ->
#endif
            i = 0;
            do
            :: i < pending_count && got + i < want ->
                objs[got + i] = pending[pending_count - 1 - i];
                pending[pending_count - 1 - i] = NONE;
                assert(own[objs[got + i]] == PEND); own[objs[got + i]] = me;
                i++
            :: else -> break
            od;
            pending_count = pending_count - i;
#ifdef FAIR_MUTEX
            serving = (serving + 1) & 3
#else
            skip
#endif
        }
        if
        :: i > 0 -> atomic { assert(stored >= i); stored = stored - i }               /* ST6 */
        :: else
        fi;
        got = got + i; i = 0
    :: else
    fi
}

/* buffet__pkt_grow under the lock: make min(GROW, MAX - created) buffers and store_put them
   (locked). grew = whether it made any. */
inline grow() {
    if
    :: created >= MAX -> grew = false
    :: else ->
        atomic {
            assert(mu == me + 1);
            n = (MAX - created < GROW -> MAX - created : GROW);
            i = 0;
            do
            :: i < n ->      /* its own array in C (`batch`): after the taken ones here */
                objs[got + i] = created + i; assert(own[created + i] == NEW); own[created + i] = me; i++
            :: else -> break
            od;
            i = 0
        }
        store_put(true, got);
        atomic { created = created + n; n = 0 };
        grew = true
    fi
}

proctype worker(byte me) {
    byte seen[MAX], qi, qn, qh;   /* scratch of overtake() and quiescent(): 0 between steps */
    byte held[HOLD], nheld = 0;
    byte objs[HOLD + GROW];
    byte head, avail, h, rest, i, n, got, want, need, myt, pc;
    bool claimed, grew;

    do
    :: true ->
progress_top:
        if
        :: nheld < HOLD ->                       /* refill or alloc_bulk: buffet__pkt_take */
            atomic {
                if
                :: want = 1
                :: HOLD - nheld >= 2 -> want = 2
                :: HOLD - nheld >= 3 -> want = 3
                fi;
                if
                :: need = 1
                :: want > 1 -> need = want
                fi;
                busy++
            }
            store_take();                                                             /* PT1 */
            do
            :: got < need ->
                LOCK;                                                                 /* PT2 */
                if
                :: stored >= need - got -> grew = true
                :: else -> grow()
                fi;
                UNLOCK;
                n = got;
                store_take();                                                         /* PT3 */
                if
                :: !grew && got == n -> break
                :: else
                fi;
                n = 0
            :: else -> break
            od;
            atomic {
                n = 0; grew = false;
                i = 0;
                do
                :: i < got -> held[nheld] = objs[i]; objs[i] = NONE; nheld++; i++
                :: else -> break
                od;
                i = 0; got = 0; want = 0; need = 0; op_end()
            }
        :: nheld > 0 ->                          /* flush or spill: store_put(unlocked) */
            atomic {
                if
                :: n = 1
                :: nheld >= 2 -> n = 2
                :: nheld >= 3 -> n = 3
                fi;
                i = 0;
                do
                :: i < n -> nheld--; objs[i] = held[nheld]; held[nheld] = 0; i++
                :: else -> break
                od;
                i = 0;
                busy++
            }
            store_put(false, 0);
            atomic { n = 0; op_end() }
        :: nheld > 0 ->                          /* free without a cache: buffet__pkt_put */
            atomic { nheld--; objs[0] = held[nheld]; held[nheld] = 0; n = 1; busy++ }
            LOCK;
            store_put(true, 0);
            atomic { UNLOCK; n = 0; op_end() }
        fi
    od
}

init {
    byte k;
    atomic {
        /* buffet_pkt_pool_create with initial 1, grow 2: one grow, a batch of 2 buffers */
        slots[START & RMASK] = 0; area[0] = 1; own[0] = RING; own[1] = RING;
        k = 2;
        do
        :: k < MAX -> own[k] = NEW; k++
        :: else -> break
        od;
        created = 2; stored = 2;
        k = 0;
        do
        :: k < NPROC -> run worker(k); k++
        :: else -> break
        od
    }
}
