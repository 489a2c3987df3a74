/* libFuzzer target for what usbgwd reads of a libvirt domain that its
 * owner (any libvirt user allowed to edit it) controls: the usbgw metadata
 * element (gw_libvirt_parse_metadata(), what virDomainGetMetadata hands
 * over) and the USB controllers of a domain XML (gw_libvirt_parse_domain(),
 * gw_libvirt_add_usb_controller()). Any byte string gives either wishes
 * within the bounds or one clean error, never a crash or a leak; a domain
 * without a USB bus that can be edited gets exactly the qemu-xhci bus.
 *
 * Run the fuzzer (libFuzzer needs clang); new inputs go to the first
 * directory, so give it a scratch one and the stored corpus second:
 *
 *   CC=clang meson setup build-fuzz -Dfuzzing=true -Db_sanitize=address,undefined \
 *       -Db_lundef=false
 *   ninja -C build-fuzz tests/fuzz/fuzz-libvirt-metadata
 *   mkdir -p /tmp/fuzz-libvirt-metadata-corpus
 *   build-fuzz/tests/fuzz/fuzz-libvirt-metadata /tmp/fuzz-libvirt-metadata-corpus \
 *       tests/fuzz/corpus/libvirt-metadata -dict=tests/fuzz/libvirt-metadata.dict \
 *       -max_total_time=600
 *
 * A crash leaves crash-<sha1> in the current directory: fix it, copy it to
 * tests/fuzz/corpus/libvirt-metadata/ under a telling name, and every
 * build's `meson test` (fuzz-libvirt-metadata-replay) replays it. */
#include <stdint.h>
#include <string.h>

#include "gw-libvirt.h"

#include "fuzz-common.h"

static void
fuzz_check_error(const GError *error)
{
    FUZZ_CHECK(error != NULL);
    FUZZ_CHECK(error->message != NULL && error->message[0] != '\0');
    FUZZ_CHECK(g_utf8_validate(error->message, -1, NULL));
}

static void
fuzz_metadata(const gchar *text, gsize size)
{
    g_autoptr(GPtrArray) wishes = g_ptr_array_new_with_free_func((GDestroyNotify)policy_wish_free);
    g_autoptr(GError) error = NULL;

    if (!gw_libvirt_parse_metadata(text, (gssize)size, wishes, &error)) {
        fuzz_check_error(error);
        FUZZ_CHECK(wishes->len == 0);
        return;
    }
    FUZZ_CHECK(error == NULL);
    FUZZ_CHECK(size <= GW_LIBVIRT_METADATA_MAX_BYTES);
    FUZZ_CHECK(wishes->len <= GW_LIBVIRT_METADATA_MAX_WISHES);
    for (guint i = 0; i < wishes->len; i++) {
        const PolicyWish *wish = g_ptr_array_index(wishes, i);
        g_autofree gchar *what = policy_wish_describe(wish);
        g_autoptr(PolicyWish) copy = policy_wish_copy(wish);

        /* a pool, or a device by at least its vendor */
        FUZZ_CHECK((wish->pool != NULL) != (wish->vendor_id >= 0));
        FUZZ_CHECK(wish->pool == NULL ||
                   (wish->pool[0] != '\0' && strlen(wish->pool) <= GW_LIBVIRT_METADATA_MAX_VALUE));
        FUZZ_CHECK(wish->serial == NULL || wish->pool == NULL);
        FUZZ_CHECK(wish->vendor_id <= 0xffff && wish->product_id <= 0xffff);
        FUZZ_CHECK(g_utf8_validate(what, -1, NULL));
        FUZZ_CHECK(policy_wish_equal(wish, copy));
    }
}

static void
fuzz_domain(const gchar *text)
{
    g_autoptr(GPtrArray) models = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) again = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) error = NULL;
    g_autofree gchar *edited = NULL;

    if (!gw_libvirt_parse_domain(text, NULL, NULL, models, &error)) {
        fuzz_check_error(error);
        return;
    }
    edited = gw_libvirt_add_usb_controller(text, &error);
    if (edited == NULL) {
        fuzz_check_error(error);
        /* refused because it has a bus, or could not be edited */
        return;
    }
    FUZZ_CHECK(gw_libvirt_usb_bus(models) == NULL);
    FUZZ_CHECK(gw_libvirt_parse_domain(edited, NULL, NULL, again, NULL));
    FUZZ_CHECK(g_strcmp0(gw_libvirt_usb_bus(again), GW_LIBVIRT_USB_CONTROLLER_MODEL) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the domain parser takes NUL-terminated text, as libvirt gives it */
    g_autofree gchar *text = g_strndup((const gchar *)data, size);

    fuzz_metadata((const gchar *)data, size);
    if (g_utf8_validate(text, -1, NULL))
        fuzz_domain(text);
    return 0;
}
