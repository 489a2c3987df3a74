/* The ring of bytes written to a peer, the peer's unread byte count, and
 * a hello told from a migrated stream. */
#include "gw-handover.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gio/gio.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <usbredirproto.h>

#include "gw-handover-relay.h"

/* The most capability words a hello is taken to carry (usbredir has one
 * today); only bounds the length gw_handover_is_hello() accepts. */
#define GW_HANDOVER_HELLO_MAX_CAPS 64

struct _GwHandoverRing {
    guint8 *buf;    /* owned, capacity bytes */
    gsize capacity; /* > 0 */
    gsize head;     /* where the next byte goes */
    guint64 total;  /* appended in all */
};

GwHandoverRing *
gw_handover_ring_new(gsize capacity)
{
    GwHandoverRing *ring = g_new0(GwHandoverRing, 1);
    ring->capacity = MAX(capacity, 1);
    ring->buf = g_malloc(ring->capacity);
    return ring;
}

gsize
gw_handover_ring_capacity_for(int fd)
{
    int sndbuf = 0;
    socklen_t len = sizeof(sndbuf);

    /* Linux reports twice what was set: the bookkeeping it allows */
    guint64 peer;
    gsize relayed = 0;

    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) != 0 || sndbuf <= 0)
        sndbuf = 256 * 1024;
    /* a relay end forwards up to its window beyond its socket */
    if (gw_handover_peer_inode(fd, &peer, NULL))
        relayed = gw_handover_relay_window_of(peer);
    return (gsize)sndbuf + GW_HANDOVER_RING_SLACK + relayed;
}

void
gw_handover_ring_append(GwHandoverRing *ring, const guint8 *data, gsize len)
{
    ring->total += len;
    /* only the last capacity bytes can matter */
    if (len > ring->capacity) {
        data += len - ring->capacity;
        len = ring->capacity;
    }
    while (len > 0) {
        gsize chunk = MIN(len, ring->capacity - ring->head);
        memcpy(ring->buf + ring->head, data, chunk);
        ring->head = (ring->head + chunk) % ring->capacity;
        data += chunk;
        len -= chunk;
    }
}

guint64
gw_handover_ring_total(GwHandoverRing *ring)
{
    return ring->total;
}

gsize
gw_handover_ring_kept(GwHandoverRing *ring)
{
    return (gsize)MIN(ring->total, (guint64)ring->capacity);
}

gboolean
gw_handover_ring_copy(GwHandoverRing *ring, guint64 from, guint64 n, GByteArray *out,
                      GError **error)
{
    gsize start, at;

    if (from + n > ring->total || from < ring->total - gw_handover_ring_kept(ring)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                    "%" G_GUINT64_FORMAT " bytes written %" G_GUINT64_FORMAT
                    " bytes back are needed but only the last %" G_GSIZE_FORMAT " are kept",
                    n, ring->total - from, gw_handover_ring_kept(ring));
        return FALSE;
    }
    at = out->len;
    g_byte_array_set_size(out, out->len + (guint)n);
    start = (ring->head + ring->capacity - (gsize)(ring->total - from)) % ring->capacity;
    for (gsize i = 0; i < n;) {
        gsize chunk = MIN((gsize)n - i, ring->capacity - start);
        memcpy(out->data + at + i, ring->buf + start, chunk);
        start = (start + chunk) % ring->capacity;
        i += chunk;
    }
    return TRUE;
}

GBytes *
gw_handover_ring_tail(GwHandoverRing *ring, guint64 n, GError **error)
{
    g_autoptr(GByteArray) out = g_byte_array_new();

    if (n > gw_handover_ring_kept(ring)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                    "%" G_GUINT64_FORMAT
                    " bytes were not read by the peer but only the last %" G_GSIZE_FORMAT
                    " written are kept",
                    n, gw_handover_ring_kept(ring));
        return NULL;
    }
    if (!gw_handover_ring_copy(ring, ring->total - n, n, out, error))
        return NULL;
    return g_byte_array_free_to_bytes(g_steal_pointer(&out));
}

void
gw_handover_ring_free(GwHandoverRing *ring)
{
    if (ring == NULL)
        return;
    g_free(ring->buf);
    g_free(ring);
}

/* One UNIX_DIAG request for the socket with inode @ino (@show: the
 * UDIAG_SHOW_* wanted); copies the attribute @type into @out. */
