#include "sim-usbfs.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h> /* _IOR() & co. for the USBDEVFS_* numbers */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <linux/usbdevice_fs.h>

/* What we implement of usbfs: single URBs of any size (so libusb never
 * splits a transfer), and reaping after disconnect. */
#define SIM_USBFS_CAPS           (USBDEVFS_CAP_NO_PACKET_SIZE_LIM | USBDEVFS_CAP_REAP_AFTER_DISCONNECT)
#define SIM_USBFS_MAX_INTERFACES 32

/* A URB between SUBMITURB and REAPURB. */
typedef struct {
    UMockdevIoctlClient *client; /* not owned: a URB never outlives its client */
    UMockdevIoctlData *urb;      /* owned: struct usbdevfs_urb, copied from the client */
    UMockdevIoctlData *buffer;   /* owned, nullable: urb->buffer, copied from the client */
    int status;                  /* written into the client's URB when it is reaped */
    int actual_length;
    gint64 ready_at; /* monotonic µs: not reaped without waiting before then */
} SimUrb;

/* One open file descriptor of the node: URBs are reaped where submitted. */
typedef struct {
    GQueue done;         /* SimUrb* (owned), ready to reap */
    gboolean reap_waits; /* its pending ioctl is a blocking REAPURB */
} SimUsbfsClient;

struct _SimUsbfs {
    UMockdevIoctlBase parent_instance;
    GMutex lock; /* guards all below: worker thread vs. unplug */
    SimKey *key; /* owned */
    guint devnum;
    gboolean gone;       /* unplugged */
    GHashTable *clients; /* UMockdevIoctlClient* (ref) → SimUsbfsClient* (owned) */
    GQueue waiting;      /* SimUrb* (owned): submitted, the device has not answered */
    UMockdevIoctlClient *claims[SIM_USBFS_MAX_INTERFACES]; /* not owned, nullable */
    gint64 reap_delay_us; /* USBGW_SIM_REAP_DELAY_MS: a slow device's transfers */
    guint claim_stall_ms; /* USBGW_SIM_CLAIM_STALL_MS: a claim's answer held this long */
};

G_DEFINE_TYPE(SimUsbfs, sim_usbfs, UMOCKDEV_TYPE_IOCTL_BASE)

static void
sim_urb_free(SimUrb *u)
{
    g_clear_object(&u->urb);
    g_clear_object(&u->buffer);
    g_free(u);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SimUrb, sim_urb_free)

static void
sim_usbfs_client_free(SimUsbfsClient *c)
{
    g_queue_clear_full(&c->done, (GDestroyNotify)sim_urb_free);
    g_free(c);
}

static struct usbdevfs_urb *
sim_urb_get(SimUrb *u)
{
    return (struct usbdevfs_urb *)u->urb->data;
}

/* Answers the client's pending ioctl: @ret >= 0 is the result, < 0 an errno. */
static void
sim_usbfs_complete(UMockdevIoctlClient *client, long ret)
{
    if (ret < 0)
        umockdev_ioctl_client_complete(client, -1, (int)-ret);
    else
        umockdev_ioctl_client_complete(client, ret, 0);
}

/* Copies @len bytes the client's pointer at @offset of @data points to;
 * NULL if that memory cannot be read. */
static UMockdevIoctlData *
sim_usbfs_resolve(UMockdevIoctlData *data, gsize offset, gsize len)
{
    g_autoptr(GError) error = NULL;
    UMockdevIoctlData *res = umockdev_ioctl_data_resolve(data, offset, len, &error);
    if (res == NULL && error != NULL)
        g_debug("cannot read ioctl argument: %s", error->message);
    return res;
}

/* Hands the oldest finished URB back through the REAPURB argument and
 * completes the ioctl. FALSE if there is none (for REAPURBNDELAY, none
 * whose reap delay has passed: libusb polls again, the node always
 * polls ready under umockdev). */
