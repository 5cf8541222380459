/* test_hooks.c - real libraries allocating through buffet, as the README's recipes hook them up:
   Lua 5.4 (lua_Alloc over buffet_realloc), zlib (buffet_adapter_zalloc) and SQLite
   (sqlite3_mem_methods over the adapter). Each runs real work with no failure, then under every
   failure mode of the failing allocator (every Nth, skip the first K, seeded random, the Nth
   and later): the library reports out of memory its own way, nothing crashes, and a debug
   allocator underneath finds no leak, no mismatched size and no damage once the library is
   closed. */
// pkg-config: lua5.4 sqlite3 zlib
#define BUFFET_IMPLEMENTATION
#include "../buffet.h"
#include "bt.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <sqlite3.h>
#include <zlib.h>

/* The failing allocator over a debug allocator over the heap: the stack every run uses. */
typedef struct hook_env {
    buffet_debug *dbg;
    buffet_failing fail;
    buffet_allocator a;
} hook_env;

/* One failure mode; mode 0 is "none". */
typedef struct fail_mode { const char *name; uint64_t fail_at, skip, every, seed; uint32_t per_million; bool after; } fail_mode;

static const fail_mode modes[] = {
    {"no failure", 0, 0, 0, 0, 0, false},
    {"every 7th", 0, 0, 7, 0, 0, false},
    {"every 50th after 20", 0, 20, 50, 0, 0, false},
    {"all after the first 100", 0, 100, 1, 0, 0, false},
    {"all after the first 1000", 0, 1000, 1, 0, 0, false},
    {"random 1% seed 1", 0, 0, 0, 1, 10000, false},
    {"random 1% seed 2", 0, 0, 0, 2, 10000, false},
    {"random 10% seed 3", 0, 0, 0, 3, 100000, false},
    {"random 0.1% seed 4", 0, 0, 0, 4, 1000, false},
    {"the 3rd and later", 3, 0, 0, 0, 0, true},
    {"the 200th", 200, 0, 0, 0, 0, false},
    {"every 500th after 5000", 0, 5000, 500, 0, 0, false},
    {"random 0.1% after 5000", 0, 5000, 0, 5, 1000, false},
    {"all after the first 15000", 0, 15000, 1, 0, 0, false},
};
#define N_MODES (sizeof modes / sizeof modes[0])

static void env_begin(hook_env *e, const fail_mode *m) {
    buffet_debug_desc dd;
    memset(e, 0, sizeof *e);
    memset(&dd, 0, sizeof dd);
    dd.quarantine_count = SIZE_MAX;   /* no quarantine: these libraries make millions of blocks */
    BT_CHECK(buffet_debug_create(&e->dbg, &dd) == BUFFET_OK);
    buffet_failing_init(&e->fail, buffet_debug_allocator(e->dbg), m->fail_at, m->after);
    e->fail.skip = m->skip;
    e->fail.every = m->every;
    e->fail.per_million = m->per_million;
    e->fail.seed = m->seed;
    e->a = buffet_failing_allocator(&e->fail);
}

static uint64_t last_allocs;   /* attempts of the latest run */

/* Nothing left, nothing misused. Returns how many allocations were refused. */
static uint64_t env_end(hook_env *e, const char *lib, const fail_mode *m) {
    buffet_debug_stats st;
    uint64_t refused = e->fail.failures;
    if (!e->dbg) return 0;
    st = buffet_debug_get_stats(e->dbg);
    BT_CHECK(buffet_debug_check(e->dbg) == BUFFET_OK);
    BT_CHECK(st.live_count == 0 && st.double_frees == 0 && st.foreign_frees == 0);
    BT_CHECK(st.mismatched_frees == 0 && st.corruptions == 0);
    if (st.live_count) {
        fprintf(stderr, "  %s, %s: %zu blocks left\n", lib, m->name, st.live_count);
        buffet_debug_report_leaks(e->dbg, stderr);
    }
    last_allocs = e->fail.allocs;
    printf("  %-7s %-26s %8llu allocations, %6llu refused\n", lib, m->name,
           (unsigned long long)e->fail.allocs, (unsigned long long)refused);
    buffet_debug_destroy(e->dbg);
    return refused;
}

/* ---- Lua: the README's recipe --------------------------------------------------------- */

/* lua_Alloc over any buffet allocator. Lua passes the old size, so the sized interface fits
   as it is; for ptr NULL osize is a type tag, not a size. Shrinks must not fail (Lua assumes
   so): buffet_realloc shrinks in place wherever the parent can resize, as the heap can. */
static void *lua_buffet_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    buffet_allocator a = *(buffet_allocator *)ud;
    if (nsize == 0) {
        buffet_free(a, ptr, osize, 16, BUFFET_SITE);
        return NULL;
    }
    return buffet_realloc(a, ptr, ptr ? osize : 0, nsize, 16, BUFFET_SITE);
}

static const char lua_work[] =
    "local t = {}\n"
    "for i = 1, 3000 do t[i] = string.rep('x', i % 97) .. i end\n"
    "local s = table.concat(t, ',')\n"
    "local m = {}\n"
    "for k, v in ipairs(t) do m[v] = {k, v, {k * 2}} end\n"
    "for i = 1, 3000, 2 do t[i] = nil end\n"
    "collectgarbage()\n"
    "assert(#s > 3000)\n"
    "return #s\n";

