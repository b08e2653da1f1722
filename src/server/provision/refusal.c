#include "server/provision/refusal.h"

const char *kf_refusal_name(enum kf_refusal r)
{
    switch (r) {
#define KF_REFUSAL_NAME_(name, label) \
    case KF_REFUSAL_##name: return label;
        KF_REFUSAL_MAP(KF_REFUSAL_NAME_)
#undef KF_REFUSAL_NAME_
    case KF_REFUSAL_COUNT: break;
    }
    return "unknown";
}
