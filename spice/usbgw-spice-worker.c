/* usbgw-spice-worker: one SPICE endpoint for usbgwd.
 *
 * Runs spice-server with usbredir char devices only (no display), on a
 * GLib main loop, and moves the usbredir bytes of each channel between
 * the SPICE client and usbgwd over a socketpair (framing in sw-frame.h,
 * spice/README.md). It never parses usbredir: usbgwd's validating proxy
 * does. Started by usbgwd, one per listening endpoint, because
 * spice-server serves one client per instance and parses network input;
 * it drops root right after binding its ports. */
#include <errno.h>
#include <signal.h>
#include <netdb.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <pwd.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <spice.h>

#include "sw-confine.h"
#include "sw-core.h"
#include "sw-frame.h"
#include "sw-link.h"

#define SW_EXIT_FAILURE 1
#define SW_EXIT_USAGE   2

#define SW_DEFAULT_CHANNELS 4
#define SW_DEFAULT_ADDR     "127.0.0.1"
/* Lifetime of a ticket from --ticket-file, in seconds (0 = never expires).
 * A client that connects after it expired is refused; one connected
 * before stays connected. */
#define SW_DEFAULT_TICKET_LIFETIME_S 3600
/* Bytes from usbgwd held for one channel before the worker stops reading
 * the socketpair (the SPICE client reads slower than usbgwd writes). */
#define SW_CHANNEL_PENDING_MAX (256 * 1024)
/* Bytes queued towards usbgwd before char device writes are refused
 * (spice-server then holds the client's data and retries). */
#define SW_LINK_QUEUE_MAX (1024 * 1024)
/* (uid_t)-1 means "unchanged" to setuid() and friends. */
#define SW_MAX_UID 4294967294U

/* Longest wait, after a client's main channel linked, for its other
 * channels before the ticket is withdrawn anyway (a client that links
 * fewer usbredir channels, or a connection that never finishes its
 * link). Until then a second login replaces the first, as spice-server
 * does. */
#define SW_LOCK_GRACE_MS 3000

/* One connection spice-server accepted (SPICE_CHANNEL_EVENT_CONNECTED). */
typedef struct {
    gchar *address;  /* owned: the peer, "IP:port" */
    gboolean linked; /* INITIALIZED seen: its ticket was accepted */
} SwConnection;

static void
sw_connection_free(SwConnection *connection)
{
    g_free(connection->address);
    g_free(connection);
}

typedef struct SwWorker SwWorker;

/* One usbredir char device = one SPICE usbredir channel = one device. */
typedef struct {
    SpiceCharDeviceInstance sin; /* first: spice-server hands us &sin */
    SwWorker *worker;            /* not owned */
    guint index;
    GByteArray *to_client; /* owned: from usbgwd, not yet read by spice */
    gboolean open;         /* a client holds the channel */
    gboolean awaiting_ack; /* CLOSE sent, usbgwd's CLOSE not yet seen */
    guint64 dropped;       /* DATA bytes dropped while awaiting the ack */
    gboolean wake;         /* DATA came in this batch of frames: wake spice-server */
} SwChannel;

struct SwWorker {
    GMainLoop *loop;     /* owned */
    SpiceServer *server; /* owned, nullable */
    SwLink *link;        /* owned, nullable */
    SwChannel *channels; /* owned, n_channels */
    guint n_channels;
    guint wakeup_id; /* pending sw_worker_wakeup_idle() */
    int exit_status;
    /* SpiceChannelEventInfo * (spice-server's, valid until DISCONNECTED)
     * -> SwConnection *: owned */
    GHashTable *connections;
    /* The share's ticket as usbgwd last set it, kept to hand it back to
     * spice-server when the client leaves. */
    char *ticket;             /* owned, nullable */
    gint64 ticket_expires_us; /* monotonic; 0: never */
    int client_id;            /* connection_id of the logged-in client's main channel; 0 none */
    char *client_address;     /* owned, nullable: its address */
    guint client_channels;    /* its usbredir channels linked */
    gboolean locked;          /* the ticket is withdrawn while it is connected */
    guint lock_id;            /* SW_LOCK_GRACE_MS timeout */
};