static void run_lua(const fail_mode *m, int *ok_runs) {
    hook_env e;
    lua_State *L;
    env_begin(&e, m);
    if (!e.dbg) return;
    L = lua_newstate(lua_buffet_alloc, &e.a);
    if (L) {   /* NULL: the state itself could not be made, Lua's documented answer */
        int rc;
        luaL_openlibs(L);   /* may raise out of memory: run it protected, as lua.c does */
        rc = luaL_loadstring(L, lua_work);
        if (rc == LUA_OK) rc = lua_pcall(L, 0, 1, 0);
        BT_CHECK(rc == LUA_OK || rc == LUA_ERRMEM);
        if (rc == LUA_OK) {
            BT_CHECK(lua_tointeger(L, -1) > 3000);
            ++*ok_runs;
        }
        lua_close(L);
    }
    env_end(&e, "lua", m);
}

static int lua_open_libs(lua_State *L) {
    luaL_openlibs(L);
    return 0;
}

static void run_lua_protected(const fail_mode *m, int *ok_runs) {
    hook_env e;
    lua_State *L;
    env_begin(&e, m);
    if (!e.dbg) return;
    L = lua_newstate(lua_buffet_alloc, &e.a);
    if (L) {
        int rc;
        lua_pushcfunction(L, lua_open_libs);
        rc = lua_pcall(L, 0, 0, 0);
        if (rc == LUA_OK) rc = luaL_loadstring(L, lua_work);
        if (rc == LUA_OK) rc = lua_pcall(L, 0, 1, 0);
        BT_CHECK(rc == LUA_OK || rc == LUA_ERRMEM);
        if (rc == LUA_OK) {
            BT_CHECK(lua_tointeger(L, -1) > 3000);
            ++*ok_runs;
        }
        lua_close(L);
    }
    env_end(&e, "lua", m);
}

/* The Nth allocation failing (alone, then with all later ones), for N spread evenly over a
   run that failed nothing: a sweep of a library's allocation points, 38 runs long (8 under
   valgrind and qemu, where each run costs 50 times as much). */
static void spread_sweep(void (*run)(const fail_mode *, int *), uint64_t total, int *ok_runs) {
    const char *mode = getenv("BUFFET_TEST_MODE");
    uint64_t k, points = mode && (strcmp(mode, "valgrind") == 0 || strcmp(mode, "aarch64") == 0) ? 5 : 20;
    for (k = 1; k < points && total >= points; k++) {
        fail_mode m = {"the Nth, spread over a run", total * k / points, 0, 0, 0, 0, false};
        run(&m, ok_runs);
        m.name = "the Nth and later, spread";
        m.after = true;
        run(&m, ok_runs);
    }
}

static void test_lua(void) {
    size_t i;
    int ok_runs = 0;
    for (i = 0; i < N_MODES; i++) {
        /* Unprotected luaL_openlibs would abort the process on a refused allocation (Lua's
           panic), which is Lua's contract, not ours: only the run with no failure uses it. */
        if (i == 0) run_lua(&modes[i], &ok_runs);
        else run_lua_protected(&modes[i], &ok_runs);
        if (i == 0) spread_sweep(run_lua_protected, last_allocs, &ok_runs);
    }
    BT_CHECK(ok_runs >= 2);
}

/* ---- zlib: the adapter's zalloc / zfree --------------------------------------------------- */

static void run_zlib(const fail_mode *m, const unsigned char *src, size_t n, int *ok_runs) {
    hook_env e;
    buffet_adapter ad;
    z_stream zs;
    unsigned char *packed, *back;
    size_t cap = n + n / 100 + 64;
    int rc;
    env_begin(&e, m);
    if (!e.dbg) return;
    BT_CHECK(buffet_adapter_init(&ad, e.a, 16) == BUFFET_OK);
    packed = (unsigned char *)malloc(cap);
    back = (unsigned char *)malloc(n);
    memset(&zs, 0, sizeof zs);
    zs.zalloc = buffet_adapter_zalloc;
    zs.zfree = buffet_adapter_zfree;
    zs.opaque = &ad;
    rc = deflateInit2(&zs, 9, Z_DEFLATED, 15, 9, Z_DEFAULT_STRATEGY);
    BT_CHECK(rc == Z_OK || rc == Z_MEM_ERROR);
    if (rc == Z_OK) {
        zs.next_in = (Bytef *)(uintptr_t)src;
        zs.avail_in = (uInt)n;
        zs.next_out = packed;
        zs.avail_out = (uInt)cap;
        rc = deflate(&zs, Z_FINISH);
        BT_CHECK(rc == Z_STREAM_END);   /* deflate allocates only in deflateInit */
        cap = zs.total_out;
        deflateEnd(&zs);
        memset(&zs, 0, sizeof zs);
        zs.zalloc = buffet_adapter_zalloc;
        zs.zfree = buffet_adapter_zfree;
        zs.opaque = &ad;
        rc = inflateInit(&zs);
        BT_CHECK(rc == Z_OK || rc == Z_MEM_ERROR);
        if (rc == Z_OK) {
            zs.next_in = packed;
            zs.avail_in = (uInt)cap;
            zs.next_out = back;
            zs.avail_out = (uInt)n;
            rc = inflate(&zs, Z_FINISH);   /* the window is allocated here: it may fail */
            BT_CHECK(rc == Z_STREAM_END || rc == Z_MEM_ERROR);
            if (rc == Z_STREAM_END) {
                BT_CHECK(zs.total_out == n && memcmp(src, back, n) == 0);
                ++*ok_runs;
            }
            inflateEnd(&zs);
        }
    }
    free(packed);
    free(back);
    buffet_adapter_deinit(&ad);
    env_end(&e, "zlib", m);
}