static gboolean
sim_usbfs_reap(SimUsbfsClient *c, UMockdevIoctlClient *client)
{
    SimUrb *head = g_queue_peek_head(&c->done);
    if (head == NULL || (umockdev_ioctl_client_get_request(client) == USBDEVFS_REAPURBNDELAY &&
                         head->ready_at > g_get_monotonic_time()))
        return FALSE;
    g_autoptr(SimUrb) u = g_queue_pop_head(&c->done);

    sim_urb_get(u)->status = u->status;
    sim_urb_get(u)->actual_length = u->actual_length;
    g_autoptr(UMockdevIoctlData) slot =
        sim_usbfs_resolve(umockdev_ioctl_client_get_arg(client), 0, sizeof(gpointer));
    if (slot == NULL) {
        sim_usbfs_complete(client, -EFAULT);
        return TRUE;
    }
    /* Completing flushes the URB and its buffer back to the client. */
    umockdev_ioctl_data_set_ptr(slot, 0, u->urb);
    sim_usbfs_complete(client, 0);
    return TRUE;
}

/* The device has answered @u (owned): queue it for reaping, and wake its
 * client if that waits in REAPURB. */
static void
sim_usbfs_finish(SimUsbfs *self, SimUrb *u)
{
    SimUsbfsClient *c = g_hash_table_lookup(self->clients, u->client);
    if (c == NULL) {
        sim_urb_free(u);
        return;
    }
    u->ready_at = g_get_monotonic_time() + self->reap_delay_us;
    g_queue_push_tail(&c->done, u);
    if (c->reap_waits) {
        c->reap_waits = FALSE;
        sim_usbfs_reap(c, u->client);
    }
}

/* Offers the waiting data URBs to the key again: a control transfer may
 * have given it something to say. */
static void
sim_usbfs_poll_waiting(SimUsbfs *self)
{
    GList *l = self->waiting.head;
    while (l != NULL) {
        GList *next = l->next;
        SimUrb *u = l->data;
        gsize len = u->buffer != NULL ? (gsize)u->buffer->data_len : 0;
        guint8 *data = u->buffer != NULL ? u->buffer->data : NULL;

        if (sim_urb_get(u)->type == USBDEVFS_URB_TYPE_CONTROL) {
            /* a request the device never answers: only a discard ends it */
            l = next;
            continue;
        }
        switch (sim_key_transfer(self->key, sim_urb_get(u)->endpoint, data, &len)) {
        case SIM_KEY_XFER_PENDING:
            break;
        case SIM_KEY_XFER_DONE:
            u->actual_length = (int)len;
            g_queue_delete_link(&self->waiting, l);
            sim_usbfs_finish(self, u);
            break;
        case SIM_KEY_XFER_STALL:
            u->status = -EPIPE;
            g_queue_delete_link(&self->waiting, l);
            sim_usbfs_finish(self, u);
            break;
        }
        l = next;
    }
}

static long
sim_usbfs_submit_control(SimUsbfs *self, SimUrb *u)
{
    struct usb_ctrlrequest setup;
    gsize buffer_length = u->buffer != NULL ? (gsize)u->buffer->data_len : 0;

    if (buffer_length < sizeof(setup))
        return -EINVAL;
    memcpy(&setup, u->buffer->data, sizeof(setup));
    /* The data stage lives behind the setup packet: a reply longer than
     * buffer_length - 8 would be flushed past the client's buffer. */
    gsize len = GUINT16_FROM_LE(setup.wLength);
    if (len > buffer_length - sizeof(setup))
        return -EINVAL;

    switch (sim_key_control(self->key, &setup, u->buffer->data + sizeof(setup), &len)) {
    case SIM_KEY_XFER_DONE:
        u->actual_length = (int)len;
        break;
    case SIM_KEY_XFER_PENDING:
        /* the device NAKs for good: the URB waits until it is discarded */
        g_queue_push_tail(&self->waiting, u);
        sim_usbfs_poll_waiting(self);
        return 0;
    case SIM_KEY_XFER_STALL:
        u->status = -EPIPE;
        break;
    }
    sim_usbfs_finish(self, u);
    sim_usbfs_poll_waiting(self);
    return 0;
}