/* Command line. */
static int opt_fd = -1;
static char *opt_addr;
static int opt_port = -1;
static int opt_tls_port;
static char *opt_tls_ca;
static char *opt_tls_cert;
static char *opt_tls_key;
static gboolean opt_tls_required;
static char *opt_ticket_file;
static int opt_ticket_lifetime = SW_DEFAULT_TICKET_LIFETIME_S;
static int opt_channels = SW_DEFAULT_CHANNELS;
static char *opt_user;
static gint64 opt_uid = -1;
static gboolean opt_version;

static const GOptionEntry sw_options[] = {
    {"fd", 0, 0, G_OPTION_ARG_INT, &opt_fd, "Connected socketpair to usbgwd", "N"},
    {"addr", 0, 0, G_OPTION_ARG_STRING, &opt_addr,
     "Address to listen on (default " SW_DEFAULT_ADDR ")", "ADDR"},
    {"port", 0, 0, G_OPTION_ARG_INT, &opt_port, "Plain TCP port (0 = none)", "PORT"},
    {"tls-port", 0, 0, G_OPTION_ARG_INT, &opt_tls_port, "TLS port (0 = none)", "PORT"},
    {"tls-ca", 0, 0, G_OPTION_ARG_FILENAME, &opt_tls_ca, "CA certificate (PEM)", "FILE"},
    {"tls-cert", 0, 0, G_OPTION_ARG_FILENAME, &opt_tls_cert, "Server certificate (PEM)", "FILE"},
    {"tls-key", 0, 0, G_OPTION_ARG_FILENAME, &opt_tls_key, "Server private key (PEM)", "FILE"},
    {"tls-required", 0, 0, G_OPTION_ARG_NONE, &opt_tls_required,
     "Refuse channels that are not on the TLS port", NULL},
    {"ticket-file", 0, 0, G_OPTION_ARG_FILENAME, &opt_ticket_file,
     "Read the SPICE ticket from FILE (else usbgwd sends a TICKET frame)", "FILE"},
    {"ticket-lifetime", 0, 0, G_OPTION_ARG_INT, &opt_ticket_lifetime,
     "Seconds the --ticket-file ticket stays valid (0 = forever)", "S"},
    {"channels", 0, 0, G_OPTION_ARG_INT, &opt_channels, "usbredir channels to offer (default 4)",
     "N"},
    {"user", 0, 0, G_OPTION_ARG_STRING, &opt_user,
     "Run as USER after binding (this or --uid is required when started as root)", "USER"},
    {"uid", 0, 0, G_OPTION_ARG_INT64, &opt_uid,
     "Run as uid and gid N after binding, with no supplementary groups (N needs no passwd "
     "entry; usbgwd gives each worker its own)",
     "N"},
    {"version", 0, 0, G_OPTION_ARG_NONE, &opt_version, "Print the version and exit", NULL},
    G_OPTION_ENTRY_NULL,
};

static void sw_worker_schedule_wakeup(SwWorker *worker);

static SwChannel *
sw_channel_from_sin(SpiceCharDeviceInstance *sin)
{
    return (SwChannel *)sin;
}

/* Reading from usbgwd pauses while any channel holds too much. */
static void
sw_worker_update_reading(SwWorker *worker)
{
    gboolean full = FALSE;

    if (worker->link == NULL)
        return;
    for (guint i = 0; i < worker->n_channels; i++)
        full |= worker->channels[i].to_client->len >= SW_CHANNEL_PENDING_MAX;
    sw_link_set_reading(worker->link, !full);
}

static void
sw_channel_state(SpiceCharDeviceInstance *sin, int connected)
{
    SwChannel *channel = sw_channel_from_sin(sin);
    SwWorker *worker = channel->worker;

    if (connected && !channel->open) {
        channel->open = TRUE;
        g_info("channel %u: client opened it", channel->index);
        if (worker->link != NULL)
            sw_link_send(worker->link, SW_FRAME_OPEN, channel->index, NULL, 0);
        /* usbgwd may have sent its hello before the client came. */
        if (channel->to_client->len > 0)
            sw_worker_schedule_wakeup(worker);
    } else if (!connected && channel->open) {
        channel->open = FALSE;
        channel->awaiting_ack = TRUE;
        channel->dropped = 0;
        g_byte_array_set_size(channel->to_client, 0);
        g_info("channel %u: client closed it", channel->index);
        if (worker->link != NULL)
            sw_link_send(worker->link, SW_FRAME_CLOSE, channel->index, NULL, 0);
        sw_worker_update_reading(worker);
    }
}

