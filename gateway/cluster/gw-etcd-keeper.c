/* GwEtcdLeaseKeeper (gw-etcd.h): a timer on the client's context sending
 * one keepalive at a time, and the rule that decides the lease is lost.
 *
 * etcd restarts a lease's TTL when it receives a keepalive, which is after
 * we sent it; so the lease lives at least until send time + TTL. The keeper
 * reports it lost at the latest renewal's send time + 9/10 of the TTL (a
 * timer of its own, not the keepalive tick), so a gateway stops using what
 * the lease holds before etcd can expire it and give it to another.
 *
 * A keepalive that fails (no member answered, an election under way) is
 * sent again after a tenth of the TTL, not at the next tick: the 9/10 TTL
 * budget would otherwise be spent waiting.
 *
 * The deadline runs at G_PRIORITY_HIGH: after the process was paused (a
 * SIGSTOP, a frozen VM) past it, the loss is reported in the first
 * iteration, before the context dispatches anything of default priority. */
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
    GSource *deadline;         /* owned: fires when the lease must be taken as lost */
    gint64 renewed_us;         /* monotonic send time of the last renewal (or the grant) */
    gint64 sent_us;            /* monotonic send time of the keepalive in flight */
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
    if (keeper->deadline != NULL) {
        g_source_destroy(keeper->deadline);
        g_source_unref(keeper->deadline);
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
    g_source_destroy(keeper->deadline);
    g_prefix_error(&error, "etcd lease %" G_GINT64_FORMAT ": ", keeper->lease_id);
    keeper->lost(keeper, error, keeper->user_data);
    g_error_free(error);
}

/* How long after a renewal's send time the lease is taken as lost. */
static gint64
gw_etcd_lease_keeper_life_us(GwEtcdLeaseKeeper *keeper)
{
    return keeper->ttl_s * G_USEC_PER_SEC * 9 / 10;
}

/* A failed keepalive: the next one goes after TTL / 10, unless the tick
 * comes sooner. */
static void
gw_etcd_lease_keeper_retry_soon(GwEtcdLeaseKeeper *keeper)
{
    gint64 retry_us = g_get_monotonic_time() + keeper->ttl_s * G_USEC_PER_SEC / 10;
    gint64 tick_us = g_source_get_ready_time(keeper->timer);

    if (tick_us < 0 || retry_us < tick_us)
        g_source_set_ready_time(keeper->timer, retry_us);
}

/* No renewal for (nearly) a whole TTL: etcd may expire the lease now. */
static gboolean
gw_etcd_lease_keeper_expired(GwEtcdLeaseKeeper *keeper, const GError *last)
{
    gint64 silent_us = g_get_monotonic_time() - keeper->renewed_us;

    if (silent_us < gw_etcd_lease_keeper_life_us(keeper))
        return FALSE;
    gw_etcd_lease_keeper_lose(
        keeper,
        g_error_new(GW_ETCD_ERROR, GW_ETCD_ERROR_LEASE_NOT_FOUND,
                    "not renewed for %.1f s (9/10 of its TTL of %" G_GINT64_FORMAT " s): %s",
                    (gdouble)silent_us / G_USEC_PER_SEC, keeper->ttl_s,
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
        keeper->renewed_us = keeper->sent_us;
        keeper->renewals++;
        g_source_set_ready_time(keeper->deadline,
                                keeper->renewed_us + gw_etcd_lease_keeper_life_us(keeper));
    } else if (g_error_matches(error, GW_ETCD_ERROR, GW_ETCD_ERROR_LEASE_NOT_FOUND)) {
        gw_etcd_lease_keeper_lose(keeper, g_steal_pointer(&error));
    } else {
        g_debug("%s", error->message);
        if (!gw_etcd_lease_keeper_expired(keeper, error))
            gw_etcd_lease_keeper_retry_soon(keeper);
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
        keeper->sent_us = g_get_monotonic_time();
        keeper->refs++;
        gw_etcd_lease_keepalive_async(keeper->etcd, keeper->lease_id, keeper->cancellable,
                                      gw_etcd_lease_keeper_done, keeper);
    }
    return G_SOURCE_CONTINUE;
}

/* A source that runs at its ready time only (a timeout source would set
 * its own after each dispatch). */
static gboolean
gw_etcd_deadline_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
    (void)source;
    return callback(user_data);
}

static GSourceFuncs gw_etcd_deadline_funcs = {
    .dispatch = gw_etcd_deadline_dispatch,
};

static gboolean
gw_etcd_lease_keeper_deadline(gpointer user_data)
{
    GwEtcdLeaseKeeper *keeper = user_data;

    if (!gw_etcd_lease_keeper_expired(keeper, NULL))
        g_source_set_ready_time(keeper->deadline,
                                keeper->renewed_us + gw_etcd_lease_keeper_life_us(keeper));
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
    keeper->deadline = g_source_new(&gw_etcd_deadline_funcs, sizeof(GSource));
    /* before any I/O of the context: a process that was paused past the
     * deadline gives the lease up before it serves anything again */
    g_source_set_priority(keeper->deadline, G_PRIORITY_HIGH);
    g_source_set_ready_time(keeper->deadline,
                            keeper->renewed_us + gw_etcd_lease_keeper_life_us(keeper));
    g_source_set_callback(keeper->deadline, gw_etcd_lease_keeper_deadline, keeper, NULL);
    g_source_attach(keeper->deadline, gw_etcd_get_context(etcd));
    return keeper;
}

void
gw_etcd_lease_keeper_set_granted_at(GwEtcdLeaseKeeper *keeper, gint64 sent_us)
{
    if (keeper->stopped || sent_us >= keeper->renewed_us)
        return;
    keeper->renewed_us = sent_us;
    g_source_set_ready_time(keeper->deadline,
                            keeper->renewed_us + gw_etcd_lease_keeper_life_us(keeper));
}

gint64
gw_etcd_lease_keeper_get_renewed_at(GwEtcdLeaseKeeper *keeper)
{
    return keeper->renewed_us;
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
    g_source_destroy(keeper->deadline);
    gw_etcd_lease_keeper_unref(keeper);
}
