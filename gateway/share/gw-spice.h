/* usbgwd's end of one usbgw-spice-worker (spice/README.md): spawns the
 * worker on a socketpair, speaks the frames of spice/sw-frame.h, and turns
 * each session of a SPICE usbredir channel (a client's OPEN to its CLOSE)
 * into a GwSpiceStream, a GwTransport (common/gw-transport.h) that usbgwd
 * hands to a GwProxy as its client side (gw_proxy_new_with_transport()):
 *
 *   SPICE client <-> worker <=frames=> GwSpiceWorker <-stream-> GwProxy
 *
 * The proxy reads the client's bytes out of the frames the worker sent
 * and its writes become frames to the worker, in the same main-loop
 * iteration: no socket, system call or wake-up between the two.
 *
 * One worker serves one share (one ticket, one client at a time). Main
 * thread only; callbacks run from the main loop, never from inside a
 * gw_spice_worker_* or gw_spice_stream_* call or a stream's transport
 * function.
 *
 * Ownership of a stream: the channel_opened callee owns it and ends it
 * with gw_spice_stream_close(), or hands it to a GwProxy with
 * gw_spice_stream_transport (the proxy closes it with the session, also
 * when gw_proxy_new_with_transport() fails). The worker only borrows it;
 * a stream outlives its worker (it then reads out what came, then -1). */
#pragma once

#include <gio/gio.h>

#include "gw-transport.h"

G_BEGIN_DECLS

typedef struct _GwSpiceWorker GwSpiceWorker;
typedef struct _GwSpiceStream GwSpiceStream;

/* What a stream's user learns: G_IO_IN, the client's bytes came;
 * G_IO_IN | G_IO_HUP, the client closed the channel or the worker is gone
 * (read() gives what came before, then -1); G_IO_OUT, write() takes bytes
 * again after it took none. */
typedef void (*GwSpiceStreamReadyFunc)(GwSpiceStream *stream, GIOCondition condition,
                                       gpointer user_data);

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
    /* A client opened @channel: @stream carries its usbredir stream (the
     * callee's; closing it ends usbgwd's side, and the worker drops what
     * the client sends on the channel until it closes it). */
    void (*channel_opened)(GwSpiceWorker *worker, guint channel, GwSpiceStream *stream,
                           gpointer user_data);
    /* The client closed @channel: the stream from channel_opened is told
     * G_IO_HUP (from an idle) and reads -1 after the bytes that came. */
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
/* Closes the socketpair (the worker exits) and reaps the process. Streams
 * still open are told G_IO_HUP. */
void gw_spice_worker_free(GwSpiceWorker *worker);

/* A stream's GwTransport functions; their data is the GwSpiceStream.
 * read() gives the client's bytes (0: none now); write() queues frames
 * for the worker (0 while GW_SPICE_OUT_MAX bytes wait in gw-spice.c: then
 * G_IO_OUT follows); flush() sends what is queued; close() is
 * gw_spice_stream_close(). */
extern const GwTransport gw_spice_stream_transport;
/* Who learns of @stream's bytes, room and end (nullable: nobody; bytes
 * wait, and the user reads them when it is ready). */
void gw_spice_stream_set_ready_func(GwSpiceStream *stream, GwSpiceStreamReadyFunc func,
                                    gpointer user_data);
/* Ends the user's side of the stream and frees it. */
void gw_spice_stream_close(GwSpiceStream *stream);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwSpiceWorker, gw_spice_worker_free)

G_END_DECLS
