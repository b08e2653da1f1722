/* protect: the hub's protections: flapping, unusual addresses, message rates. */
#include "server/hub/hub_internal.h"

static struct id_rec *id_get(struct kf_hubd *h, struct hconn *c)
{
    size_t n = strlen(c->key);
    struct kf_hnode *node;
    struct id_rec *r;

    node = kf_htab_find(&h->ids, (const uint8_t *)c->key, n,
                        kf_hash_bytes((const uint8_t *)c->key, n));
    if (node) return (struct id_rec *)node;
    if (h->ids.n >= ID_RECORDS_MAX) return NULL;
    r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    memcpy(r->id, c->key, n + 1);
    r->node.key = (const uint8_t *)r->id;
    r->node.klen = n;
    r->node.hash = kf_hash_bytes(r->node.key, n);
    if (kf_htab_insert(&h->ids, &r->node)) {
        free(r);
        return NULL;
    }
    return r;
}

/* The network an address is on, for hub.unusual_ip: IPv4 /24, IPv6 /48. */
static void net_of(const struct kf_ipaddr *ip, unsigned char out[8])
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(out, 0, 8);
    if (memcmp(ip->b, mapped, 12) == 0) {
        out[0] = 4;
        memcpy(out + 1, ip->b + 12, 3);
    } else {
        out[0] = 6;
        memcpy(out + 1, ip->b, 6);
    }
}

/*
 * Counts a CONNECT by `c`'s id. Returns 1 when the id is banned for flapping (and emits
 * hub.flapping when the ban starts). Sets `*unusual` when the id comes from a network it has not
 * used before (it has used others).
 */
int kf_hub_id_connect(struct hconn *c, int64_t now, int *unusual)
{
    struct kf_hubd *h = c->hw->hub;
    const struct kf_hub_conf *hc = &c->hw->conf;
    unsigned char net[8];
    struct id_rec *r;
    int banned = 0, started = 0, known = 0;
    unsigned count = 0;

    *unusual = 0;
    net_of(&c->head.ip, net);
    pthread_mutex_lock(&h->lock);
    r = id_get(h, c);
    if (r) {
        r->last_seen = now;
        if (r->banned_until > now) {
            banned = 1;
        } else if (hc->flap_ban_s > 0) {
            if (now - r->window_start > (int64_t)hc->flap_window_s * 1000) {
                r->window_start = now;
                r->count = 0;
            }
            if (++r->count > hc->flap_connects) {
                r->banned_until = now + (int64_t)hc->flap_ban_s * 1000;
                banned = started = 1;
                count = r->count;
                r->count = 0;
                r->window_start = now;
            }
        }
        for (unsigned i = 0; i < r->n_nets; i++)
            if (memcmp(r->nets[i], net, 8) == 0) known = 1;
        if (!known && !banned) {
            *unusual = r->n_nets > 0;
            if (r->n_nets < NETS_KEPT) {
                memcpy(r->nets[r->n_nets++], net, 8);
            } else {
                memmove(r->nets[0], r->nets[1], (NETS_KEPT - 1) * 8);
                memcpy(r->nets[NETS_KEPT - 1], net, 8);
            }
        }
    }
    pthread_mutex_unlock(&h->lock);
    if (started)
        kf_hub_event(c, "hub.flapping", "warning",
                     kf_jsontext_pack("{s:s, s:i, s:i, s:i}", "id", c->id, "connects", (int)count,
                                      "window_s", hc->flap_window_s, "ban_s", hc->flap_ban_s));
    return banned;
}

/*
 * A token of the device's own event rate, kept by id across its connections (so reconnecting does
 * not refill it). 0 when it has none: the event is refused.
 */
int kf_hub_device_event_token(struct hconn *c)
{
    struct kf_hubd *h = c->hw->hub;
    const struct kf_hub_conf *hc = &c->hw->conf;
    int64_t now = kf_now_ms();
    struct id_rec *r;
    int ok = 0;

    if (hc->dev_event_rate <= 0) return 1;
    pthread_mutex_lock(&h->lock);
    r = id_get(h, c);
    if (r) {
        if (!r->ev_refill_ms) r->ev_tokens = hc->dev_event_burst;
        if (now > r->ev_refill_ms && r->ev_refill_ms)
            r->ev_tokens += (double)(now - r->ev_refill_ms) / 1000.0 * hc->dev_event_rate;
        if (r->ev_tokens > hc->dev_event_burst) r->ev_tokens = hc->dev_event_burst;
        r->ev_refill_ms = now;
        if (r->ev_tokens >= 1) {
            r->ev_tokens -= 1;
            ok = 1;
        }
    }
    pthread_mutex_unlock(&h->lock);
    return ok;
}

/*
 * Takes tokens for `msgs` inbound messages (a PUBLISH is one; a SUBSCRIBE or UNSUBSCRIBE one per
 * filter) of `bytes`; 0 when over a rate.
 */
int kf_hub_take_tokens(struct hconn *c, double msgs, size_t bytes, int64_t now)
{
    const struct kf_hub_conf *hc = &c->hw->conf;
    double dt = (double)(now - c->refill_ms) / 1000.0;
    c->refill_ms = now;
    /* a packet never needs more than a full bucket: one may always pass, after a wait */
    if (msgs > hc->msg_burst) msgs = hc->msg_burst;
    if (hc->msg_rate > 0) {
        c->msg_tokens += dt * hc->msg_rate;
        if (c->msg_tokens > hc->msg_burst) c->msg_tokens = hc->msg_burst;
        if (c->msg_tokens < msgs) return 0;
    }
    if (hc->byte_rate > 0) {
        c->byte_tokens += dt * hc->byte_rate;
        if (c->byte_tokens > hc->byte_burst) c->byte_tokens = hc->byte_burst;
        if (c->byte_tokens < (double)bytes) return 0;
    }
    if (hc->msg_rate > 0) c->msg_tokens -= msgs;
    if (hc->byte_rate > 0) c->byte_tokens -= (double)bytes;
    return 1;
}

/* Over a rate: counted, and one event per connection and interval (the sink aggregates). */
void kf_hub_rate_event(struct hconn *c, const char *what)
{
    int64_t now = kf_now_ms();
    STAT_ADD(c->hw, rate_limited, 1);
    if (now - c->last_rate_event < RATE_EVENT_MS) return;
    c->last_rate_event = now;
    kf_hub_refusal(
        c, "hub.rate_limited", what,
        kf_jsontext_pack("{s:s, s:s, s:s, s:f, s:f}", "id", c->id, "limit", what, "action",
                         c->hw->conf.rate_action == KF_HUB_DISCONNECT ? "disconnect" : "drop",
                         "msg_rate", c->hw->conf.msg_rate, "byte_rate", c->hw->conf.byte_rate));
}
