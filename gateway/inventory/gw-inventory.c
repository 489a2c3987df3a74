/* The inventory: hotplug → identities, lookup, find. See gw-inventory.h. */
#include "gw-inventory.h"

#include <gio/gio.h>
#include <string.h>

#include "gw-device.h"
#include "gw-log.h"
#include "gw-usb.h"
#include "gw-usbgw-metrics.h"

/* clang-format off */
G_DEFINE_QUARK(usbgw-inventory-error-quark, gw_inventory_error)
/* clang-format on */

/* A device being described in the worker thread. */
typedef struct {
    libusb_device *usb;        /* owned ref */
    GCancellable *cancellable; /* owned: it left, or usbgwd is going */
    PolicyDevice *desc;        /* owned, set by the worker */
    GError *error;             /* owned, set by the worker */
} GwInventoryJob;

struct _GwInventory {
    GwUsb *usb;                            /* owned */
    GMainContext *context;                 /* owned ref: where results are told */
    GThreadPool *pool;                     /* owned: one thread, jobs in arrival order */
    GAsyncQueue *done;                     /* owned: GwInventoryJob the worker finished */
    GSource *done_source;                  /* owned: tells the finished jobs on @context */
    GHashTable *describing;                /* libusb_device* → GwInventoryJob (borrowed) */
    GHashTable *devices;                   /* id → GwInventoryDevice (owned) */
    GHashTable *by_usb;                    /* libusb_device* → GwInventoryDevice (borrowed) */
    const GwInventoryCallbacks *callbacks; /* borrowed */
    gpointer user_data;
    gboolean stopped; /* gw_inventory_stop(): events are dropped */
};

static void
gw_inventory_device_free(gpointer data)
{
    GwInventoryDevice *dev = data;
    if (dev->usb != NULL)
        libusb_unref_device(dev->usb);
    policy_device_free(dev->desc);
    g_free(dev->id);
    g_free(dev->since);
    g_free(dev);
}

gboolean
gw_inventory_device_is_present(const GwInventoryDevice *device)
{
    return device->usb != NULL || (device->remote && device->remote_present);
}

GwInventoryDevice *
gw_inventory_set_remote(GwInventory *inventory, const gchar *id, const PolicyDevice *desc,
                        gboolean present)
{
    GwInventoryDevice *dev = g_hash_table_lookup(inventory->devices, id);

    g_return_val_if_fail(desc != NULL && desc->gateway != NULL, NULL);
    if (dev != NULL && !dev->remote)
        return NULL;
    if (dev == NULL) {
        dev = g_new0(GwInventoryDevice, 1);
        dev->id = g_strdup(id);
        dev->remote = TRUE;
        g_hash_table_insert(inventory->devices, dev->id, dev);
    }
    if (dev->desc != desc) {
        policy_device_free(dev->desc);
        dev->desc = policy_device_copy(desc);
    }
    dev->remote_present = present;
    gw_inventory_touch(dev);
    return dev;
}

void
gw_inventory_touch(GwInventoryDevice *device)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_free(device->since);
    device->since = g_date_time_format_iso8601(now);
}

static void
gw_inventory_job_free(GwInventoryJob *job)
{
    libusb_unref_device(job->usb);
    g_object_unref(job->cancellable);
    policy_device_free(job->desc);
    g_clear_error(&job->error);
    g_free(job);
}

/* Worker thread: reading descriptors and strings opens the device and
 * waits for it, so a slow or hung device never stalls the main loop. */
static void
gw_inventory_describe(gpointer data, gpointer user_data)
{
    GwInventoryJob *job = data;
    GwInventory *inventory = user_data;

    if (!g_cancellable_is_cancelled(job->cancellable))
        job->desc = gw_device_describe(job->usb, &job->error);
    g_async_queue_push(inventory->done, job);
    g_main_context_wakeup(inventory->context);
}

static gboolean
gw_inventory_done_ready(GSource *source, gint *timeout)
{
    GwInventory *inventory = ((GwInventory **)(source + 1))[0];
    *timeout = -1;
    return g_async_queue_length(inventory->done) > 0;
}

static gboolean
gw_inventory_done_check(GSource *source)
{
    gint timeout;
    return gw_inventory_done_ready(source, &timeout);
}

static void gw_inventory_described(GwInventory *inventory, GwInventoryJob *job);

static gboolean
gw_inventory_done_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
    GwInventory *inventory = ((GwInventory **)(source + 1))[0];
    GwInventoryJob *job;

    while ((job = g_async_queue_try_pop(inventory->done)) != NULL) {
        if (!g_cancellable_is_cancelled(job->cancellable)) {
            g_hash_table_remove(inventory->describing, job->usb);
            gw_inventory_described(inventory, job);
        }
        gw_inventory_job_free(job);
    }
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs gw_inventory_done_funcs = {
    .prepare = gw_inventory_done_ready,
    .check = gw_inventory_done_check,
    .dispatch = gw_inventory_done_dispatch,
};

