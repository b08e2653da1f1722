#include "server/net/listen.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/hostport.h"

enum kf_err kf_listen_parse(const char *text, char *host, size_t cap, int *port)
{
    enum kf_err rc = kf_hostport_split(text, "listen address", host, cap, port);
    if (rc) {
        char why[256];
        snprintf(why, sizeof(why), "%s", kf_errmsg());
        return kf_fail(KF_E_CONFIG, "%s", why);
    }
    return KF_OK;
}

static enum kf_err resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints, *res = NULL;
    char portstr[8];
    int e;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof(portstr), "%d", port);
    e = getaddrinfo(host[0] ? host : NULL, portstr, &hints, &res);
    if (e || !res)
        return kf_fail(KF_E_CONFIG, "cannot listen on %s:%d: %s", host, port, gai_strerror(e));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return KF_OK;
}

enum kf_err kf_listen_open(const char *host, int port, int reuseport, int *fd_out)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    int fd, one = 1;

    enum kf_err rc = resolve(host, port, &ss, &len);
    if (rc) return rc;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return kf_fail(KF_E_IO, "cannot listen on %s:%d: %s", host, port, strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 4096) != 0) {
        rc = kf_fail(KF_E_IO, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return KF_OK;
}

enum kf_err kf_listen_probe(const char *host, int port)
{
    int fd;
    enum kf_err rc = kf_listen_open(host, port, 0, &fd);
    if (rc) return rc;
    close(fd);
    return KF_OK;
}