static long
sim_usbfs_submit_data(SimUsbfs *self, SimUrb *u)
{
    struct usbdevfs_urb *urb = sim_urb_get(u);
    guint8 type;

    if (!sim_key_lookup_endpoint(self->key, urb->endpoint, &type))
        return -ENOENT;
    /* As the kernel: interrupt URBs need an interrupt endpoint, bulk URBs
     * may also do single interrupt transfers. */
    if (type != USB_ENDPOINT_XFER_INT &&
        !(type == USB_ENDPOINT_XFER_BULK && urb->type == USBDEVFS_URB_TYPE_BULK))
        return -EINVAL;
    g_queue_push_tail(&self->waiting, u);
    sim_usbfs_poll_waiting(self);
    return 0;
}

static long
sim_usbfs_submit(SimUsbfs *self, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
    g_autoptr(UMockdevIoctlData) urb_data = sim_usbfs_resolve(arg, 0, sizeof(struct usbdevfs_urb));
    if (urb_data == NULL)
        return -EFAULT;
    struct usbdevfs_urb *urb = (struct usbdevfs_urb *)urb_data->data;
    if (urb->buffer_length < 0)
        return -EINVAL;

    g_autoptr(SimUrb) u = g_new0(SimUrb, 1);
    u->client = client;
    u->urb = g_object_ref(urb_data);
    if (urb->buffer_length > 0) {
        u->buffer = sim_usbfs_resolve(urb_data, G_STRUCT_OFFSET(struct usbdevfs_urb, buffer),
                                      (gsize)urb->buffer_length);
        if (u->buffer == NULL)
            return -EFAULT;
    }

    long ret;
    switch (urb->type) {
    case USBDEVFS_URB_TYPE_CONTROL:
        ret = sim_usbfs_submit_control(self, u);
        break;
    case USBDEVFS_URB_TYPE_BULK:
    case USBDEVFS_URB_TYPE_INTERRUPT:
        ret = sim_usbfs_submit_data(self, u);
        break;
    default: /* no key has isochronous endpoints */
        ret = -EINVAL;
        break;
    }
    if (ret == 0)
        g_steal_pointer(&u); /* now queued */
    return ret;
}

static long
sim_usbfs_discard(SimUsbfs *self, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
    gulong addr; /* the argument is the URB's address in the client */
    memcpy(&addr, arg->data, sizeof(addr));

    for (GList *l = self->waiting.head; l != NULL; l = l->next) {
        SimUrb *u = l->data;
        if (u->client == client && u->urb->client_addr == addr) {
            g_queue_delete_link(&self->waiting, l);
            u->status = -ENOENT; /* usb_kill_urb(): libusb reports "cancelled" */
            sim_usbfs_finish(self, u);
            return 0;
        }
    }
    return -EINVAL; /* already answered: the caller will reap it */
}

/* USBDEVFS_CONTROL: a synchronous control transfer. */
static long
sim_usbfs_control(SimUsbfs *self, UMockdevIoctlData *arg)
{
    g_autoptr(UMockdevIoctlData) ct_data =
        sim_usbfs_resolve(arg, 0, sizeof(struct usbdevfs_ctrltransfer));
    if (ct_data == NULL)
        return -EFAULT;
    struct usbdevfs_ctrltransfer *ct = (struct usbdevfs_ctrltransfer *)ct_data->data;
    struct usb_ctrlrequest setup = {
        .bRequestType = ct->bRequestType,
        .bRequest = ct->bRequest,
        .wValue = GUINT16_TO_LE(ct->wValue),
        .wIndex = GUINT16_TO_LE(ct->wIndex),
        .wLength = GUINT16_TO_LE(ct->wLength),
    };
    gsize len = ct->wLength;
    g_autoptr(UMockdevIoctlData) buffer = NULL;
    if (len > 0) {
        buffer =
            sim_usbfs_resolve(ct_data, G_STRUCT_OFFSET(struct usbdevfs_ctrltransfer, data), len);
        if (buffer == NULL)
            return -EFAULT;
    }

    SimKeyXfer xfer = sim_key_control(self->key, &setup, buffer ? buffer->data : NULL, &len);
    sim_usbfs_poll_waiting(self);
    if (xfer == SIM_KEY_XFER_PENDING) /* the kernel's timeout, without the wait */
        return -ETIMEDOUT;
    return xfer == SIM_KEY_XFER_DONE ? (long)len : -EPIPE;
}

