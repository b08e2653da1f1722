/* Fuzz target: the INI reader behind keyfleet.conf. */
#include <stdint.h>
#include <string.h>

#include "common/ini.h"

static enum kf_err on_value(const char *section, const char *key, const char *value, int line,
                            void *arg)
{
    size_t *n = arg;
    /* What the reader hands over is always within its bounds. */
    if (strlen(section) >= KF_INI_SECTION_MAX || line < 1) __builtin_trap();
    if (!key) return strcmp(section, "stop") == 0 ? KF_E_CONFIG : KF_OK; /* a header */
    if (!value || strlen(key) >= KF_INI_KEY_MAX || strlen(value) >= KF_INI_VALUE_MAX)
        __builtin_trap();
    (*n)++;
    return strcmp(key, "stop") == 0 ? KF_E_CONFIG : KF_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = 0;
    kf_ini_parse((const char *)data, size, on_value, &n);
    return 0;
}
