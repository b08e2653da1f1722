/*
 * tlsrec: TLS 1.3 application records without an SSL object, so that an idle hub connection can
 * let OpenSSL's per-connection state (about 15 KB) go once the handshake is over.
 *
 * OpenSSL does the handshake. kf_tlsrec_watch() then follows it: a key-log callback hands over
 * the two application traffic secrets and a message callback counts the records each side sends
 * under them. When the connection is quiet (nothing buffered inside OpenSSL, no partial record),
 * kf_tlsrec_take() builds a record layer from what was watched, and the SSL can be freed. From
 * then on kf_tlsrec_open() reads the client's records and kf_tlsrec_seal() writes the server's,
 * as RFC 8446 section 5 says: AEAD with a per-record nonce, the inner content type, padding
 * stripped; KeyUpdate (section 4.6.3) in both directions; close_notify and other alerts.
 *
 * Only the three TLS 1.3 AEAD suites keyfleetd offers are taken over
 * (TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256); anything else
 * (TLS 1.2, a KeyUpdate during the handshake phase) stays with OpenSSL.
 */
#ifndef KF_SERVER_NET_TLSREC_H
#define KF_SERVER_NET_TLSREC_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "common/buf.h"
#include "common/err.h"

/* What is watched during the handshake: hang it off the connection, zeroed. */
struct kf_tlsrec_watch {
    uint8_t client_secret[48], server_secret[48];
    uint8_t have; /* bit 0: client secret, bit 1: server secret */
    uint8_t secret_len;
    uint8_t read_epoch, write_epoch; /* set once the peer's / our Finished has gone */
    uint8_t unsafe;                  /* something the take-over cannot follow happened */
    uint64_t read_seq, write_seq;    /* application records so far, each way */
};

struct kf_tlsrec;

/*
 * Installs the key-log and message callbacks on `ctx` (once); `get` finds a connection's watch
 * from its SSL (for example through ex_data). Secrets are wiped when the watch is cleared.
 */
void kf_tlsrec_install(SSL_CTX *ctx, struct kf_tlsrec_watch *(*get)(const SSL *ssl));

/*
 * 1 when `ssl` may be handed over now: TLS 1.3, a suite above, both secrets seen, nothing
 * buffered in OpenSSL either way (no partial record), nothing unsafe seen.
 */
int kf_tlsrec_ready(SSL *ssl, const struct kf_tlsrec_watch *w);

/* Builds the record layer from `w` for `ssl`'s suite (`*out` owned). Wipes `w`'s secrets. */
enum kf_err kf_tlsrec_take(SSL *ssl, struct kf_tlsrec_watch *w, struct kf_tlsrec **out);

/*
 * A record layer from explicit secrets: `suite` one of the names above, the client's secret
 * (what is read) and the server's (what is written), `len` 32 or 48, and the records already
 * counted each way. What kf_tlsrec_take() uses; also the tests' and the fuzz target's way in.
 */
enum kf_err kf_tlsrec_new(const char *suite, const uint8_t *read_secret,
                          const uint8_t *write_secret, size_t len, uint64_t read_seq,
                          uint64_t write_seq, struct kf_tlsrec **out);

/* Frees and wipes; NULL is fine. */
void kf_tlsrec_free(struct kf_tlsrec *r);

enum kf_tlsrec_status {
    KF_TLSREC_OK = 0,     /* whole records consumed; maybe more bytes needed */
    KF_TLSREC_CLOSED = 1, /* close_notify */
    KF_TLSREC_BAD = 2,    /* a record that does not decrypt, a bad alert, a protocol error */
};

/*
 * Reads the whole records at the start of `in[0..len)`: application data is appended to
 * `plain`; `*used` is how many bytes were consumed (a partial record stays for later). A
 * KeyUpdate from the client switches the read keys and, when it asks, appends our own KeyUpdate
 * record to `reply` and switches the write keys. `why` (static) says what went wrong.
 */
enum kf_tlsrec_status kf_tlsrec_open(struct kf_tlsrec *r, const uint8_t *in, size_t len,
                                     size_t *used, struct kf_buf *plain, struct kf_buf *reply,
                                     const char **why);

/* Appends `data` as application-data records (16 KiB of plaintext at most each) to `out`. */
enum kf_err kf_tlsrec_seal(struct kf_tlsrec *r, const uint8_t *data, size_t len,
                           struct kf_buf *out);

/* Appends a close_notify alert record to `out`. */
enum kf_err kf_tlsrec_close_notify(struct kf_tlsrec *r, struct kf_buf *out);

/*
 * After kf_tlsrec_open() refused a record: appends the fatal alert it calls for
 * (bad_record_mac, unexpected_message, record_overflow, internal_error) and returns 1; 0 (and
 * nothing appended) when none is due, as after the peer's own fatal alert.
 */
int kf_tlsrec_fatal_alert(struct kf_tlsrec *r, struct kf_buf *out);

/* Bytes of heap the record layer holds (for the memory figures). */
size_t kf_tlsrec_size(const struct kf_tlsrec *r);

#endif
