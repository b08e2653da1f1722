/*
 * store_bench: durable small writes per second through kf_store_write (group commit), beside
 * the same rows written the ordinary way: one SQLite transaction per write, same WAL and
 * synchronous=FULL, the writers serialized by a mutex.
 *
 *   store_bench DIR THREADS WRITES_PER_THREAD
 *
 * Each write is what a provisioning request stores: a security event and an audit record (the
 * audit record chains the SHA-256 of the one before). Prints one line per mode:
 *   mode=group threads=8 writes=1600 seconds=0.52 writes_per_s=3076 commits=311
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "common/timefmt.h"
#include "server/store/store.h"

struct run {
    struct kf_store *store;
    sqlite3 *db;
    pthread_mutex_t lock;
    int writes;
    char last_hash[65];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static enum kf_err write_cb(struct kf_txn *txn, void *arg)
{
    const int *n = arg;
    struct kf_event_rec e;
    char object[64];
    enum kf_err rc;

    memset(&e, 0, sizeof(e));
    e.time_ms = kf_now_ms();
    snprintf(e.type, sizeof(e.type), "provisioning.assigned");
    snprintf(e.severity, sizeof(e.severity), "info");
    snprintf(e.device, sizeof(e.device), "bench-%d", *n);
    snprintf(e.source, sizeof(e.source), "server");
    snprintf(e.ip, sizeof(e.ip), "127.0.0.1");
    rc = kf_txn_event_insert(txn, &e, NULL);
    if (rc) return rc;
    snprintf(object, sizeof(object), "device:bench-%d", *n);
    return kf_txn_audit_append(txn, "bench", "cert.issue", object, "{\"profile\":\"device\"}");
}

static void *group_worker(void *arg)
{
    struct run *r = arg;
    for (int i = 0; i < r->writes; i++) {
        int n = i;
        if (kf_store_write(r->store, write_cb, &n) != KF_OK) {
            fprintf(stderr, "write failed: %s\n", kf_errmsg());
            exit(1);
        }
    }
    return NULL;
}

static void sha256_hex(const char *text, char *hex)
{
    unsigned char md[32];
    EVP_Digest(text, strlen(text), md, NULL, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static void exec_or_die(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s: %s\n", sql, err);
        exit(1);
    }
}

static void *single_worker(void *arg)
{
    struct run *r = arg;
    sqlite3_stmt *ev, *au;
    pthread_mutex_lock(&r->lock);
    sqlite3_prepare_v2(r->db,
                       "INSERT INTO events(time_ms,type,severity,device,source,ip,detail) "
                       "VALUES(?,?,?,?,?,?,?)",
                       -1, &ev, NULL);
    sqlite3_prepare_v2(r->db,
                       "INSERT INTO audit(time_ms,actor,action,object,detail,prev_hash,hash) "
                       "VALUES(?,?,?,?,?,?,?)",
                       -1, &au, NULL);
    pthread_mutex_unlock(&r->lock);
    for (int i = 0; i < r->writes; i++) {
        char device[64], object[64], text[512], hash[65];
        int64_t t = kf_now_ms();
        snprintf(device, sizeof(device), "bench-%d", i);
        snprintf(object, sizeof(object), "device:bench-%d", i);
        pthread_mutex_lock(&r->lock);
        exec_or_die(r->db, "BEGIN IMMEDIATE");
        sqlite3_bind_int64(ev, 1, t);
        sqlite3_bind_text(ev, 2, "provisioning.assigned", -1, SQLITE_STATIC);
        sqlite3_bind_text(ev, 3, "info", -1, SQLITE_STATIC);
        sqlite3_bind_text(ev, 4, device, -1, SQLITE_STATIC);
        sqlite3_bind_text(ev, 5, "server", -1, SQLITE_STATIC);
        sqlite3_bind_text(ev, 6, "127.0.0.1", -1, SQLITE_STATIC);
        sqlite3_bind_text(ev, 7, "{}", -1, SQLITE_STATIC);
        if (sqlite3_step(ev) != SQLITE_DONE) exit(1);
        sqlite3_reset(ev);
        snprintf(text, sizeof(text), "%lld|bench|cert.issue|%s|{}|%s", (long long)t, object,
                 r->last_hash);
        sha256_hex(text, hash);
        sqlite3_bind_int64(au, 1, t);
        sqlite3_bind_text(au, 2, "bench", -1, SQLITE_STATIC);
        sqlite3_bind_text(au, 3, "cert.issue", -1, SQLITE_STATIC);
        sqlite3_bind_text(au, 4, object, -1, SQLITE_STATIC);
        sqlite3_bind_text(au, 5, "{\"profile\":\"device\"}", -1, SQLITE_STATIC);
        sqlite3_bind_text(au, 6, r->last_hash, -1, SQLITE_STATIC);
        sqlite3_bind_text(au, 7, hash, -1, SQLITE_STATIC);
        if (sqlite3_step(au) != SQLITE_DONE) exit(1);
        sqlite3_reset(au);
        memcpy(r->last_hash, hash, sizeof(hash));
        exec_or_die(r->db, "COMMIT");
        pthread_mutex_unlock(&r->lock);
    }
    pthread_mutex_lock(&r->lock);
    sqlite3_finalize(ev);
    sqlite3_finalize(au);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

static void run_threads(struct run *r, int threads, void *(*fn)(void *))
{
    pthread_t *t = calloc((size_t)threads, sizeof(*t));
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, fn, r);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    free(t);
}

int main(int argc, char **argv)
{
    struct run r;
    struct kf_store_stats st;
    char path[1024];
    int threads, writes;
    double t0, dt;

    if (argc != 4) {
        fprintf(stderr, "usage: store_bench DIR THREADS WRITES_PER_THREAD\n");
        return 2;
    }
    threads = atoi(argv[2]);
    writes = atoi(argv[3]);
    memset(&r, 0, sizeof(r));
    r.writes = writes;
    pthread_mutex_init(&r.lock, NULL);

    /* keyfleet's store, group commit. */
    snprintf(path, sizeof(path), "%s/group-%d.db", argv[1], threads);
    if (kf_store_open(path, KF_STORE_CREATE, &r.store) != KF_OK) {
        fprintf(stderr, "%s\n", kf_errmsg());
        return 1;
    }
    t0 = now_s();
    run_threads(&r, threads, group_worker);
    dt = now_s() - t0;
    kf_store_stats(r.store, &st);
    printf("mode=group threads=%d writes=%d seconds=%.3f writes_per_s=%.0f commits=%llu\n", threads,
           threads * writes, dt, threads * writes / dt, (unsigned long long)st.commits);
    kf_store_close(r.store);

    /* The ordinary way: one transaction per write. */
    snprintf(path, sizeof(path), "%s/single-%d.db", argv[1], threads);
    if (sqlite3_open(path, &r.db) != SQLITE_OK) return 1;
    exec_or_die(r.db, "PRAGMA journal_mode=WAL");
    exec_or_die(r.db, "PRAGMA synchronous=FULL");
    exec_or_die(r.db, "CREATE TABLE events(id INTEGER PRIMARY KEY, time_ms INTEGER, type TEXT, "
                      "severity TEXT, device TEXT, source TEXT, ip TEXT, detail TEXT)");
    exec_or_die(r.db, "CREATE TABLE audit(seq INTEGER PRIMARY KEY, time_ms INTEGER, actor TEXT, "
                      "action TEXT, object TEXT, detail TEXT, prev_hash TEXT, hash TEXT)");
    memset(r.last_hash, '0', 64);
    r.last_hash[64] = '\0';
    t0 = now_s();
    run_threads(&r, threads, single_worker);
    dt = now_s() - t0;
    printf("mode=single threads=%d writes=%d seconds=%.3f writes_per_s=%.0f commits=%d\n", threads,
           threads * writes, dt, threads * writes / dt, threads * writes);
    sqlite3_close(r.db);
    return 0;
}