static void sim_usbfs_client_notify_connected(UMockdevIoctlClient *client, GParamSpec *pspec,
                                              SimUsbfs *self);

/* A client is gone (closed its fd, or its process died): like the kernel,
 * drop its URBs and its interface claims. The caller holds the lock. */
static void
sim_usbfs_drop_client(SimUsbfs *self, UMockdevIoctlClient *client)
{
    g_signal_handlers_disconnect_by_func(client, sim_usbfs_client_notify_connected, self);
    for (GList *l = self->waiting.head; l != NULL;) {
        GList *next = l->next;
        SimUrb *u = l->data;
        if (u->client == client) {
            sim_urb_free(u);
            g_queue_delete_link(&self->waiting, l);
        }
        l = next;
    }
    for (guint i = 0; i < SIM_USBFS_MAX_INTERFACES; i++) {
        if (self->claims[i] == client)
            self->claims[i] = NULL;
    }
    g_hash_table_remove(self->clients, client);
}

/* How many connections to @client's node have a peer that has not hung
 * up, the caller's included. umockdev stops reading a client's socket
 * while it completes an ioctl, and when the client died during that
 * completion it never reads again: the client stays "connected" although
 * its process is gone. The kernel sees the hang-up on our end of the
 * socket (accepted on the node's ioctl socket, so named after it). This
 * runs on umockdev's ioctl thread, the one that closes those sockets. */
static guint
sim_usbfs_count_open(UMockdevIoctlClient *client)
{
    g_autofree gchar *suffix =
        g_strconcat("/ioctl", umockdev_ioctl_client_get_devnode(client), NULL);
    g_autoptr(GDir) dir = g_dir_open("/proc/self/fd", 0, NULL);
    const gchar *name;
    guint open = 0;

    if (dir == NULL)
        return G_MAXUINT;
    while ((name = g_dir_read_name(dir)) != NULL) {
        int fd = atoi(name);
        struct sockaddr_un addr = {0};
        socklen_t len = sizeof(addr);
        struct stat st;
        struct pollfd pfd = {.fd = fd, .events = POLLRDHUP};
        int listening = 0;
        socklen_t listening_len = sizeof(listening);

        if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) ||
            getsockname(fd, (struct sockaddr *)&addr, &len) != 0 || addr.sun_family != AF_UNIX ||
            len <= offsetof(struct sockaddr_un, sun_path) ||
            !g_str_has_suffix(addr.sun_path, suffix) ||
            getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &listening_len) != 0 || listening)
            continue;
        /* a request not read yet polls POLLIN: that client is alive */
        if (poll(&pfd, 1, 0) >= 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) == 0)
            open++;
    }
    return open;
}

