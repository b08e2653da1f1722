/*
 * refusal: why keyfleet refused a request, the stable codes that provisioning answers with (the
 * "error" of a JSON refusal) and that the metrics count (the `reason` label).
 */
#ifndef KF_SERVER_PROVISION_REFUSAL_H
#define KF_SERVER_PROVISION_REFUSAL_H

/*
 * Why a request was refused. The names are stable and fit to be the "error" code of a JSON
 * refusal as well as the `reason` label. New reasons are added at the end.
 */
#define KF_REFUSAL_MAP(X)                                         \
    X(CLIENT_CERTIFICATE_REQUIRED, "client_certificate_required") \
    X(CERTIFICATE_INVALID, "certificate_invalid")                 \
    X(CERTIFICATE_REVOKED, "certificate_revoked")                 \
    X(ENROLLMENT_NOT_FOUND, "enrollment_not_found")               \
    X(ENROLLMENT_DISABLED, "enrollment_disabled")                 \
    X(GROUP_UNVERIFIED, "group_unverified")                       \
    X(DEVICE_DISABLED, "device_disabled")                         \
    X(DEVICE_REVOKED, "device_revoked")                           \
    X(NETWORK_DENIED, "network_denied")                           \
    X(CSR_INVALID, "csr_invalid")                                 \
    X(CSR_REJECTED, "csr_rejected")                               \
    X(SUBJECT_MISMATCH, "subject_mismatch")                       \
    X(BAD_REQUEST, "bad_request")                                 \
    X(METHOD_NOT_ALLOWED, "method_not_allowed")                   \
    X(NOT_FOUND, "not_found")                                     \
    X(UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")           \
    X(RATE_LIMITED, "rate_limited")                               \
    X(OVERLOADED, "overloaded")                                   \
    X(BODY_TOO_LARGE, "body_too_large")                           \
    X(HEADER_TOO_LARGE, "header_too_large")                       \
    X(REQUEST_TIMEOUT, "request_timeout")                         \
    X(CONNECTION_LIMIT, "connection_limit")                       \
    X(INTERNAL_ERROR, "internal_error")                           \
    X(ENROLLED_ELSEWHERE, "enrolled_elsewhere")                   \
    X(NAME_CONFLICT, "name_conflict")                             \
    X(FORBIDDEN, "forbidden")                                     \
    X(APPROVAL_REJECTED, "approval_rejected")                     \
    X(APPROVAL_CONFLICT, "approval_conflict")                     \
    X(RANGE_NOT_SATISFIABLE, "range_not_satisfiable")

enum kf_refusal {
#define KF_REFUSAL_ENUM_(name, label) KF_REFUSAL_##name,
    KF_REFUSAL_MAP(KF_REFUSAL_ENUM_)
#undef KF_REFUSAL_ENUM_
        KF_REFUSAL_COUNT
};

/* The name of `r` ("csr_rejected"); "unknown" for values out of range. Static, never NULL. */
const char *kf_refusal_name(enum kf_refusal r);

#endif
