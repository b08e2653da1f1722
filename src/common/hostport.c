/* host:port splitting. */
#include "common/hostport.h"

#include <stdlib.h>
#include <string.h>

enum kf_err kf_hostport_split(const char *text, const char *what, char *host, size_t cap, int *port)
{
    const char *colon;
    char *end;
    long p;
    size_t hl;

    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':')
            return kf_fail(KF_E_INVALID, "%s \"%.60s\" is not [IPv6]:port", what, text);
        hl = (size_t)(close - text - 1);
        if (hl >= cap) return kf_fail(KF_E_INVALID, "%s \"%.60s\" is too long", what, text);
        memcpy(host, text + 1, hl);
        host[hl] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon) return kf_fail(KF_E_INVALID, "%s \"%.60s\" is not host:port", what, text);
        hl = (size_t)(colon - text);
        if (hl >= cap) return kf_fail(KF_E_INVALID, "%s \"%.60s\" is too long", what, text);
        memcpy(host, text, hl);
        host[hl] = '\0';
    }
    p = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || p < 1 || p > 65535)
        return kf_fail(KF_E_INVALID, "%s \"%.60s\": the port must be 1 to 65535", what, text);
    *port = (int)p;
    return KF_OK;
}
