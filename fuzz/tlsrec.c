/*
 * Fuzz target: the hub's TLS 1.3 record reader (tlsrec). Two record layers share keys, one the
 * client's writer, one the hub's reader. The input is a script: byte 0 picks the suite; then
 * records whose content types and bodies the input chooses are sealed by the "client" (so they
 * pass the AEAD and reach the parsing behind it), interleaved with raw input bytes sent as they
 * are (which must be refused, never crash), in pieces the input also chooses.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/net/tlsrec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const suites[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                         "TLS_CHACHA20_POLY1305_SHA256"};
    static const uint8_t cs[48] = {1, 2, 3}, ss[48] = {4, 5, 6};
    struct kf_tlsrec *hub = NULL, *client = NULL;
    struct kf_buf wire, plain, reply;
    size_t off = 1, len;
    int suite;

    if (size < 2) return 0;
    suite = data[0] % 3;
    len = suite == 1 ? 48 : 32;
    if (kf_tlsrec_new(suites[suite], cs, ss, len, 0, 0, &hub) ||
        kf_tlsrec_new(suites[suite], ss, cs, len, 0, 0, &client))
        __builtin_trap();
    kf_buf_init(&wire, 1 << 20);
    kf_buf_init(&plain, 1 << 20);
    kf_buf_init(&reply, 1 << 16);
    while (off + 2 <= size) {
        uint8_t op = data[off], n = data[off + 1];
        size_t take = n;
        off += 2;
        if (take > size - off) take = size - off;
        if (op >= 190 && op < 200) {
            if (kf_tlsrec_close_notify(client, &wire)) break;
        } else if (op < 200) {
            /* application data through the real sealer */
            if (kf_tlsrec_seal(client, data + off, take, &wire)) break;
        } else {
            /* raw bytes onto the wire */
            if (kf_buf_append(&wire, data + off, take)) break;
        }
        off += take;
    }
    /* the hub reads the wire in pieces of 1..64 bytes more each time */
    {
        size_t got = 0, step = (size_t)(data[size - 1] % 64) + 1;
        while (got < wire.len) {
            size_t avail = wire.len - got, used = 0, upto = step;
            const char *why = NULL;
            enum kf_tlsrec_status st;
            if (upto > avail) upto = avail;
            /* offer all that has arrived so far (a reader keeps what it did not use) */
            st = kf_tlsrec_open(hub, wire.data + got, upto, &used, &plain, &reply, &why);
            if (used > upto) __builtin_trap();
            if (st != KF_TLSREC_OK) {
                if (!why && st == KF_TLSREC_BAD) __builtin_trap();
                break;
            }
            got += used;
            if (!used) {
                /* a partial record: let more arrive */
                step += 64;
                if (step > wire.len + 64) break;
            }
        }
    }
    kf_tlsrec_free(hub);
    kf_tlsrec_free(client);
    kf_buf_free(&wire);
    kf_buf_free(&plain);
    kf_buf_free(&reply);
    return 0;
}
