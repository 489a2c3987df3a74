/* GwEtcdLeaseKeeper (gw-etcd.h): a timer on the client's context sending
 * one keepalive at a time, and the rule that decides the lease is lost. */
#include "gw-etcd-private.h"

struct _GwEtcdLeaseKeeper {
    gint refs;    /* the owner's, and one while a keepalive is in flight */
    GwEtcd *etcd; /* owned ref */
    gint64 lease_id;
    gint64 ttl_s;
    GwEtcdLeaseLostFunc lost;
    gpointer user_data;
    GCancellable *cancellable; /* owned: cancelled by _free() */
    GSource *timer;            /* owned */
    gint64 renewed_us;         /* monotonic time of the last renewal (or grant) */
    guint renewals;
    gboolean in_flight; /* a keepalive is on its way */
    gboolean stopped;   /* lost, or _free() */
};

static void
gw_etcd_lease_keeper_unref(GwEtcdLeaseKeeper *keeper)
{
    if (--keeper->refs > 0)
        return;
    if (keeper->timer != NULL) {
        g_source_destroy(keeper->timer);
        g_source_unref(keeper->timer);
    }
    g_object_unref(keeper->cancellable);
    g_object_unref(keeper->etcd);
    g_free(keeper);
}

/* The lease is gone (@error, taken): one call, then nothing more. */
static void
gw_etcd_lease_keeper_lose(GwEtcdLeaseKeeper *keeper, GError *error)
{
    keeper->stopped = TRUE;
    g_cancellable_cancel(keeper->cancellable);
    g_source_destroy(keeper->timer);
    g_prefix_error(&error, "etcd lease %" G_GINT64_FORMAT ": ", keeper->lease_id);
    keeper->lost(keeper, error, keeper->user_data);
    g_error_free(error);
}

/* No renewal for a whole TTL: etcd may have expired the lease already. */
static gboolean
gw_etcd_lease_keeper_expired(GwEtcdLeaseKeeper *keeper, const GError *last)
{
    gint64 silent_us = g_get_monotonic_time() - keeper->renewed_us;

    if (silent_us < keeper->ttl_s * G_USEC_PER_SEC)
        return FALSE;
    gw_etcd_lease_keeper_lose(
        keeper, g_error_new(GW_ETCD_ERROR, GW_ETCD_ERROR_LEASE_NOT_FOUND,
                            "not renewed for %" G_GINT64_FORMAT " s (its TTL): %s",
                            silent_us / G_USEC_PER_SEC,
                            last != NULL ? last->message : "keepalive still unanswered"));
    return TRUE;
}

static void
gw_etcd_lease_keeper_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GwEtcdLeaseKeeper *keeper = user_data;
    g_autoptr(GError) error = NULL;
    gint64 ttl = 0;
    gboolean ok = gw_etcd_lease_keepalive_finish(GW_ETCD(source), result, &ttl, &error);

    keeper->in_flight = FALSE;
    if (keeper->stopped) {
        gw_etcd_lease_keeper_unref(keeper);
        return;
    }
    if (ok) {
        keeper->renewed_us = g_get_monotonic_time();
        keeper->renewals++;
    } else if (g_error_matches(error, GW_ETCD_ERROR, GW_ETCD_ERROR_LEASE_NOT_FOUND)) {
        gw_etcd_lease_keeper_lose(keeper, g_steal_pointer(&error));
    } else {
        g_debug("%s", error->message);
        gw_etcd_lease_keeper_expired(keeper, error);
    }
    gw_etcd_lease_keeper_unref(keeper);
}

static gboolean
gw_etcd_lease_keeper_tick(gpointer user_data)
{
    GwEtcdLeaseKeeper *keeper = user_data;

    if (gw_etcd_lease_keeper_expired(keeper, NULL))
        return G_SOURCE_REMOVE;
    if (!keeper->in_flight) {
        keeper->in_flight = TRUE;
        keeper->refs++;
        gw_etcd_lease_keepalive_async(keeper->etcd, keeper->lease_id, keeper->cancellable,
                                      gw_etcd_lease_keeper_done, keeper);
    }
    return G_SOURCE_CONTINUE;
}

GwEtcdLeaseKeeper *
gw_etcd_lease_keeper_new(GwEtcd *etcd, gint64 lease_id, gint64 ttl_s, GwEtcdLeaseLostFunc lost,
                         gpointer user_data)
{
    GwEtcdLeaseKeeper *keeper = g_new0(GwEtcdLeaseKeeper, 1);
    /* the timer counts milliseconds in a guint */
    gint64 ttl = CLAMP(ttl_s, 1, G_MAXUINT / 1000);

    keeper->refs = 1;
    keeper->etcd = g_object_ref(etcd);
    keeper->lease_id = lease_id;
    keeper->ttl_s = ttl;
    keeper->lost = lost;
    keeper->user_data = user_data;
    keeper->cancellable = g_cancellable_new();
    keeper->renewed_us = g_get_monotonic_time();
    keeper->timer = g_timeout_source_new((guint)(ttl * 1000 / GW_ETCD_KEEPALIVE_PER_TTL));
    g_source_set_callback(keeper->timer, gw_etcd_lease_keeper_tick, keeper, NULL);
    g_source_attach(keeper->timer, gw_etcd_get_context(etcd));
    return keeper;
}

guint
gw_etcd_lease_keeper_get_renewals(GwEtcdLeaseKeeper *keeper)
{
    return keeper->renewals;
}

void
gw_etcd_lease_keeper_free(GwEtcdLeaseKeeper *keeper)
{
    if (keeper == NULL)
        return;
    keeper->stopped = TRUE;
    g_cancellable_cancel(keeper->cancellable);
    g_source_destroy(keeper->timer);
    gw_etcd_lease_keeper_unref(keeper);
}