static int
sw_channel_write(SpiceCharDeviceInstance *sin, const uint8_t *buf, int len)
{
    SwChannel *channel = sw_channel_from_sin(sin);
    SwWorker *worker = channel->worker;
    int offset = 0;

    if (worker->link == NULL || !channel->open)
        return len; /* nobody to give it to: dropped, as on a closed channel */
    if (sw_link_get_queued(worker->link) >= SW_LINK_QUEUE_MAX) {
        /* spice-server keeps the bytes and retries on wakeup. */
        sw_link_notify_when_drained(worker->link);
        return 0;
    }
    while (offset < len) {
        gsize chunk = MIN((gsize)(len - offset), SW_FRAME_MAX_PAYLOAD);

        sw_link_send(worker->link, SW_FRAME_DATA, channel->index, buf + offset, chunk);
        offset += (int)chunk;
    }
    return len;
}

static int
sw_channel_read(SpiceCharDeviceInstance *sin, uint8_t *buf, int len)
{
    SwChannel *channel = sw_channel_from_sin(sin);
    guint n;

    if (!channel->open || len <= 0)
        return 0;
    n = MIN((guint)len, channel->to_client->len);
    if (n == 0)
        return 0;
    memcpy(buf, channel->to_client->data, n);
    g_byte_array_remove_range(channel->to_client, 0, n);
    sw_worker_update_reading(channel->worker);
    return (int)n;
}

static SpiceCharDeviceInterface sw_channel_interface = {
    .base =
        {
            .type = SPICE_INTERFACE_CHAR_DEVICE,
            .description = "usbgw usbredir channel",
            .major_version = SPICE_INTERFACE_CHAR_DEVICE_MAJOR,
            .minor_version = SPICE_INTERFACE_CHAR_DEVICE_MINOR,
        },
    .state = sw_channel_state,
    .write = sw_channel_write,
    .read = sw_channel_read,
};

/* Outside spice-server's own call stacks: tells each open channel with
 * bytes from usbgwd (or with writes refused earlier) to try again. */
static gboolean
sw_worker_wakeup_idle(gpointer user_data)
{
    SwWorker *worker = user_data;

    worker->wakeup_id = 0;
    for (guint i = 0; i < worker->n_channels; i++) {
        if (worker->channels[i].open)
            spice_server_char_device_wakeup(&worker->channels[i].sin);
    }
    return G_SOURCE_REMOVE;
}

static void
sw_worker_schedule_wakeup(SwWorker *worker)
{
    if (worker->wakeup_id == 0)
        worker->wakeup_id = g_idle_add(sw_worker_wakeup_idle, worker);
}

static void
sw_worker_send_client(SwWorker *worker, SwClientEvent event, const char *address)
{
    guint8 payload[1 + SW_FRAME_MAX_ADDRESS];
    gsize length = MIN(strlen(address), (gsize)SW_FRAME_MAX_ADDRESS);

    if (worker->link == NULL || length == 0)
        return;
    payload[0] = (guint8)event;
    memcpy(payload + 1, address, length);
    sw_link_send(worker->link, SW_FRAME_CLIENT, 0, payload, 1 + length);
}

/* Hands the share's ticket to spice-server (with what is left of its
 * lifetime); FALSE when it has expired. */
static gboolean
sw_worker_apply_ticket(SwWorker *worker, gboolean disconnect)
{
    gint64 left_us = worker->ticket_expires_us - g_get_monotonic_time();
    int lifetime_s = 0;

    if (worker->ticket == NULL)
        return TRUE;
    if (worker->ticket_expires_us != 0) {
        if (left_us <= 0)
            return FALSE;
        lifetime_s = (int)MAX((left_us + G_USEC_PER_SEC - 1) / G_USEC_PER_SEC, 1);
    }
    return spice_server_set_ticket(worker->server, worker->ticket, lifetime_s, 0,
                                   disconnect ? 1 : 0) == 0;
}

/* No new login while the client is connected: spice-server gets an empty
 * ticket, which refuses every link (its own channels are linked). */
static void
sw_worker_lock(SwWorker *worker)
{
    g_clear_handle_id(&worker->lock_id, g_source_remove);
    if (worker->locked || worker->client_id == 0)
        return;
    worker->locked = TRUE;
    (void)spice_server_set_ticket(worker->server, NULL, 0, 0, 0);
    g_info("client %s: %u usbredir channels linked, ticket withdrawn while it is connected",
           worker->client_address, worker->client_channels);
}