static long
sim_usbfs_claim(SimUsbfs *self, UMockdevIoctlClient *client, guint ifnum)
{
    UMockdevIoctlClient *holder;

    if (ifnum >= MIN(sim_key_get_n_interfaces(self->key), SIM_USBFS_MAX_INTERFACES))
        return -ENOENT;
    holder = self->claims[ifnum];
    /* a holder whose process died: the kernel drops a dead process's
     * claims. umockdev marks it disconnected, or, when it died in the
     * middle of an ioctl, we find no open connection but the caller's. */
    if (holder != NULL && holder != client && umockdev_ioctl_client_get_connected(holder)) {
        if (sim_usbfs_count_open(client) > 1)
            return -EBUSY;
        g_message("device %u: interface %u was claimed by a client that hung up; taken over",
                  self->devnum, ifnum);
        sim_usbfs_drop_client(self, holder);
    }
    self->claims[ifnum] = client;
    return 0;
}

static long
sim_usbfs_release(SimUsbfs *self, UMockdevIoctlClient *client, guint ifnum)
{
    if (ifnum >= SIM_USBFS_MAX_INTERFACES || self->claims[ifnum] != client)
        return -EINVAL;
    self->claims[ifnum] = NULL;
    return 0;
}

/* Reads the unsigned int most usbfs ioctls point to. */
static gboolean
sim_usbfs_get_uint(UMockdevIoctlData *arg, guint *value)
{
    g_autoptr(UMockdevIoctlData) data = sim_usbfs_resolve(arg, 0, sizeof(guint));
    if (data == NULL)
        return FALSE;
    memcpy(value, data->data, sizeof(guint));
    return TRUE;
}

static long
sim_usbfs_dispatch(SimUsbfs *self, UMockdevIoctlClient *client, gulong request,
                   UMockdevIoctlData *arg)
{
    guint value;
    guint8 type;

    switch (request) {
    case USBDEVFS_GET_CAPABILITIES: {
        g_autoptr(UMockdevIoctlData) caps = sim_usbfs_resolve(arg, 0, sizeof(guint32));
        if (caps == NULL)
            return -EFAULT;
        *(guint32 *)caps->data = SIM_USBFS_CAPS;
        return 0;
    }
    case USBDEVFS_GET_SPEED:
        return sim_key_model_speed_mbps(sim_key_get_model(self->key)) >= 480 ? USB_SPEED_HIGH
                                                                             : USB_SPEED_FULL;
    case USBDEVFS_CONNECTINFO: {
        g_autoptr(UMockdevIoctlData) ci =
            sim_usbfs_resolve(arg, 0, sizeof(struct usbdevfs_connectinfo));
        if (ci == NULL)
            return -EFAULT;
        ((struct usbdevfs_connectinfo *)ci->data)->devnum = self->devnum;
        ((struct usbdevfs_connectinfo *)ci->data)->slow = 0;
        return 0;
    }
    case USBDEVFS_SUBMITURB:
        return sim_usbfs_submit(self, client, arg);
    case USBDEVFS_DISCARDURB:
        return sim_usbfs_discard(self, client, arg);
    case USBDEVFS_CONTROL:
        return sim_usbfs_control(self, arg);
    case USBDEVFS_CLAIMINTERFACE:
        return sim_usbfs_get_uint(arg, &value) ? sim_usbfs_claim(self, client, value) : -EFAULT;
    case USBDEVFS_RELEASEINTERFACE:
        return sim_usbfs_get_uint(arg, &value) ? sim_usbfs_release(self, client, value) : -EFAULT;
    case USBDEVFS_DISCONNECT_CLAIM:
        /* No kernel driver is ever bound, so this is a plain claim. Its
         * struct starts with the interface number. */
        return sim_usbfs_get_uint(arg, &value) ? sim_usbfs_claim(self, client, value) : -EFAULT;
    case USBDEVFS_SETCONFIGURATION:
        if (!sim_usbfs_get_uint(arg, &value))
            return -EFAULT;
        /* -1 unconfigures, as 0 does */
        return sim_key_set_configuration(self->key, (int)value < 0 ? 0 : value) ? 0 : -EINVAL;
    case USBDEVFS_SETINTERFACE: {
        g_autoptr(UMockdevIoctlData) si =
            sim_usbfs_resolve(arg, 0, sizeof(struct usbdevfs_setinterface));
        if (si == NULL)
            return -EFAULT;
        const struct usbdevfs_setinterface *s = (const struct usbdevfs_setinterface *)si->data;
        return s->interface < sim_key_get_n_interfaces(self->key) && s->altsetting == 0 ? 0
                                                                                        : -EINVAL;
    }
    case USBDEVFS_CLEAR_HALT:
    case USBDEVFS_RESETEP:
        if (!sim_usbfs_get_uint(arg, &value))
            return -EFAULT;
        return (value & 0x7f) == 0 || sim_key_lookup_endpoint(self->key, (guint8)value, &type)
                   ? 0
                   : -ENOENT;
    case USBDEVFS_RESET:
        sim_key_reset(self->key);
        return 0;
    case USBDEVFS_GETDRIVER:
        return -ENODATA; /* no kernel driver bound */
    case USBDEVFS_IOCTL: {
        g_autoptr(UMockdevIoctlData) cmd = sim_usbfs_resolve(arg, 0, sizeof(struct usbdevfs_ioctl));
        if (cmd == NULL)
            return -EFAULT;
        switch ((gulong)(guint)((struct usbdevfs_ioctl *)cmd->data)->ioctl_code) {
        case USBDEVFS_DISCONNECT:
            return -ENODATA; /* no driver to detach */
        case USBDEVFS_CONNECT:
            return 0; /* no driver wants the interface */
        default:
            return -ENOTTY;
        }
    }
    default:
        g_debug("device %u: ioctl 0x%lx not emulated", self->devnum, request);
        return -ENOTTY;
    }
}