static void test_zlib(void) {
    size_t n = 200000, i;
    int ok_runs = 0;
    unsigned char *src = (unsigned char *)malloc(n);
    if (!src) return;
    for (i = 0; i < n; i++) src[i] = (unsigned char)((i * 2654435761u) >> 24 & 0x0f);
    for (i = 0; i < N_MODES; i++) run_zlib(&modes[i], src, n, &ok_runs);
    /* the sweep: the 1st, 2nd, ... allocation fails until a run sees none refused */
    for (i = 1; i < 16; i++) {
        fail_mode m = {"sweep", i, 0, 0, 0, 0, false};
        run_zlib(&m, src, n, &ok_runs);
    }
    BT_CHECK(ok_runs >= 2);
    free(src);
}

/* ---- SQLite: sqlite3_mem_methods over the adapter ---------------------------------------- */

/* SQLite's allocator is process-wide and set before sqlite3_initialize; its hooks get no
   context but in xInit, so the adapter is a global. Between runs sqlite3_shutdown lets the
   methods be set again. xSize is what the adapter's block header is for. */
static buffet_adapter sq_ad;
static void *sq_malloc(int n) { return n > 0 ? buffet_adapter_malloc(&sq_ad, (size_t)n) : NULL; }
static void sq_free(void *p) { buffet_adapter_free(&sq_ad, p); }
static void *sq_realloc(void *p, int n) { return n > 0 ? buffet_adapter_realloc(&sq_ad, p, (size_t)n) : NULL; }
static int sq_size(void *p) { return (int)buffet_adapter_size(p); }
static int sq_roundup(int n) { return (n + 15) & ~15; }
static int sq_init(void *app) { (void)app; return SQLITE_OK; }
static void sq_shutdown(void *app) { (void)app; }

static void run_sqlite(const fail_mode *m, int *ok_runs) {
    static const sqlite3_mem_methods methods = {sq_malloc, sq_free, sq_realloc, sq_size, sq_roundup, sq_init, sq_shutdown, NULL};
    hook_env e;
    sqlite3 *db = NULL;
    int rc, i;
    env_begin(&e, m);
    if (!e.dbg) return;
    BT_CHECK(buffet_adapter_init(&sq_ad, e.a, 16) == BUFFET_OK);
    BT_CHECK(sqlite3_config(SQLITE_CONFIG_MALLOC, &methods) == SQLITE_OK);
    rc = sqlite3_initialize();
    BT_CHECK(rc == SQLITE_OK || rc == SQLITE_NOMEM);
    if (rc == SQLITE_OK) rc = sqlite3_open(":memory:", &db);
    BT_CHECK(rc == SQLITE_OK || rc == SQLITE_NOMEM);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT); BEGIN;", NULL, NULL, NULL);
    for (i = 0; i < 2000 && rc == SQLITE_OK; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "INSERT INTO t VALUES(%d, printf('%%.*c', %d, 'v'));", i, i % 200 + 1);
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, "COMMIT; CREATE INDEX tv ON t(v);", NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(db, "SELECT count(*), sum(length(v)) FROM t WHERE v LIKE 'v%'", -1, &st, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            BT_CHECK(sqlite3_column_int(st, 0) == 2000);
            ++*ok_runs;
            rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
    }
    /* out of memory can surface as SQLITE_NOMEM, or (inside a statement) as a plain error */
    BT_CHECK(rc == SQLITE_OK || rc == SQLITE_NOMEM || rc == SQLITE_ERROR);
    BT_CHECK(sqlite3_close(db) == SQLITE_OK);   /* NULL db: a harmless no-op */
    BT_CHECK(sqlite3_shutdown() == SQLITE_OK);
    buffet_adapter_deinit(&sq_ad);
    env_end(&e, "sqlite", m);
}

static void test_sqlite(void) {
    size_t i;
    int ok_runs = 0;
    for (i = 0; i < N_MODES; i++) {
        run_sqlite(&modes[i], &ok_runs);
        if (i == 0) spread_sweep(run_sqlite, last_allocs, &ok_runs);
    }
    BT_CHECK(ok_runs >= 1);
}

int main(void) {
    BT_RUN(test_lua);
    BT_RUN(test_zlib);
    BT_RUN(test_sqlite);
    return bt_finish("test_hooks.c");
}