/* The client is complete once all its usbredir channels are linked and no
 * other connection is still in its link (a client links its channels
 * together: its inputs channel, say, is in flight with them). */
static void
sw_worker_maybe_lock(SwWorker *worker)
{
    GHashTableIter iter;
    SwConnection *connection;

    if (worker->locked || worker->client_id == 0 || worker->client_channels < worker->n_channels)
        return;
    g_hash_table_iter_init(&iter, worker->connections);
    while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&connection))
        if (!connection->linked)
            return;
    sw_worker_lock(worker);
}

static gboolean
sw_worker_lock_timeout(gpointer user_data)
{
    SwWorker *worker = user_data;

    worker->lock_id = 0;
    sw_worker_lock(worker);
    return G_SOURCE_REMOVE;
}

static void
sw_worker_unlock(SwWorker *worker)
{
    g_clear_handle_id(&worker->lock_id, g_source_remove);
    if (!worker->locked)
        return;
    worker->locked = FALSE;
    if (!sw_worker_apply_ticket(worker, FALSE))
        g_info("the ticket expired while the client was connected: no new login");
}

static gboolean
sw_worker_set_ticket(SwWorker *worker, const char *ticket, guint lifetime_s, gboolean disconnect,
                     GError **error)
{
    if (worker->ticket != NULL)
        explicit_bzero(worker->ticket, strlen(worker->ticket));
    g_free(worker->ticket);
    worker->ticket = g_strdup(ticket);
    worker->ticket_expires_us =
        lifetime_s == 0 ? 0 : g_get_monotonic_time() + (gint64)lifetime_s * G_USEC_PER_SEC;
    /* while a client is connected the new ticket waits for it to leave,
     * unless it is dropped now (then spice-server's disconnect reports
     * it gone before the ticket is set) */
    if (worker->locked && !disconnect) {
        g_info("ticket stored, lifetime %u s: in force once the client leaves", lifetime_s);
        return TRUE;
    }
    if (!sw_worker_apply_ticket(worker, disconnect)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "spice-server refused the ticket");
        return FALSE;
    }
    g_info("ticket set, lifetime %u s%s", lifetime_s,
           disconnect ? ", connected client dropped" : "");
    return TRUE;
}

/* "IP:port" ("[IPv6]:port") of the peer spice-server saw; NULL if unknown
 * (spice-server fills the _ext fields since 0.12.6; the others are
 * deprecated). */