static void
sim_usbfs_client_gone(SimUsbfs *self, UMockdevIoctlClient *client)
{
    g_autoptr(GMutexLocker) locker G_GNUC_UNUSED = g_mutex_locker_new(&self->lock);
    sim_usbfs_drop_client(self, client);
}

static void
sim_usbfs_client_notify_connected(UMockdevIoctlClient *client, GParamSpec *pspec, SimUsbfs *self)
{
    if (!umockdev_ioctl_client_get_connected(client))
        sim_usbfs_client_gone(self, client);
}

static SimUsbfsClient *
sim_usbfs_client_lookup(SimUsbfs *self, UMockdevIoctlClient *client)
{
    SimUsbfsClient *c = g_hash_table_lookup(self->clients, client);
    if (c == NULL) {
        c = g_new0(SimUsbfsClient, 1);
        g_hash_table_insert(self->clients, g_object_ref(client), c);
        g_signal_connect(client, "notify::connected", G_CALLBACK(sim_usbfs_client_notify_connected),
                         self);
    }
    return c;
}

typedef struct {
    UMockdevIoctlClient *client; /* owned ref */
    long ret;
} SimStalled;

static gboolean
sim_usbfs_stall_done(gpointer user_data)
{
    SimStalled *stalled = user_data;
    sim_usbfs_complete(stalled->client, stalled->ret);
    g_object_unref(stalled->client);
    g_free(stalled);
    return G_SOURCE_REMOVE;
}

/* Answers a claim after claim_stall_ms, from the main thread (umockdev
 * takes completions from any thread): a client killed meanwhile dies in
 * the middle of its ioctl, with the claim made. */
static void
sim_usbfs_complete_stalled(SimUsbfs *self, UMockdevIoctlClient *client, long ret)
{
    SimStalled *stalled = g_new0(SimStalled, 1);
    g_autoptr(GSource) source = g_timeout_source_new(self->claim_stall_ms);

    stalled->client = g_object_ref(client);
    stalled->ret = ret;
    g_source_set_callback(source, sim_usbfs_stall_done, stalled, NULL);
    g_source_attach(source, NULL);
}