GwInventory *
gw_inventory_new(GMainContext *context, GError **error)
{
    g_autoptr(GwUsb) usb = gw_usb_new(context, error);
    GwInventory *inventory;

    if (usb == NULL)
        return NULL;
    inventory = g_new0(GwInventory, 1);
    inventory->usb = g_steal_pointer(&usb);
    inventory->context = g_main_context_ref(context);
    inventory->devices =
        g_hash_table_new_full(g_str_hash, g_str_equal, NULL, gw_inventory_device_free);
    inventory->by_usb = g_hash_table_new(g_direct_hash, g_direct_equal);
    inventory->describing = g_hash_table_new(g_direct_hash, g_direct_equal);
    inventory->done = g_async_queue_new();
    inventory->pool = g_thread_pool_new(gw_inventory_describe, inventory, 1, FALSE, NULL);
    inventory->done_source =
        g_source_new(&gw_inventory_done_funcs, sizeof(GSource) + sizeof(GwInventory *));
    ((GwInventory **)(inventory->done_source + 1))[0] = inventory;
    g_source_set_name(inventory->done_source, "usbgw inventory descriptions");
    g_source_attach(inventory->done_source, context);
    return inventory;
}

void
gw_inventory_free(GwInventory *inventory)
{
    GwInventoryJob *job;

    if (inventory == NULL)
        return;
    gw_inventory_stop(inventory);
    /* the description in flight finishes (its budget bounds it) and the
     * jobs still queued run too, at once: they are cancelled (not
     * "immediate", which would drop them unfreed); what they all left is
     * dropped here, before the libusb context goes */
    g_source_destroy(inventory->done_source);
    g_source_unref(inventory->done_source);
    g_thread_pool_free(inventory->pool, FALSE, TRUE);
    while ((job = g_async_queue_try_pop(inventory->done)) != NULL)
        gw_inventory_job_free(job);
    g_async_queue_unref(inventory->done);
    /* the devices' libusb references go while their context lives (events
     * the usb thread still queues are not dispatched: nothing iterates
     * the main context here) */
    g_hash_table_unref(inventory->describing);
    g_hash_table_unref(inventory->by_usb);
    g_hash_table_unref(inventory->devices);
    /* then the event thread and the context; queued events are dropped */
    g_clear_pointer(&inventory->usb, gw_usb_free);
    g_main_context_unref(inventory->context);
    g_free(inventory);
}

libusb_context *
gw_inventory_get_context(GwInventory *inventory)
{
    return gw_usb_get_context(inventory->usb);
}

/* Arrivals of one device are told in order, one worker thread: a device
 * that leaves while it is read is dropped (it was never reported). */
static void
gw_inventory_arrived(GwInventory *inventory, libusb_device *usb)
{
    GwInventoryJob *job = g_new0(GwInventoryJob, 1);

    job->usb = libusb_ref_device(usb);
    job->cancellable = g_cancellable_new();
    g_hash_table_insert(inventory->describing, job->usb, job);
    g_thread_pool_push(inventory->pool, job, NULL);
}

static void
gw_inventory_described(GwInventory *inventory, GwInventoryJob *job)
{
    g_autofree gchar *id = NULL;
    GwInventoryDevice *dev;

    if (job->desc == NULL) {
        g_autofree gchar *port = gw_device_port_path(job->usb);
        g_warning("device at %s ignored: %s", port, job->error->message);
        return;
    }
    id = gw_device_identity(job->desc);
    dev = g_hash_table_lookup(inventory->devices, id);
    if (dev != NULL && dev->usb != NULL && g_strcmp0(dev->desc->port, job->desc->port) != 0) {
        /* another present device has this serial (clones, or a vendor
         * that gives every unit one string): this one is known by its port
         * too, and the first keeps the plain identity while it stays */
        g_autofree gchar *twin = g_strdup_printf("%s@%s", id, job->desc->port);
        g_warning("%s at %s has the serial of the device at %s: this one is %s", id,
                  job->desc->port, dev->desc->port, twin);
        g_free(id);
        id = g_steal_pointer(&twin);
        dev = g_hash_table_lookup(inventory->devices, id);
    }
    if (dev == NULL) {
        dev = g_new0(GwInventoryDevice, 1);
        dev->id = g_steal_pointer(&id);
        g_hash_table_insert(inventory->devices, dev->id, dev);
    } else if (dev->usb == NULL) {
        /* an identity seen before comes back: a replug, or the device
         * re-enumerated after a reset */
        gw_usbgw_metrics_reenumeration();
    } else {
        g_hash_table_remove(inventory->by_usb, dev->usb);
        g_clear_pointer(&dev->usb, libusb_unref_device);
    }
    policy_device_free(dev->desc);
    dev->desc = g_steal_pointer(&job->desc);
    dev->usb = libusb_ref_device(job->usb);
    g_hash_table_insert(inventory->by_usb, dev->usb, dev);
    gw_inventory_touch(dev);
    inventory->callbacks->arrived(dev, inventory->user_data);
}

