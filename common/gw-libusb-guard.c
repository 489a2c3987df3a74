/* libusb_alloc_streams() and libusb_free_streams() that refuse a NULL
 * handle, for the programs that run usbredirhost: usbgwd (gateway/serve)
 * and usbgw-share (spice-gtk's usbredir channels).
 *
 * usbredir's usbredirhost (0.13.0, the newest here) handles a peer's
 * alloc_bulk_streams and free_bulk_streams packets by calling these on its
 * device handle without checking that it has a device; usbredirparser
 * passes the packets on whatever the capabilities. With no device bound
 * the handle is NULL and libusb dereferences it: usbgwd keeps a peer's
 * session while its key is unplugged (so the replug reaches the same
 * peer), and spice-gtk opens every usbredir channel's usbredirhost before
 * a device is lent, so one packet from a VM's peer (or from a SPICE
 * server) killed usbgwd (or usbgw-share). Reproducers: the gateway test
 * usbgwd-streams-no-device and tests/fuzz/corpus/share-client/
 * bad-alloc-streams-no-device.bin.
 *
 * These definitions are the executable's own, so the dynamic linker
 * resolves usbredirhost's calls to them (the link exports them: see the
 * link_args in gateway/meson.build and client-helper/meson.build). With a
 * NULL handle they answer LIBUSB_ERROR_NO_DEVICE, which usbredirhost sends
 * to the peer as an I/O error status; otherwise they call libusb's.
 * Remove this file once usbredirhost checks for a device itself. */
#include <dlfcn.h> /* RTLD_NEXT: the build defines _GNU_SOURCE */
#include <glib.h>
#include <libusb.h>

typedef int(LIBUSB_CALL *GwLibusbAllocStreams)(libusb_device_handle *handle, uint32_t num_streams,
                                               unsigned char *endpoints, int num_endpoints);
typedef int(LIBUSB_CALL *GwLibusbFreeStreams)(libusb_device_handle *handle,
                                              unsigned char *endpoints, int num_endpoints);

/* libusb's definition of @name (the next one after the executable's). */
static gpointer
gw_libusb_guard_next(gpointer *slot, const gchar *name)
{
    gpointer next = g_atomic_pointer_get(slot);

    if (next == NULL) {
        next = dlsym(RTLD_NEXT, name);
        g_atomic_pointer_set(slot, next);
    }
    return next;
}

int LIBUSB_CALL
libusb_alloc_streams(libusb_device_handle *handle, uint32_t num_streams, unsigned char *endpoints,
                     int num_endpoints)
{
    static gpointer next = NULL;
    GwLibusbAllocStreams call;

    if (handle == NULL)
        return LIBUSB_ERROR_NO_DEVICE;
    call = (GwLibusbAllocStreams)gw_libusb_guard_next(&next, "libusb_alloc_streams");
    if (call == NULL)
        return LIBUSB_ERROR_NOT_SUPPORTED;
    return call(handle, num_streams, endpoints, num_endpoints);
}

int LIBUSB_CALL
libusb_free_streams(libusb_device_handle *handle, unsigned char *endpoints, int num_endpoints)
{
    static gpointer next = NULL;
    GwLibusbFreeStreams call;

    if (handle == NULL)
        return LIBUSB_ERROR_NO_DEVICE;
    call = (GwLibusbFreeStreams)gw_libusb_guard_next(&next, "libusb_free_streams");
    if (call == NULL)
        return LIBUSB_ERROR_NOT_SUPPORTED;
    return call(handle, endpoints, num_endpoints);
}