static gboolean
gw_handover_diag(int nl, guint32 ino, guint32 show, gushort type, gpointer out, gsize out_len,
                 GError **error)
{
    struct {
        struct nlmsghdr nlh;
        struct unix_diag_req req;
    } request = {
        .nlh = {.nlmsg_len = sizeof(request),
                .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                .nlmsg_flags = NLM_F_REQUEST},
        .req = {.sdiag_family = AF_UNIX,
                .udiag_states = (guint32)-1,
                .udiag_ino = ino,
                .udiag_show = show,
                .udiag_cookie = {INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE}},
    };
    /* aligned for the netlink headers read from it */
    guint32 reply[2048];
    ssize_t n;
    struct nlmsghdr *nlh = (struct nlmsghdr *)reply;

    if (send(nl, &request, sizeof(request), 0) != (ssize_t)sizeof(request)) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                    "socket diagnostics: cannot ask about socket %u: %s", ino, g_strerror(errno));
        return FALSE;
    }
    n = recv(nl, reply, sizeof(reply), 0);
    if (n < 0) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                    "socket diagnostics: no answer about socket %u: %s", ino, g_strerror(errno));
        return FALSE;
    }
    if (!NLMSG_OK(nlh, (size_t)n) || nlh->nlmsg_type == NLMSG_ERROR) {
        int err = 0;
        if (NLMSG_OK(nlh, (size_t)n) && nlh->nlmsg_len >= NLMSG_LENGTH(sizeof(struct nlmsgerr)))
            err = -((struct nlmsgerr *)NLMSG_DATA(nlh))->error;
        g_set_error(error, G_IO_ERROR, err != 0 ? g_io_error_from_errno(err) : G_IO_ERROR_FAILED,
                    "socket diagnostics: socket %u: %s", ino,
                    err != 0 ? g_strerror(err) : "a malformed answer");
        return FALSE;
    }
    if (nlh->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
        nlh->nlmsg_len >= NLMSG_LENGTH(sizeof(struct unix_diag_msg))) {
        int len = (int)(nlh->nlmsg_len - NLMSG_LENGTH(sizeof(struct unix_diag_msg)));
        struct rtattr *attr = (struct rtattr *)((guint8 *)NLMSG_DATA(nlh) +
                                                NLMSG_ALIGN(sizeof(struct unix_diag_msg)));
        for (; RTA_OK(attr, len); attr = RTA_NEXT(attr, len)) {
            if (attr->rta_type == type && RTA_PAYLOAD(attr) >= out_len) {
                memcpy(out, RTA_DATA(attr), out_len);
                return TRUE;
            }
        }
    }
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                "socket diagnostics: socket %u has no attribute %u (not connected?)", ino, type);
    return FALSE;
}

/* Opens a NETLINK_SOCK_DIAG socket, and the inode of @fd's unix socket. */
static int
gw_handover_diag_open(int fd, guint32 *ino, GError **error)
{
    struct stat st;
    int nl;

    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "socket diagnostics: fd %d is not a socket", fd);
        return -1;
    }
    nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                    "socket diagnostics (NETLINK_SOCK_DIAG): %s", g_strerror(errno));
        return -1;
    }
    *ino = (guint32)st.st_ino;
    return nl;
}

gboolean
gw_handover_peer_inode(int fd, guint64 *peer_ino, GError **error)
{
    guint32 ino, peer = 0;
    int nl = gw_handover_diag_open(fd, &ino, error);
    gboolean ok;

    if (nl < 0)
        return FALSE;
    ok = gw_handover_diag(nl, ino, UDIAG_SHOW_PEER, UNIX_DIAG_PEER, &peer, sizeof(peer), error);
    close(nl);
    if (ok)
        *peer_ino = peer;
    return ok;
}

gboolean
gw_handover_peer_unread(int fd, guint64 *unread, GError **error)
{
    guint32 ino, peer = 0;
    struct unix_diag_rqlen rqlen = {0};
    int nl = gw_handover_diag_open(fd, &ino, error);
    gboolean ok;

    if (nl < 0)
        return FALSE;
    /* our socket names its peer; the peer's receive queue is the count */
    ok =
        gw_handover_diag(nl, ino, UDIAG_SHOW_PEER, UNIX_DIAG_PEER, &peer, sizeof(peer), error) &&
        gw_handover_diag(nl, peer, UDIAG_SHOW_RQLEN, UNIX_DIAG_RQLEN, &rqlen, sizeof(rqlen), error);
    close(nl);
    /* a relay end's QEMU has not read what the end forwarded to it either */
    if (ok)
        *unread = rqlen.udiag_rqueue + gw_handover_relay_unread_of(peer);
    return ok;
}

gboolean
gw_handover_is_hello(const guint8 *data, gsize len)
{
    guint32 type, length;

    if (len < GW_HANDOVER_HELLO_PEEK)
        return FALSE;
    memcpy(&type, data, sizeof(type));
    memcpy(&length, data + sizeof(type), sizeof(length));
    return type == usb_redir_hello && length >= sizeof(struct usb_redir_hello_header) &&
           length <= sizeof(struct usb_redir_hello_header) + GW_HANDOVER_HELLO_MAX_CAPS * 4;
}