static void
gw_inventory_left(GwInventory *inventory, libusb_device *usb)
{
    GwInventoryDevice *dev = g_hash_table_lookup(inventory->by_usb, usb);
    GwInventoryJob *job = g_hash_table_lookup(inventory->describing, usb);

    if (job != NULL) {
        /* still being read: never reported, so nobody hears it left */
        g_cancellable_cancel(job->cancellable);
        g_hash_table_remove(inventory->describing, usb);
        return;
    }
    if (dev == NULL)
        return;
    gw_log_device(G_LOG_LEVEL_MESSAGE, dev->id, NULL, NULL, "%s left", dev->id);
    g_hash_table_remove(inventory->by_usb, usb);
    g_clear_pointer(&dev->usb, libusb_unref_device);
    gw_inventory_touch(dev);
    inventory->callbacks->left(dev, inventory->user_data);
}

void
gw_inventory_stop(GwInventory *inventory)
{
    GHashTableIter iter;
    gpointer job;

    inventory->stopped = TRUE;
    g_hash_table_iter_init(&iter, inventory->describing);
    while (g_hash_table_iter_next(&iter, NULL, &job))
        g_cancellable_cancel(((GwInventoryJob *)job)->cancellable);
    g_hash_table_remove_all(inventory->describing);
}

static void
gw_inventory_hotplug(libusb_device *device, gboolean arrived, gpointer user_data)
{
    GwInventory *inventory = user_data;

    if (inventory->stopped) {
        /* usbgwd is going: nobody is left to tell */
    } else if (arrived) {
        gw_inventory_arrived(inventory, device);
    } else {
        gw_inventory_left(inventory, device);
    }
    libusb_unref_device(device);
}

gboolean
gw_inventory_start(GwInventory *inventory, const GwInventoryCallbacks *callbacks,
                   gpointer user_data, GError **error)
{
    inventory->callbacks = callbacks;
    inventory->user_data = user_data;
    return gw_usb_start(inventory->usb, gw_inventory_hotplug, inventory, error);
}

GwInventoryDevice *
gw_inventory_lookup(GwInventory *inventory, const gchar *id)
{
    return g_hash_table_lookup(inventory->devices, id);
}

guint
gw_inventory_get_count(GwInventory *inventory)
{
    return g_hash_table_size(inventory->devices);
}

static gint
gw_inventory_compare(gconstpointer a, gconstpointer b)
{
    return strcmp((*(GwInventoryDevice *const *)a)->id, (*(GwInventoryDevice *const *)b)->id);
}

GPtrArray *
gw_inventory_list(GwInventory *inventory)
{
    GPtrArray *out = g_ptr_array_new();
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, inventory->devices);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        g_ptr_array_add(out, value);
    g_ptr_array_sort(out, gw_inventory_compare);
    return out;
}

GwInventoryDevice *
gw_inventory_find(GwInventory *inventory, const gchar *ref, GError **error)
{
    g_autoptr(GPtrArray) devices = gw_inventory_list(inventory);
    g_autoptr(GPtrArray) matches = g_ptr_array_new();
    g_autoptr(GString) names = g_string_new(NULL);
    GwInventoryDevice *exact = g_hash_table_lookup(inventory->devices, ref);

    if (exact != NULL)
        return exact;
    for (guint i = 0; i < devices->len; i++) {
        GwInventoryDevice *dev = g_ptr_array_index(devices, i);
        g_autofree gchar *vidpid =
            g_strdup_printf("%04x:%04x", dev->desc->vendor_id, dev->desc->product_id);
        if (g_ascii_strcasecmp(vidpid, ref) == 0 || g_strcmp0(dev->desc->serial, ref) == 0 ||
            g_strcmp0(dev->desc->port, ref) == 0)
            g_ptr_array_add(matches, dev);
    }
    if (matches->len == 1)
        return g_ptr_array_index(matches, 0);
    if (matches->len == 0) {
        g_set_error(error, GW_INVENTORY_ERROR, GW_INVENTORY_ERROR_NOT_FOUND,
                    "no device '%s': name one by the id, VID:PID, serial or port that "
                    "'usbgwctl list' shows",
                    ref);
        return NULL;
    }
    for (guint i = 0; i < matches->len; i++)
        g_string_append_printf(names, "%s%s", i > 0 ? ", " : "",
                               ((GwInventoryDevice *)g_ptr_array_index(matches, i))->id);
    g_set_error(error, GW_INVENTORY_ERROR, GW_INVENTORY_ERROR_NOT_UNIQUE,
                "'%s' names %u devices (%s): use its id", ref, matches->len, names->str);
    return NULL;
}
