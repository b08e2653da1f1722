/*
 * The device SDK's public headers stand alone (each first in its file compiles), and beside the
 * server's own headers no name clashes (struct kf_device is the SDK's handle; the store's row is
 * struct kf_device_rec).
 */
#include "keyfleet/err.h"
#include "keyfleet/device.h"
#include "server/store/store.h"
#include "testutil.h"

#include <string.h>

static void test_error_codes(void **state)
{
    (void)state;
    /* the numbers are part of the SDK's interface: never reused, never renumbered */
    assert_int_equal(KF_OK, 0);
    assert_int_equal(KF_E_INVALID, 3);
    assert_int_equal(KF_E_BUSY, 19);
    assert_int_equal(KF_E_DISABLED, 26);
    assert_string_equal(kf_errcode(KF_E_BUSY), "busy");
    assert_string_equal(kf_strerror(KF_E_NOT_FOUND), "not found");
}

static void test_no_clash(void **state)
{
    struct kf_device *sdk = NULL;
    struct kf_device_rec row;
    (void)state;
    memset(&row, 0, sizeof(row));
    assert_null(sdk);
    assert_int_equal(row.id[0], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_codes),
        cmocka_unit_test(test_no_clash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
