#include "common/htab.h"

#include <stdlib.h>
#include <string.h>

uint64_t kf_hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

struct kf_hnode *kf_htab_find(const struct kf_htab *t, const uint8_t *key, size_t klen, uint64_t h)
{
    if (!t->n_slots) return NULL;
    for (struct kf_hnode *n = t->slots[h & (t->n_slots - 1)]; n; n = n->next)
        if (n->hash == h && n->klen == klen && memcmp(n->key, key, klen) == 0) return n;
    return NULL;
}

int kf_htab_insert(struct kf_htab *t, struct kf_hnode *node)
{
    if (t->n + 1 > t->n_slots) {
        size_t ns = t->n_slots ? t->n_slots * 2 : 64;
        struct kf_hnode **slots = calloc(ns, sizeof(*slots));
        if (!slots) return -1;
        for (size_t i = 0; i < t->n_slots; i++) {
            struct kf_hnode *n = t->slots[i], *next;
            for (; n; n = next) {
                next = n->next;
                n->next = slots[n->hash & (ns - 1)];
                slots[n->hash & (ns - 1)] = n;
            }
        }
        free(t->slots);
        t->slots = slots;
        t->n_slots = ns;
    }
    node->next = t->slots[node->hash & (t->n_slots - 1)];
    t->slots[node->hash & (t->n_slots - 1)] = node;
    t->n++;
    return 0;
}

void kf_htab_remove(struct kf_htab *t, struct kf_hnode *node)
{
    struct kf_hnode **pp = &t->slots[node->hash & (t->n_slots - 1)];
    for (; *pp; pp = &(*pp)->next)
        if (*pp == node) {
            *pp = node->next;
            t->n--;
            return;
        }
}

void kf_htab_free(struct kf_htab *t)
{
    free(t->slots);
    t->slots = NULL;
    t->n_slots = t->n = 0;
}