static char *
sw_peer_address(const SpiceChannelEventInfo *info)
{
    const struct sockaddr *addr = (const struct sockaddr *)&info->paddr_ext;
    char host[NI_MAXHOST];
    char port[NI_MAXSERV];

    if (!(info->flags & SPICE_CHANNEL_EVENT_FLAG_ADDR_EXT) || info->plen_ext == 0 ||
        getnameinfo(addr, info->plen_ext, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        return NULL;
    return addr->sa_family == AF_INET6 ? g_strdup_printf("[%s]:%s", host, port)
                                       : g_strdup_printf("%s:%s", host, port);
}

static void
sw_worker_on_linked(SwWorker *worker, SpiceChannelEventInfo *info, SwConnection *connection)
{
    connection->linked = TRUE;
    if (info->type == SPICE_CHANNEL_MAIN) {
        /* spice-server dropped any earlier client before linking this one
         * (its DISCONNECTED came first): only inside the grace window */
        worker->client_id = info->connection_id;
        g_free(worker->client_address);
        worker->client_address = g_strdup(connection->address);
        worker->client_channels = 0;
        g_message("client %s logged in (connection %d)", connection->address, info->connection_id);
        sw_worker_send_client(worker, SW_CLIENT_LOGIN, connection->address);
        g_clear_handle_id(&worker->lock_id, g_source_remove);
        worker->lock_id = g_timeout_add(SW_LOCK_GRACE_MS, sw_worker_lock_timeout, worker);
        return;
    }
    if (worker->client_id != 0 && info->connection_id == worker->client_id &&
        info->type == SPICE_CHANNEL_USBREDIR)
        worker->client_channels++;
    sw_worker_maybe_lock(worker);
}

static void
sw_worker_on_closed_connection(SwWorker *worker, SpiceChannelEventInfo *info,
                               SwConnection *connection)
{
    if (!connection->linked) {
        /* its login failed (ticket refused or expired, TLS failed) or
         * it gave up before */
        if (worker->locked) {
            g_message("login from %s refused: client %s holds the share", connection->address,
                      worker->client_address);
            sw_worker_send_client(worker, SW_CLIENT_REFUSED, connection->address);
        } else {
            g_message("connection from %s closed before its login completed", connection->address);
        }
        return;
    }
    if (info->type != SPICE_CHANNEL_MAIN || info->connection_id != worker->client_id)
        return;
    g_message("client %s left", worker->client_address);
    sw_worker_send_client(worker, SW_CLIENT_LEFT, worker->client_address);
    worker->client_id = 0;
    sw_worker_unlock(worker);
}

static void
sw_worker_on_channel_event(int event, SpiceChannelEventInfo *info, gpointer user_data)
{
    SwWorker *worker = user_data;
    SwConnection *connection = g_hash_table_lookup(worker->connections, info);

    switch (event) {
    case SPICE_CHANNEL_EVENT_CONNECTED: {
        char *address = sw_peer_address(info);

        connection = g_new0(SwConnection, 1);
        connection->address = address != NULL ? address : g_strdup("unknown");
        g_hash_table_replace(worker->connections, info, connection);
        g_debug("connection from %s", connection->address);
        break;
    }
    case SPICE_CHANNEL_EVENT_INITIALIZED:
        if (connection != NULL)
            sw_worker_on_linked(worker, info, connection);
        break;
    case SPICE_CHANNEL_EVENT_DISCONNECTED:
        if (connection != NULL) {
            sw_worker_on_closed_connection(worker, info, connection);
            g_hash_table_remove(worker->connections, info);
            sw_worker_maybe_lock(worker);
        }
        break;
    default:
        break;
    }
}

static gboolean
sw_ticket_check(const char *ticket, gsize length, const char *origin, GError **error)
{
    if (length == 0 || length > SW_FRAME_MAX_TICKET) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s: ticket is %zu bytes, must be 1 to %u", origin, length,
                    SW_FRAME_MAX_TICKET);
        return FALSE;
    }
    if (memchr(ticket, '\0', length) != NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: ticket contains a NUL",
                    origin);
        return FALSE;
    }
    return TRUE;
}

static gboolean
sw_worker_on_ticket_frame(SwWorker *worker, const guint8 *payload, gsize length,
                          gboolean disconnect, GError **error)
{
    char ticket[SW_FRAME_MAX_TICKET + 1];
    gboolean ok;

    if (length < 4) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "from usbgwd: TICKET payload is %zu bytes, needs a 4-byte lifetime", length);
        return FALSE;
    }
    if (!sw_ticket_check((const char *)payload + 4, length - 4, "TICKET frame from usbgwd", error))
        return FALSE;
    memcpy(ticket, payload + 4, length - 4);
    ticket[length - 4] = '\0';
    ok = sw_worker_set_ticket(worker, ticket, sw_frame_get_u32(payload), disconnect, error);
    explicit_bzero(ticket, sizeof(ticket));
    return ok;
}

static gboolean
sw_worker_on_frame(const SwFrameHeader *header, const guint8 *payload, gpointer user_data,
                   GError **error)
{
    SwWorker *worker = user_data;
    SwChannel *channel;

    if (header->type == SW_FRAME_TICKET || header->type == SW_FRAME_DISCONNECT)
        return sw_worker_on_ticket_frame(worker, payload, header->length,
                                         header->type == SW_FRAME_DISCONNECT, error);
    if (header->type != SW_FRAME_DATA && header->type != SW_FRAME_CLOSE) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "from usbgwd: frame type %u only goes from worker to usbgwd", header->type);
        return FALSE;
    }
    if (header->channel >= worker->n_channels) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "from usbgwd: channel %u does not exist (%u channels)", header->channel,
                    worker->n_channels);
        return FALSE;
    }
    channel = &worker->channels[header->channel];
    if (header->type == SW_FRAME_CLOSE) {
        if (channel->awaiting_ack && channel->dropped > 0)
            g_debug("channel %u: dropped %" G_GUINT64_FORMAT " bytes for the closed session",
                    channel->index, channel->dropped);
        channel->awaiting_ack = FALSE;
        return TRUE;
    }
    if (channel->awaiting_ack) {
        channel->dropped += header->length;
        return TRUE;
    }
    if (!channel->open && channel->to_client->len + header->length > SW_CHANNEL_PENDING_MAX) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                    "from usbgwd: more than %u bytes for channel %u, which has no client",
                    SW_CHANNEL_PENDING_MAX, channel->index);
        return FALSE;
    }
    g_byte_array_append(channel->to_client, payload, header->length);
    /* woken once all frames of this read are in (sw_worker_on_frames_done) */
    channel->wake = channel->open;
    sw_worker_update_reading(worker);
    return TRUE;
}

