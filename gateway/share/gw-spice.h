/* usbgwd's end of one usbgw-spice-worker (spice/README.md): spawns the
 * worker on a socketpair, speaks the frames of spice/sw-frame.h, and turns
 * each SPICE usbredir channel a client opens into a plain stream socket,
 * which usbgwd hands to a GwProxy like any other usbredir client:
 *
 *   SPICE client <-> worker <=frames=> GwSpiceWorker <-> socketpair <-> GwProxy
 *
 * One worker serves one share (one ticket, one client at a time). Main
 * thread only; callbacks run from the main loop, never from inside a
 * gw_spice_worker_* call. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct _GwSpiceWorker GwSpiceWorker;

typedef struct {
    const gchar *program; /* usbgw-spice-worker */
    const gchar *address; /* where SPICE listens */
    guint16 port;
    guint channels;    /* usbredir channels: devices one client may lend at once */
    const gchar *user; /* nullable: the worker drops to this user (without a uid range) */
    /* uid range (0 = none): as root, each worker gets a uid of its own
     * from uid_first..uid_last, used by no other worker of this usbgwd, no
     * visible process and no user or group entry, and the same number as
     * its gid; @user is then ignored */
    guint uid_first;
    guint uid_last;
    /* nullable: TLS (all three or none); then @port speaks TLS only */
    const gchar *tls_ca;
    const gchar *tls_cert;
    const gchar *tls_key;
} GwSpiceWorkerOptions;

typedef struct {
    /* The worker listens (ports bound, privileges dropped). */
    void (*ready)(GwSpiceWorker *worker, gpointer user_data);
    /* A client opened @channel: @client carries its usbredir stream (a
     * new reference for the callee; closing it ends usbgwd's side). */
    void (*channel_opened)(GwSpiceWorker *worker, guint channel, GSocket *client,
                           gpointer user_data);
    /* The client closed @channel: the socket from channel_opened reads EOF. */
    void (*channel_closed)(GwSpiceWorker *worker, guint channel, gpointer user_data);
    /* Optional: who uses the share (SwClientEvent of spice/sw-frame.h:
     * SW_CLIENT_LOGIN, SW_CLIENT_LEFT, SW_CLIENT_REFUSED) and the
     * client's address as spice-server saw it ("IP:port"). */
    void (*client)(GwSpiceWorker *worker, guint event, const gchar *address, gpointer user_data);
    /* The worker is gone (exited, or its frames were malformed); no
     * callback follows. The owner frees the worker. */
    void (*exited)(GwSpiceWorker *worker, const gchar *reason, gpointer user_data);
} GwSpiceWorkerCallbacks;

GwSpiceWorker *gw_spice_worker_new(const GwSpiceWorkerOptions *options,
                                   const GwSpiceWorkerCallbacks *callbacks, gpointer user_data,
                                   GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* For tests and fuzzing: the usbgwd end of a worker's socketpair, @fd
 * (taken), with no process behind it. */
GwSpiceWorker *gw_spice_worker_new_for_fd(int fd, guint channels,
                                          const GwSpiceWorkerCallbacks *callbacks,
                                          gpointer user_data) G_GNUC_WARN_UNUSED_RESULT;
/* Sets the SPICE ticket (1..60 bytes); @lifetime_s 0: never expires. With
 * @disconnect the connected client is dropped too (it must log in again). */
void gw_spice_worker_set_ticket(GwSpiceWorker *worker, const gchar *ticket, guint lifetime_s,
                                gboolean disconnect);
gboolean gw_spice_worker_is_ready(GwSpiceWorker *worker);
/* The uid the worker runs as when it got one from the range, else 0. */
guint gw_spice_worker_get_uid(GwSpiceWorker *worker);
/* Closes the socketpair (the worker exits) and reaps the process. */
void gw_spice_worker_free(GwSpiceWorker *worker);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwSpiceWorker, gw_spice_worker_free)

G_END_DECLS
