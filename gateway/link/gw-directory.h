/* GwDirectory: who exports which device to whom, across gateways.
 *
 * The daemon publishes its exportable devices and learns the devices other
 * gateways export to it through this interface only. The static directory
 * (gw-links.h: the peers in usbgwd.conf, devices learned over each link)
 * implements it today; a cluster store can implement it later without the
 * daemon changing. Streams always go over gateway links, whichever
 * directory says where a device is.
 *
 * Threading: main thread only; events run from the directory's own I/O
 * callbacks, never from inside a gw_directory_*() call.
 */
#pragma once

#include <glib.h>

#include "policy.h"

G_BEGIN_DECLS

typedef struct _GwDirectory GwDirectory;

typedef struct {
    /* Whether our device @id may be imported by gateway @gateway (the
     * policy's export rules). */
    gboolean (*may_export)(const gchar *id, const PolicyDevice *device, const gchar *gateway,
                           gpointer user_data);
    /* Gateway @gateway exports its device @id to us (again, or with a new
     * description); @device is borrowed for the call. */
    void (*found)(const gchar *gateway, const gchar *id, const PolicyDevice *device,
                  gpointer user_data);
    /* It no longer does (withdrawn, the gateway gone for good). */
    void (*lost)(const gchar *gateway, const gchar *id, gpointer user_data);
} GwDirectoryEvents;

typedef struct {
    void (*publish)(GwDirectory *directory, const gchar *id, const PolicyDevice *device);
    void (*withdraw)(GwDirectory *directory, const gchar *id);
    /* The answers of may_export() may have changed (a new policy). */
    void (*refresh)(GwDirectory *directory);
} GwDirectoryOps;

struct _GwDirectory {
    const GwDirectoryOps *ops;
};

/* Our device @id can be exported (its policy decision is an export):
 * every gateway may_export() allows learns of it; publishing it again
 * updates its description. */
static inline void
gw_directory_publish(GwDirectory *directory, const gchar *id, const PolicyDevice *device)
{
    directory->ops->publish(directory, id, device);
}

/* Our device @id is no longer exportable (unplugged, the policy changed). */
static inline void
gw_directory_withdraw(GwDirectory *directory, const gchar *id)
{
    directory->ops->withdraw(directory, id);
}

static inline void
gw_directory_refresh(GwDirectory *directory)
{
    directory->ops->refresh(directory);
}

G_END_DECLS