/* The frames of one read from usbgwd are in: each channel that got data
 * tells spice-server now, which reads it and writes it to the client in
 * this same turn of the main loop (an idle would take one more). This
 * runs from the link's own callbacks, outside spice-server's call stacks. */
static void
sw_worker_on_frames_done(gpointer user_data)
{
    SwWorker *worker = user_data;

    /* spice-server reads the bytes and writes them to the client within
     * the wakeup: its watch changes for that are held (sw-core.h) */
    sw_core_hold_watches();
    for (guint i = 0; i < worker->n_channels; i++) {
        SwChannel *channel = &worker->channels[i];

        if (!channel->wake)
            continue;
        channel->wake = FALSE;
        if (channel->open)
            spice_server_char_device_wakeup(&channel->sin);
    }
    sw_core_release_watches();
}

static void
sw_worker_on_drained(gpointer user_data)
{
    sw_worker_schedule_wakeup(user_data);
}

static void
sw_worker_on_closed(const GError *error, gpointer user_data)
{
    SwWorker *worker = user_data;

    if (error != NULL) {
        g_warning("socketpair to usbgwd: %s", error->message);
        worker->exit_status = SW_EXIT_FAILURE;
    } else {
        g_info("usbgwd closed the socketpair, exiting");
    }
    g_main_loop_quit(worker->loop);
}

static const SwLinkCallbacks sw_worker_link_callbacks = {
    .frame = sw_worker_on_frame,
    .frames_done = sw_worker_on_frames_done,
    .drained = sw_worker_on_drained,
    .closed = sw_worker_on_closed,
};

static gboolean
sw_worker_on_signal(gpointer user_data)
{
    SwWorker *worker = user_data;

    g_info("signal received, exiting");
    g_main_loop_quit(worker->loop);
    return G_SOURCE_CONTINUE;
}

/* Reads the ticket file (one line; a trailing newline is not part of it). */
static char *
sw_read_ticket_file(const char *path, GError **error)
{
    g_autofree char *contents = NULL;
    gsize length = 0;

    if (!g_file_get_contents(path, &contents, &length, error))
        return NULL;
    while (length > 0 && (contents[length - 1] == '\n' || contents[length - 1] == '\r'))
        contents[--length] = '\0';
    if (!sw_ticket_check(contents, length, path, error)) {
        explicit_bzero(contents, length);
        return NULL;
    }
    return g_steal_pointer(&contents);
}

/* The ids to switch to: --uid N (gid N too) or --user NAME (its uid and
 * primary gid). */
static gboolean
sw_lookup_ids(SwConfineIds *ids, char **name, GError **error)
{
    struct passwd *pw;

    if (opt_uid >= 0) {
        ids->uid = (uid_t)opt_uid;
        ids->gid = (gid_t)opt_uid;
        *name = g_strdup_printf("uid %" G_GINT64_FORMAT, opt_uid);
        return TRUE;
    }
    errno = 0;
    pw = getpwnam(opt_user);
    if (pw == NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "--user %s: %s", opt_user,
                    errno != 0 ? g_strerror(errno) : "no such user");
        return FALSE;
    }
    ids->uid = pw->pw_uid;
    ids->gid = pw->pw_gid;
    *name = g_strdup(opt_user);
    return TRUE;
}

