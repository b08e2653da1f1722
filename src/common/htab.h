/*
 * htab: an intrusive chained hash table with byte-string keys. The caller embeds a struct
 * kf_hnode in its records, fills in `key`, `klen` and `hash` (kf_hash_bytes), and owns the
 * records; the table only links them. Not thread-safe: its owner locks.
 */
#ifndef KF_COMMON_HTAB_H
#define KF_COMMON_HTAB_H

#include <stddef.h>
#include <stdint.h>

struct kf_hnode {
    struct kf_hnode *next;
    uint64_t hash;
    const uint8_t *key; /* borrowed from the record */
    size_t klen;
};

struct kf_htab {
    struct kf_hnode **slots; /* power-of-two many; NULL until the first insert */
    size_t n_slots, n;
};

/* FNV-1a over `p[0..n)`. */
uint64_t kf_hash_bytes(const uint8_t *p, size_t n);

/* The record with key `key[0..klen)` (whose hash is `h`), or NULL. */
struct kf_hnode *kf_htab_find(const struct kf_htab *t, const uint8_t *key, size_t klen, uint64_t h);

/* Links `node` (its key must not be in the table); -1 when the table cannot grow. */
int kf_htab_insert(struct kf_htab *t, struct kf_hnode *node);

/* Unlinks `node` (which must be in the table). */
void kf_htab_remove(struct kf_htab *t, struct kf_hnode *node);

/* Frees the slots (not the records). */
void kf_htab_free(struct kf_htab *t);

#endif