static gboolean
sim_usbfs_handle_ioctl(UMockdevIoctlBase *base, UMockdevIoctlClient *client)
{
    SimUsbfs *self = SIM_USBFS(base);
    gulong request = umockdev_ioctl_client_get_request(client);
    g_autoptr(GMutexLocker) locker G_GNUC_UNUSED = g_mutex_locker_new(&self->lock);
    SimUsbfsClient *c = sim_usbfs_client_lookup(self, client);

    if (request == USBDEVFS_REAPURB || request == USBDEVFS_REAPURBNDELAY) {
        if (sim_usbfs_reap(c, client))
            return TRUE;
        if (request == USBDEVFS_REAPURB && !self->gone)
            c->reap_waits = TRUE; /* completed by sim_usbfs_finish() */
        else
            sim_usbfs_complete(client, self->gone ? -ENODEV : -EAGAIN);
        return TRUE;
    }
    if (self->gone) {
        sim_usbfs_complete(client, -ENODEV);
        return TRUE;
    }
    long ret = sim_usbfs_dispatch(self, client, request, umockdev_ioctl_client_get_arg(client));
    if (request == USBDEVFS_CLAIMINTERFACE && self->claim_stall_ms > 0)
        sim_usbfs_complete_stalled(self, client, ret);
    else
        sim_usbfs_complete(client, ret);
    return TRUE;
}

void
sim_usbfs_disconnect(SimUsbfs *self)
{
    g_autoptr(GMutexLocker) locker G_GNUC_UNUSED = g_mutex_locker_new(&self->lock);
    SimUrb *u;
    GHashTableIter iter;
    gpointer client, c;

    self->gone = TRUE;
    while ((u = g_queue_pop_head(&self->waiting)) != NULL) {
        u->status = -ENODEV;
        sim_usbfs_finish(self, u);
    }
    g_hash_table_iter_init(&iter, self->clients);
    while (g_hash_table_iter_next(&iter, &client, &c)) {
        if (((SimUsbfsClient *)c)->reap_waits) {
            ((SimUsbfsClient *)c)->reap_waits = FALSE;
            sim_usbfs_complete(client, -ENODEV);
        }
    }
}

static void
sim_usbfs_finalize(GObject *object)
{
    SimUsbfs *self = SIM_USBFS(object);
    g_queue_clear_full(&self->waiting, (GDestroyNotify)sim_urb_free);
    g_hash_table_unref(self->clients);
    sim_key_free(self->key);
    g_mutex_clear(&self->lock);
    G_OBJECT_CLASS(sim_usbfs_parent_class)->finalize(object);
}

static void
sim_usbfs_init(SimUsbfs *self)
{
    g_mutex_init(&self->lock);
    self->clients = g_hash_table_new_full(g_direct_hash, g_direct_equal, g_object_unref,
                                          (GDestroyNotify)sim_usbfs_client_free);
}

static void
sim_usbfs_class_init(SimUsbfsClass *klass)
{
    G_OBJECT_CLASS(klass)->finalize = sim_usbfs_finalize;
    UMOCKDEV_IOCTL_BASE_CLASS(klass)->handle_ioctl = sim_usbfs_handle_ioctl;
}

SimUsbfs *
sim_usbfs_new(SimKey *key, guint devnum)
{
    SimUsbfs *self = g_object_new(SIM_TYPE_USBFS, NULL);
    const gchar *delay = g_getenv("USBGW_SIM_REAP_DELAY_MS");
    const gchar *stall = g_getenv("USBGW_SIM_CLAIM_STALL_MS");
    self->key = key;
    self->devnum = devnum;
    /* a slow device: every transfer's answer is held this long (tests of
     * what is in flight when a peer stops, e.g. a live migration) */
    if (delay != NULL)
        self->reap_delay_us = CLAMP(g_ascii_strtoll(delay, NULL, 10), 0, 10000) * 1000;
    /* a claim answered late (tests of a client killed in the middle of an
     * ioctl) */
    if (stall != NULL)
        self->claim_stall_ms = (guint)CLAMP(g_ascii_strtoll(stall, NULL, 10), 0, 10000);
    return self;
}
