// link:
/* packet_pipeline.c - two threads, one buffet packet pool, about a second. Thread 1: generator ->
   classifier (drop 1 in 8, flood 2 in 8, the rest to port hash % 4) -> a small SPSC ring. Thread 2:
   fan-out (a flooded packet goes to ports 0..2 as zero-copy clones, to port 3 itself) -> transmit,
   free into its own cache. Prints packets per second and pool statistics; exit 0: all came back. */
#define BUFFET_IMPLEMENTATION
#include "../buffet_packet.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#define RING 256   /* a power of two */
#define PORTS 4
enum { UNICAST = 1, FLOOD = 2 };

static buffet_pkt_pool *pool;
static struct { _Alignas(64) atomic_size_t head; _Alignas(64) atomic_size_t tail; buffet_pkt *slot[RING]; } ring;
static atomic_bool stop, generated_all;
static uint64_t made, dropped, sent[PORTS], bytes;   /* each written by one thread, read after join */

static void *generate_and_classify(void *arg) {
    static const uint32_t sizes[3] = { 60, 590, 1500 };
    buffet_pkt_cache *cache;
    size_t tail = 0;
    if (buffet_pkt_cache_create(&cache, pool, 0) != BUFFET_OK) abort();
    for (uint32_t i = 0; !atomic_load_explicit(&stop, memory_order_relaxed); i++, made++) {
        buffet_pkt *p = buffet_pkt_alloc(cache, sizes[i % 3]);
        unsigned char *frame = p ? (unsigned char *)buffet_pkt_append(p, sizes[i % 3]) : NULL;
        if (!frame) abort();   /* the pool holds far more than can be in flight */
        memset(frame, 0xab, 14);                              /* an Ethernet header */
        memcpy(frame + 14, &i, sizeof i);
        p->hash = i * 2654435761u;                            /* the flow hash an RSS NIC gives */
        if ((p->hash >> 29) == 0) { dropped++; buffet_pkt_free(cache, p); continue; }
        p->packet_type = (p->hash >> 29) < 3 ? FLOOD : UNICAST;
        p->out_port = (uint16_t)(p->hash % PORTS);
        while (tail - atomic_load_explicit(&ring.head, memory_order_acquire) == RING) {   /* full */
            if (atomic_load_explicit(&stop, memory_order_relaxed)) { buffet_pkt_free(cache, p); goto done; }
            sched_yield();
        }
        ring.slot[tail % RING] = p;
        atomic_store_explicit(&ring.tail, ++tail, memory_order_release);   /* publishes the packet */
    }
done:
    atomic_store_explicit(&generated_all, true, memory_order_release);
    buffet_pkt_cache_destroy(cache);
    return arg;
}
static void transmit(buffet_pkt_cache *cache, buffet_pkt *p, unsigned port) {   /* a NIC reads the frame */
    sent[port]++;
    bytes += p->pkt_len + (*(unsigned char *)buffet_pkt_data(p) != 0xab);
    buffet_pkt_free(cache, p);
}
static void *fan_out_and_transmit(void *arg) {
    buffet_pkt_cache *cache;
    size_t head = 0;
    if (buffet_pkt_cache_create(&cache, pool, 0) != BUFFET_OK) abort();
    for (;;) {
        bool last = atomic_load_explicit(&generated_all, memory_order_acquire);   /* before looking */
        bool empty = head == atomic_load_explicit(&ring.tail, memory_order_acquire);
        if (empty && last) break;
        if (empty) { sched_yield(); continue; }
        buffet_pkt *p = ring.slot[head % RING];
        atomic_store_explicit(&ring.head, ++head, memory_order_release);
        for (unsigned port = 0; p->packet_type == FLOOD && port < PORTS - 1; port++) {
            buffet_pkt *copy = buffet_pkt_clone(cache, p);   /* own header, shared data */
            if (!copy) abort();
            transmit(cache, copy, port);
        }
        transmit(cache, p, p->packet_type == FLOOD ? PORTS - 1 : p->out_port);
    }
    buffet_pkt_cache_destroy(cache);
    return arg;
}
int main(void) {
    pthread_t t1, t2;
    struct timespec a, b, second = { 1, 0 };
    if (buffet_pkt_pool_create(&pool, &(buffet_pkt_pool_desc){ .name = "pipeline", .max = 4096 }) != BUFFET_OK) return 1;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (pthread_create(&t1, NULL, generate_and_classify, NULL) || pthread_create(&t2, NULL, fan_out_and_transmit, NULL)) return 1;
    nanosleep(&second, NULL);
    atomic_store(&stop, true);
    pthread_join(t1, NULL), pthread_join(t2, NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9, mega = s * 1e6;
    uint64_t all = 0;
    printf("%.2f s: made %.2f Mpps, dropped %.2f Mpps, sent (Mpps) per port:", s, (double)made / mega, (double)dropped / mega);
    for (unsigned port = 0; port < PORTS; port++) all += sent[port], printf(" %u: %.2f", port, (double)sent[port] / mega);
    printf(", all %d ports %.2f Mpps, %.0f MB/s\n", PORTS, (double)all / mega, (double)bytes / mega);
    buffet_pkt_stats st = buffet_pkt_pool_get_stats(pool);
    size_t out = 0;
    for (unsigned k = 0; k <= st.nclasses; k++) {
        const buffet_pkt_class_stats *c = &st.cls[k];
        out += c->in_use;
        char name[24];
        if (c->clone) snprintf(name, sizeof name, "clones (headers)");
        else snprintf(name, sizeof name, "%u B", c->data_room);
        if (c->allocs)
            printf("pool %s, class %-16s %9llu allocs, %4zu of %5zu buffers made, %zu in use, cache hit rate %.4f\n",
                   st.name, name, (unsigned long long)c->allocs, c->created, c->max, c->in_use, c->cache_hit_rate);
    }
    buffet_pkt_pool_destroy(pool);
    return out == 0 ? 0 : 1;
}
