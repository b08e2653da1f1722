/* Fuzz target: the small text parsers of the command line: CIDR lists, times, ids. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cidr.h"
#include "common/ident.h"
#include "common/timefmt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kf_cidr_list l;
    char *s = malloc(size + 1), out[KF_CIDR_TEXT_MAX];
    time_t t;
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (kf_cidr_parse_list(s, &l) == KF_OK) {
        /* Whatever parsed must format in full, and parse back to the same list. */
        struct kf_cidr_list back;
        if (kf_cidr_format(&l, out, sizeof(out)) != KF_OK) __builtin_trap();
        if (kf_cidr_parse_list(out, &back) != KF_OK || back.n != l.n ||
            memcmp(back.nets, l.nets, l.n * sizeof(l.nets[0])) != 0)
            __builtin_trap();
        kf_cidr_match(&l, "10.1.2.3");
        kf_cidr_match(&l, "2001:db8::1");
    }
    kf_time_parse(s, &t);
    kf_id_check("id", s);
    free(s);
    return 0;
}