static gboolean
sw_check_options(GError **error)
{
    if (opt_fd < 0) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--fd N (the socketpair to usbgwd) is required");
        return FALSE;
    }
    if (opt_fd <= STDERR_FILENO) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--fd %d: stdin, stdout and stderr cannot be the socketpair", opt_fd);
        return FALSE;
    }
    if (opt_port < 0 || opt_port > 65535 || opt_tls_port < 0 || opt_tls_port > 65535) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--port and --tls-port take 0 to 65535 (--port is required)");
        return FALSE;
    }
    if (opt_port == 0 && opt_tls_port == 0) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--port 0 needs a --tls-port");
        return FALSE;
    }
    if (opt_tls_port != 0 && (opt_tls_ca == NULL || opt_tls_cert == NULL || opt_tls_key == NULL)) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--tls-port needs --tls-ca, --tls-cert and --tls-key");
        return FALSE;
    }
    if (opt_tls_required && opt_tls_port == 0) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--tls-required needs a --tls-port");
        return FALSE;
    }
    if (opt_channels < 1 || opt_channels > SW_FRAME_MAX_CHANNELS) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--channels %d: must be 1 to %d", opt_channels, SW_FRAME_MAX_CHANNELS);
        return FALSE;
    }
    if (opt_ticket_lifetime < 0) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--ticket-lifetime %d: must be 0 or more seconds", opt_ticket_lifetime);
        return FALSE;
    }
    if (opt_uid == 0 || opt_uid > SW_MAX_UID || (opt_uid >= 0 && opt_user != NULL)) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--uid %" G_GINT64_FORMAT ": must be 1 to %u, and not with --user", opt_uid,
                    SW_MAX_UID);
        return FALSE;
    }
    if (geteuid() == 0 && opt_user == NULL && opt_uid < 0) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "started as root: --uid N or --user NAME is required (the worker parses "
                    "network input and must not keep root)");
        return FALSE;
    }
    return TRUE;
}

static gboolean
sw_worker_start_server(SwWorker *worker, const char *ticket, GError **error)
{
    worker->server = spice_server_new();
    sw_core_set_channel_event_func(sw_worker_on_channel_event, worker);
    spice_server_set_addr(worker->server, opt_addr != NULL ? opt_addr : SW_DEFAULT_ADDR, 0);
    if (opt_port > 0)
        spice_server_set_port(worker->server, opt_port);
    if (opt_tls_port > 0 &&
        spice_server_set_tls(worker->server, opt_tls_port, opt_tls_ca, opt_tls_cert, opt_tls_key,
                             NULL, NULL, NULL) != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "spice-server refused the TLS setup");
        return FALSE;
    }
    if (opt_tls_required &&
        spice_server_set_channel_security(worker->server, NULL, SPICE_CHANNEL_SECURITY_SSL) != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "spice-server refused TLS-only channels");
        return FALSE;
    }
    /* Ticketing is on by default: until a ticket is set, nobody gets in. */
    if (ticket != NULL &&
        !sw_worker_set_ticket(worker, ticket, (guint)opt_ticket_lifetime, FALSE, error))
        return FALSE;
    if (spice_server_init(worker->server, sw_core_get(NULL)) != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "spice-server could not start on %s port %d tls-port %d (see its messages "
                    "above)",
                    opt_addr != NULL ? opt_addr : SW_DEFAULT_ADDR, opt_port, opt_tls_port);
        return FALSE;
    }
    for (guint i = 0; i < worker->n_channels; i++) {
        SwChannel *channel = &worker->channels[i];

        channel->sin.base.sif = &sw_channel_interface.base;
        channel->sin.subtype = "usbredir";
        if (spice_server_add_interface(worker->server, &channel->sin.base) != 0) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                        "spice-server refused usbredir channel %u", i);
            return FALSE;
        }
    }
    return TRUE;
}

/* After the setup: no network beyond the bound sockets, the worker's own
 * ids, rlimits, seccomp (sw-confine.h). The main loop's signal sources
 * start GLib's worker thread, so they come after the new network
 * namespace (a namespace is per thread) and before the filter (no thread
 * can start after it). */
static gboolean
sw_worker_confine(SwWorker *worker, const SwConfineIds *ids, GError **error)
{
    g_autoptr(GError) net_error = NULL;

    if (!sw_confine_network(&net_error))
        g_info("%s: the seccomp filter alone keeps the worker off the network", net_error->message);
    g_unix_signal_add(SIGTERM, sw_worker_on_signal, worker);
    g_unix_signal_add(SIGINT, sw_worker_on_signal, worker);
    if (!sw_confine_process(ids, error))
        return FALSE;
    g_info("confined: %s%s, seccomp filter loaded",
           ids->switch_ids ? "running as " : "ids unchanged", ids->switch_ids ? ids->name : "");
    return TRUE;
}

