// link:
/* frame_game_loop.c - a simulation loop on buffet_frame.h. Particles come and go through a pool;
   each frame's scratch memory (forces, the contact list) comes from a frame arena with 2 frames
   in flight, so last frame's contacts are still readable for warm-starting; allocations are
   tagged "physics" and "contacts"; a budget calls back when a frame passes its soft limit. */
#define BUFFET_IMPLEMENTATION
#define BUFFET_FRAME_COUNT 1   /* the statistics printed below count allocations too */
#include "../buffet_frame.h"

typedef struct particle { float x, y, vx, vy; uint32_t id, age, life; } particle;
typedef struct contact { uint32_t a, b; float depth; } contact;

static uint32_t rng = 12345;
static float rnd(float lo, float hi) { rng = rng * 1664525u + 1013904223u; return lo + (hi - lo) * (float)(rng >> 8) / 16777216.0f; }

static void over_budget(void *user, const char *name, size_t used, size_t soft) {
    ++*(int *)user;
    printf("  ! budget '%s' passed its soft limit: %zu of %zu bytes\n", name, used, soft);
}

int main(void) {
    int warnings = 0;
    buffet_frame_arena *fa;
    buffet_pool *pool;
    buffet_pool_cache *cache;   /* belongs to this (the only) thread */
    if (buffet_frame_create(&fa, &(buffet_frame_desc){ .frames_in_flight = 2, .chunk_size = 16 << 10,
            .budget = { .name = "frame", .soft = 6 << 10, .on_soft = over_budget, .user = &warnings } }) != BUFFET_OK ||
        buffet_pool_create(&pool, &(buffet_pool_desc){ .obj_size = sizeof(particle), .max = 512 }) != BUFFET_OK ||
        buffet_pool_cache_create(&cache, pool, 32) != BUFFET_OK)
        return 1;
    particle *live[512];
    size_t n = 0, prev_count = 0;
    contact *prev = NULL;             /* last frame's contacts: valid until the end of this frame */
    uint32_t next_id = 0;
    for (int frame = 1; frame <= 8; frame++) {
        buffet_frame_begin(fa);
        buffet_frame_push_tag(fa, "physics");
        for (int k = (int)rnd(20, 40); k > 0 && n < 512; k--) {           /* spawn */
            particle *p = (particle *)buffet_pool_get(cache);
            if (!p) break;                                                   /* pool at max */
            *p = (particle){ .x = rnd(0, 8), .y = rnd(4, 8), .vx = rnd(-1, 1), .vy = rnd(-1, 1),
                             .id = next_id++, .life = (uint32_t)rnd(3, 7) };
            live[n++] = p;
        }
        float *fy = BUFFET_FRAME_NEW_ARRAY(fa, float, n);                  /* per-frame scratch */
        for (size_t i = 0; i < n; i++) fy[i] = -9.8f + (live[i]->y < 0.5f ? 20.0f : 0.0f);
        for (size_t i = 0; i < n; i++) {
            particle *p = live[i];
            p->vy += fy[i] * 0.016f; p->x += p->vx * 0.016f; p->y += p->vy * 0.016f; p->age++;
        }
        buffet_frame_pop_tag(fa);

        buffet_frame_push_tag(fa, "contacts");
        buffet_frame_vec contacts;
        buffet_frame_vec_init(&contacts, fa, sizeof(contact), _Alignof(contact));
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++) {
                float dx = live[i]->x - live[j]->x, dy = live[i]->y - live[j]->y, d2 = dx * dx + dy * dy;
                if (d2 < 0.64f && !buffet_frame_vec_push(&contacts, &(contact){ live[i]->id, live[j]->id, 0.8f - d2 }))
                    return 1;
            }
        size_t warm = 0;                                                    /* pairs touching last frame too */
        const contact *cur = (const contact *)contacts.data;
        for (size_t i = 0; i < contacts.len; i++)
            for (size_t j = 0; j < prev_count; j++) warm += cur[i].a == prev[j].a && cur[i].b == prev[j].b;
        buffet_frame_pop_tag(fa);

        buffet_frame_stats st = buffet_frame_get_stats(fa);
        buffet_frame_tag_stats tp, tc;
        buffet_frame_get_tag_stats(fa, "physics", &tp);
        buffet_frame_get_tag_stats(fa, "contacts", &tc);
        printf("frame %llu: %3zu particles, %4zu contacts (%3zu warm) | %6zu B in %2zu allocations | "
               "physics %5zu B/%zu, contacts %6zu B/%zu\n", (unsigned long long)st.frame, n, contacts.len, warm,
               st.bytes, st.count, tp.bytes, tp.count, tc.bytes, tc.count);
        prev = (contact *)contacts.data;
        prev_count = contacts.len;
        for (size_t i = 0; i < n;) {                                        /* particles die */
            if (live[i]->age >= live[i]->life) { buffet_pool_put(cache, live[i]); live[i] = live[--n]; }
            else i++;
        }
        buffet_frame_end(fa);
    }
    for (size_t i = 0; i < n; i++) buffet_pool_put(cache, live[i]);
    buffet_pool_cache_destroy(cache);
    char json[512];
    buffet_pool_stats_json(pool, json, sizeof json);
    printf("soft-limit warnings: %d\npool: %s\n", warnings, json);
    buffet_pool_destroy(pool);
    buffet_frame_destroy(fa);
    return 0;
}
