/* Socket ends in this process that stand for a QEMU on another host. */
#include "gw-handover-relay.h"

#include <sys/stat.h>

#include "gw-handover.h"

typedef struct {
    GwHandoverSettled done;
    gpointer data;
} GwHandoverWaiter;

struct _GwHandoverRelay {
    guint64 ino;
    gsize window;
    guint64 unread;
    GwHandoverRelaySettle settle;
    gpointer data;
    GArray *waiters; /* GwHandoverWaiter */
    gboolean final;
};

static GMutex gw_handover_relays_lock;
static GHashTable *gw_handover_relays; /* inode (guint64 *) -> GwHandoverRelay, borrowed */

GwHandoverRelay *
gw_handover_relay_new(int fd, gsize window, GwHandoverRelaySettle settle, gpointer data)
{
    GwHandoverRelay *relay = g_new0(GwHandoverRelay, 1);
    struct stat st;

    relay->ino = fstat(fd, &st) == 0 ? (guint64)st.st_ino : 0;
    relay->window = window;
    relay->settle = settle;
    relay->data = data;
    relay->waiters = g_array_new(FALSE, FALSE, sizeof(GwHandoverWaiter));
    g_mutex_lock(&gw_handover_relays_lock);
    if (gw_handover_relays == NULL)
        gw_handover_relays = g_hash_table_new(g_int64_hash, g_int64_equal);
    g_hash_table_replace(gw_handover_relays, &relay->ino, relay);
    g_mutex_unlock(&gw_handover_relays_lock);
    return relay;
}

/* Takes the relay's waiters (under the lock) to call them outside it. */
static GArray *
gw_handover_relay_take_waiters_locked(GwHandoverRelay *relay)
{
    GArray *waiters = relay->waiters;

    relay->waiters = g_array_new(FALSE, FALSE, sizeof(GwHandoverWaiter));
    return waiters;
}

static void
gw_handover_relay_call(GArray *waiters)
{
    for (guint i = 0; i < waiters->len; i++) {
        GwHandoverWaiter *waiter = &g_array_index(waiters, GwHandoverWaiter, i);
        waiter->done(waiter->data);
    }
    g_array_unref(waiters);
}

void
gw_handover_relay_free(GwHandoverRelay *relay)
{
    GArray *waiters;

    if (relay == NULL)
        return;
    g_mutex_lock(&gw_handover_relays_lock);
    if (g_hash_table_lookup(gw_handover_relays, &relay->ino) == relay)
        g_hash_table_remove(gw_handover_relays, &relay->ino);
    waiters = gw_handover_relay_take_waiters_locked(relay);
    g_mutex_unlock(&gw_handover_relays_lock);
    gw_handover_relay_call(waiters);
    g_array_unref(relay->waiters);
    g_free(relay);
}

void
gw_handover_relay_set_unread(GwHandoverRelay *relay, guint64 unread)
{
    g_mutex_lock(&gw_handover_relays_lock);
    relay->unread = unread;
    g_mutex_unlock(&gw_handover_relays_lock);
}

void
gw_handover_relay_settled(GwHandoverRelay *relay)
{
    GArray *waiters;

    g_mutex_lock(&gw_handover_relays_lock);
    waiters = gw_handover_relay_take_waiters_locked(relay);
    g_mutex_unlock(&gw_handover_relays_lock);
    gw_handover_relay_call(waiters);
}

void
gw_handover_relay_set_final(GwHandoverRelay *relay)
{
    g_mutex_lock(&gw_handover_relays_lock);
    relay->final = TRUE;
    g_mutex_unlock(&gw_handover_relays_lock);
    gw_handover_relay_settled(relay);
}

gboolean
gw_handover_settle_peer(int fd, GwHandoverSettled done, gpointer data)
{
    GwHandoverRelay *relay;
    GwHandoverWaiter waiter = {done, data};
    guint64 peer;
    gboolean first;

    if (!gw_handover_peer_inode(fd, &peer, NULL))
        return FALSE;
    g_mutex_lock(&gw_handover_relays_lock);
    relay = gw_handover_relays != NULL ? g_hash_table_lookup(gw_handover_relays, &peer) : NULL;
    if (relay == NULL || relay->final) {
        g_mutex_unlock(&gw_handover_relays_lock);
        return FALSE;
    }
    first = relay->waiters->len == 0;
    g_array_append_val(relay->waiters, waiter);
    g_mutex_unlock(&gw_handover_relays_lock);
    /* one question answers every waiter */
    if (first)
        relay->settle(relay->data);
    return TRUE;
}

void
gw_handover_settle_cancel(gpointer data)
{
    GHashTableIter iter;
    gpointer value;

    g_mutex_lock(&gw_handover_relays_lock);
    if (gw_handover_relays != NULL) {
        g_hash_table_iter_init(&iter, gw_handover_relays);
        while (g_hash_table_iter_next(&iter, NULL, &value)) {
            GwHandoverRelay *relay = value;
            for (guint i = relay->waiters->len; i > 0; i--)
                if (g_array_index(relay->waiters, GwHandoverWaiter, i - 1).data == data)
                    g_array_remove_index(relay->waiters, i - 1);
        }
    }
    g_mutex_unlock(&gw_handover_relays_lock);
}

guint64
gw_handover_relay_unread_of(guint64 ino)
{
    GwHandoverRelay *relay;
    guint64 unread = 0;

    g_mutex_lock(&gw_handover_relays_lock);
    relay = gw_handover_relays != NULL ? g_hash_table_lookup(gw_handover_relays, &ino) : NULL;
    if (relay != NULL)
        unread = relay->unread;
    g_mutex_unlock(&gw_handover_relays_lock);
    return unread;
}

gsize
gw_handover_relay_window_of(guint64 ino)
{
    GwHandoverRelay *relay;
    gsize window = 0;

    g_mutex_lock(&gw_handover_relays_lock);
    relay = gw_handover_relays != NULL ? g_hash_table_lookup(gw_handover_relays, &ino) : NULL;
    if (relay != NULL)
        window = relay->window;
    g_mutex_unlock(&gw_handover_relays_lock);
    return window;
}
