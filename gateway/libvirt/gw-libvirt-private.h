/* What gw-libvirt.c (the client, main thread), gw-libvirt-worker.c (the
 * worker thread and libvirt's callbacks) and gw-libvirt-xml.c (domain XML)
 * share. Nothing outside gateway/libvirt/ includes it. Who runs what is
 * written at the top of gw-libvirt.h; each field of GwLibvirt says which
 * thread may touch it. */
#pragma once

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "gw-libvirt.h"

G_BEGIN_DECLS

G_DEFINE_AUTOPTR_CLEANUP_FUNC(virDomain, virDomainFree)

/* Reconnect timeout QEMU gets in the hot-plugged <source>: QEMU retries
 * the socket this often (seconds) while nobody listens. */
#define GW_LIBVIRT_REDIRDEV_RECONNECT_S 2

typedef enum {
    GW_LIBVIRT_JOB_CONNECT,
    GW_LIBVIRT_JOB_LIST,
    GW_LIBVIRT_JOB_ATTACH,
    GW_LIBVIRT_JOB_DETACH,
    GW_LIBVIRT_JOB_INSPECT, /* read a domain's metadata and USB bus: EVENT_INSPECTED */
    GW_LIBVIRT_JOB_QUIT,
} GwLibvirtJobKind;

/* What libvirt's callbacks get as opaque: the GwLibvirt and which
 * connection they belong to. Atomic refcounted: one reference per
 * registration. */
typedef struct {
    GwLibvirt *lv; /* owned ref */
    guint generation;
} GwLibvirtLink;

typedef struct {
    GwLibvirtJobKind kind;
    GTask *task;  /* owned, nullable (CONNECT and QUIT have none) */
    gchar *uuid;  /* owned, nullable */
    gchar *path;  /* owned, nullable */
    gchar *alias; /* owned, nullable */
} GwLibvirtJob;

struct _GwLibvirt {
    /* Immutable after gw_libvirt_new(); any thread. */
    gchar *uri;            /* owned */
    GMainContext *context; /* owned ref */
    GAsyncQueue *jobs;     /* owned ref, of GwLibvirtJob*: main → worker */
    GThread *worker;       /* owned, nullable after free */

    /* Main thread only. */
    GwLibvirtHandlers handlers;
    gpointer user_data;
    /* Set before the start (main thread), read by the worker after. */
    gint add_usb_controller; /* atomic */
    gboolean started;
    gboolean freed;        /* gw_libvirt_free() ran: call nothing any more */
    gboolean connected;    /* as last reported to the handlers */
    guint generation;      /* of the connection that is up */
    guint backoff_ms;      /* delay for the next retry */
    guint retry_delay_ms;  /* delay of the pending retry, 0 if none */
    guint failed_attempts; /* since the last success */
    GSource *retry_source; /* owned ref, nullable */
    gchar *last_error;     /* owned, nullable */

    /* Worker thread → free(). */
    gint stopping;    /* atomic */
    GMutex done_lock; /* protects worker_done */
    GCond done_cond;
    gboolean worker_done;

    /* Worker thread only. */
    virConnectPtr conn;    /* owned, nullable */
    guint conn_generation; /* counts successful connects */
    gboolean loss_posted;  /* EV_LOST sent for this connection */
    int lifecycle_id;      /* -1 if not registered */
    int removed_id;        /* -1 if not registered */
    int metadata_id;       /* -1 if not registered */
    /* The close callback's opaque (owned ref, nullable). libvirt gets no
     * free callback for it: drivers without close callbacks (test:///)
     * accept the registration and would never call one. */
    GwLibvirtLink *close_link;
};

typedef enum {
    GW_LIBVIRT_EVENT_CONNECTED,
    GW_LIBVIRT_EVENT_CONNECT_FAILED,
    GW_LIBVIRT_EVENT_LOST,
    GW_LIBVIRT_EVENT_STARTED,
    GW_LIBVIRT_EVENT_STOPPED,
    GW_LIBVIRT_EVENT_DEVICE_REMOVED,
    GW_LIBVIRT_EVENT_METADATA,  /* usbgw's metadata of a domain changed */
    GW_LIBVIRT_EVENT_INSPECTED, /* the worker read a domain (JOB_INSPECT) */
} GwLibvirtEventKind;

/* One notification from the worker or from libvirt's callbacks to the
 * main thread, carried by an idle source. */
typedef struct {
    GwLibvirt *lv; /* owned ref */
    GwLibvirtEventKind kind;
    guint generation;        /* CONNECTED, LOST */
    gchar *name;             /* owned, nullable: VM name */
    gchar *uuid;             /* owned, nullable */
    gchar *text;             /* owned, nullable: alias (DEVICE_REMOVED) or error message */
    gint64 elapsed_us;       /* CONNECTED, CONNECT_FAILED: duration of the attempt */
    GwLibvirtDomain *domain; /* owned, nullable: INSPECTED */
} GwLibvirtEvent;

/* gw-libvirt.c */
GwLibvirt *gw_libvirt_ref(GwLibvirt *lv);
void gw_libvirt_unref(GwLibvirt *lv);
void gw_libvirt_link_release(void *opaque);
void gw_libvirt_job_free(GwLibvirtJob *job);
void gw_libvirt_push(GwLibvirt *lv, GwLibvirtJobKind kind, GTask *task, const gchar *uuid,
                     const gchar *path, const gchar *alias);
GwLibvirtError gw_libvirt_error_code(int code);
int gw_libvirt_last_error_number(void);
const gchar *gw_libvirt_last_error_message(void);
const gchar *gw_libvirt_close_reason(int reason);
void gw_libvirt_post(GwLibvirt *lv, GwLibvirtEvent *event);
GwLibvirtEvent *gw_libvirt_event_new(GwLibvirtEventKind kind);

/* gw-libvirt-xml.c */
gboolean gw_libvirt_alias_is_valid(const gchar *alias);

/* gw-libvirt-worker.c: the worker thread's body */
gpointer gw_libvirt_worker_thread(gpointer data);

G_END_DECLS
