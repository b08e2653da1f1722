/* Jittered exponential back-off. */
#include "keyfleet/backoff.h"

uint32_t kf_backoff_next(struct kf_backoff *b, uint32_t random, uint32_t retry_after_ms)
{
    uint64_t base = b->base_ms ? b->base_ms : 1000;
    uint64_t max = b->max_ms ? b->max_ms : 300000;
    uint64_t ceil = base;
    uint32_t i, wait;

    for (i = 0; i < b->attempt && ceil < max; i++)
        ceil *= 2;
    if (ceil > max) ceil = max;
    if (b->attempt < 64) b->attempt++;
    wait = (uint32_t)(ceil / 2 + random % (ceil - ceil / 2 + 1));
    if (wait == 0) wait = 1;
    return wait < retry_after_ms ? retry_after_ms : wait;
}

void kf_backoff_reset(struct kf_backoff *b)
{
    b->attempt = 0;
}