int
main(int argc, char **argv)
{
    g_autoptr(GOptionContext) context = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *ticket = NULL;
    g_autofree char *ids_name = NULL;
    SwConfineIds ids = {0};
    SwWorker worker = {0};
    guint8 ready[8];

    /* a client that leaves while spice-server writes to it must cost its
     * connection (EPIPE), not the worker (SIGPIPE kills) */
    signal(SIGPIPE, SIG_IGN);
    context = g_option_context_new("- one SPICE endpoint for usbgwd");
    g_option_context_add_main_entries(context, sw_options, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        g_printerr("usbgw-spice-worker: %s\n", error->message);
        return SW_EXIT_USAGE;
    }
    if (opt_version) {
        g_print("usbgw-spice-worker %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (!sw_check_options(&error)) {
        g_printerr("usbgw-spice-worker: %s\n", error->message);
        return SW_EXIT_USAGE;
    }
    /* Everything that needs root or the caller's files happens before the
     * switch: the ticket file, the user lookup, binding the ports and
     * reading the TLS key (spice_server_init). */
    if (opt_ticket_file != NULL) {
        ticket = sw_read_ticket_file(opt_ticket_file, &error);
        if (ticket == NULL) {
            g_printerr("usbgw-spice-worker: %s\n", error->message);
            return SW_EXIT_USAGE;
        }
    }
    if ((opt_user != NULL || opt_uid >= 0) && !sw_lookup_ids(&ids, &ids_name, &error)) {
        g_printerr("usbgw-spice-worker: %s\n", error->message);
        return SW_EXIT_USAGE;
    }
    ids.name = ids_name;
    ids.switch_ids = ids_name != NULL && (geteuid() == 0 || getuid() != ids.uid);
    /* Files the filter forbids later, read now: GLib seeds its global
     * generator from /dev/urandom on first use, the C library reads
     * /etc/localtime on the first local time (log timestamps). */
    (void)g_random_int();
    tzset();

    worker.loop = g_main_loop_new(NULL, FALSE);
    worker.n_channels = (guint)opt_channels;
    worker.channels = g_new0(SwChannel, worker.n_channels);
    worker.connections =
        g_hash_table_new_full(NULL, NULL, NULL, (GDestroyNotify)sw_connection_free);
    for (guint i = 0; i < worker.n_channels; i++) {
        worker.channels[i].worker = &worker;
        worker.channels[i].index = i;
        worker.channels[i].to_client = g_byte_array_new();
    }
    if (!sw_worker_start_server(&worker, ticket, &error)) {
        g_printerr("usbgw-spice-worker: %s\n", error->message);
        return SW_EXIT_FAILURE;
    }
    if (ticket != NULL)
        explicit_bzero(ticket, strlen(ticket));
    if (!sw_worker_confine(&worker, &ids, &error)) {
        g_printerr("usbgw-spice-worker: %s\n", error->message);
        return SW_EXIT_FAILURE;
    }

    worker.link = sw_link_new(opt_fd, &sw_worker_link_callbacks, &worker);
    sw_frame_put_u32(ready, SW_FRAME_VERSION);
    sw_frame_put_u32(ready + 4, worker.n_channels);
    sw_link_send(worker.link, SW_FRAME_READY, 0, ready, sizeof(ready));
    g_info("listening on %s port %d tls-port %d with %u usbredir channels",
           opt_addr != NULL ? opt_addr : SW_DEFAULT_ADDR, opt_port, opt_tls_port,
           worker.n_channels);

    g_main_loop_run(worker.loop);

    /* The server first: destroying it may still report channels closed. */
    spice_server_destroy(worker.server);
    sw_core_set_channel_event_func(NULL, NULL);
    g_clear_handle_id(&worker.wakeup_id, g_source_remove);
    g_clear_handle_id(&worker.lock_id, g_source_remove);
    g_hash_table_unref(worker.connections);
    if (worker.ticket != NULL)
        explicit_bzero(worker.ticket, strlen(worker.ticket));
    g_free(worker.ticket);
    g_free(worker.client_address);
    g_clear_pointer(&worker.link, sw_link_free);
    for (guint i = 0; i < worker.n_channels; i++)
        g_byte_array_unref(worker.channels[i].to_client);
    g_free(worker.channels);
    g_main_loop_unref(worker.loop);
    return worker.exit_status;
}

#if defined(__SANITIZE_ADDRESS__)
/* LeakSanitizer's check at exit stops the world with ptrace from a forked
 * helper, which the confinement forbids (spice/README.md). */
const char *__lsan_default_options(void);

const char *
__lsan_default_options(void)
{
    return "detect_leaks=0";
}
#endif
