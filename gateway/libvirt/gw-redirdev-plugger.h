/* GwRedirdevPlugger: the one owner of the names usbgwd gives QEMU — the
 * unix socket of every served device (<rundir>/vm/<vm>/<slot>.sock) and
 * the libvirt alias of every redirdev it plugs (ua-usbgw-…) — and of
 * plugging, re-plugging and unplugging those redirdevs through libvirt.
 *
 * Names: a device's slot is its identity as a file name
 * (gw_device_slot_name); when that name lost characters (a serial with
 * '/' or spaces) a short hash of the identity is appended, so two devices
 * never share a socket. An alias is the slot with '.' (port paths behind
 * hubs, "1-1.4") and other characters libvirt refuses replaced, plus a
 * hash when anything was replaced. Both are pure functions of the
 * identity: the same after a restart. The plugger remembers which alias
 * it plugged for which device, so a redirdev removed behind usbgwd's back
 * is found by its alias exactly.
 *
 * Without libvirt (@libvirt NULL) it only names things.
 *
 * Threading: main thread only; completions run on the main context. */
#pragma once

#include <gio/gio.h>

#include "gw-libvirt.h"

G_BEGIN_DECLS

/* Prefix of every alias usbgwd gives a redirdev. */
#define GW_REDIRDEV_ALIAS_PREFIX "ua-usbgw-"

typedef struct _GwRedirdevPlugger GwRedirdevPlugger;

/* libvirt answered a device's plug: @error NULL on success. Not called
 * once the plugger is freed. */
typedef void (*GwRedirdevPlugged)(const gchar *id, const gchar *vm, const GError *error,
                                  gpointer user_data);

/* @libvirt: borrowed, nullable; it must outlive the plugger. */
GwRedirdevPlugger *gw_redirdev_plugger_new(const gchar *rundir, GwLibvirt *libvirt,
                                           GwRedirdevPlugged plugged, gpointer user_data);
void gw_redirdev_plugger_free(GwRedirdevPlugger *plugger);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwRedirdevPlugger, gw_redirdev_plugger_free)

/* The slot (file name without ".sock") and alias of a device's identity
 * and its slot name as gw_device_slot_name() gives it. */
gchar *gw_redirdev_slot(const gchar *id, const gchar *slot_name) G_GNUC_WARN_UNUSED_RESULT;
gchar *gw_redirdev_alias(const gchar *slot) G_GNUC_WARN_UNUSED_RESULT;

/* <rundir>/vm/<vm>/<slot>.sock for the device @id (@slot_name as above). */
gchar *gw_redirdev_plugger_device_socket(GwRedirdevPlugger *plugger, const gchar *vm,
                                         const gchar *id,
                                         const gchar *slot_name) G_GNUC_WARN_UNUSED_RESULT;
/* <rundir>/vm/<vm>: where a VM's sockets live. */
gchar *gw_redirdev_plugger_vm_dir(GwRedirdevPlugger *plugger,
                                  const gchar *vm) G_GNUC_WARN_UNUSED_RESULT;
/* Whether @path is one of usbgwd's sockets (under <rundir>/vm/). */
gboolean gw_redirdev_plugger_is_ours(GwRedirdevPlugger *plugger, const gchar *path);

/* Whether plugging can happen now: libvirt configured and connected. */
gboolean gw_redirdev_plugger_can_plug(GwRedirdevPlugger *plugger);
/* Plugs the device's socket @path into the running VM @uuid (nothing when
 * it is plugged already); @plugged tells how it went. */
void gw_redirdev_plugger_plug_device(GwRedirdevPlugger *plugger, const gchar *id,
                                     const gchar *slot_name, const gchar *vm, const gchar *uuid,
                                     const gchar *path);
/* Plugs a share's socket number @index; with @replug it is unplugged
 * first (QEMU's chardev closed for good when a lending ended). */
void gw_redirdev_plugger_plug_share(GwRedirdevPlugger *plugger, const gchar *vm, const gchar *uuid,
                                    const gchar *path, guint index, gboolean replug);
/* Unplugs the redirdev whose source is @path from the running VM @uuid. */
void gw_redirdev_plugger_unplug(GwRedirdevPlugger *plugger, const gchar *vm, const gchar *uuid,
                                const gchar *path);
/* Whether QEMU is connected to the socket @path. */
typedef gboolean (*GwRedirdevHasPeer)(const gchar *path, gpointer user_data);
/* After a usbgwd restart: unplugs @domain's redirdevs on usbgwd's sockets
 * whose QEMU is not connected. libvirt 9.0 hot-plugs chardevs without
 * <reconnect>, so such a QEMU never comes back by itself; plugging the
 * device again gives it a fresh one (the libvirt worker keeps the two in
 * order). */
void gw_redirdev_plugger_unplug_stale(GwRedirdevPlugger *plugger, const GwLibvirtDomain *domain,
                                      GwRedirdevHasPeer has_peer, gpointer user_data);
/* The device whose redirdev had @alias in @vm, or NULL (not ours, or a
 * share's). */
const gchar *gw_redirdev_plugger_lookup_alias(GwRedirdevPlugger *plugger, const gchar *vm,
                                              const gchar *alias);

G_END_DECLS
