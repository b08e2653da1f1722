/*
 * keyfleet/backoff.h: how long a device waits before trying again (provisioning, connecting,
 * renewing). Exponential with jitter, so that a fleet that lost its server does not come back in
 * one wave, and never sooner than the server asked (Retry-After). Pure: the caller supplies the
 * randomness.
 */
#ifndef KEYFLEET_BACKOFF_H
#define KEYFLEET_BACKOFF_H

#include "keyfleet/export.h"

#include <stdint.h>

struct kf_backoff {
    uint32_t base_ms; /* the first wait's ceiling (0: 1,000) */
    uint32_t max_ms;  /* the ceiling of every wait (0: 300,000) */
    uint32_t attempt; /* failures so far; kf_backoff_reset() clears it */
};

/*
 * The wait after one more failure: a random point in the upper half of min(max, base * 2^n)
 * ("equal jitter": never zero, spread over half the range), and at least `retry_after_ms` (the
 * server's Retry-After; 0 when it gave none), even above max_ms. `random` is any 32 random bits.
 */
KF_EXPORT uint32_t kf_backoff_next(struct kf_backoff *b, uint32_t random, uint32_t retry_after_ms);

/* After a success. */
KF_EXPORT void kf_backoff_reset(struct kf_backoff *b);

#endif
