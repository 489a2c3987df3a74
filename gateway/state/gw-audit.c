/* Audit records: JSON lines on disk, structured fields in the log. */
#include "gw-audit.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gw-log.h"

/* Mode of a new audit log: root and the log's group may read it. */
#define GW_AUDIT_MODE 0640

struct _GwAudit {
    gchar *path; /* owned, nullable */
    int fd;      /* -1 when path is NULL */
};

/* Opens @path for appending, creating it GW_AUDIT_MODE. Never through a
 * symlink (O_NOFOLLOW), never a FIFO or device (O_NONBLOCK, then must be a
 * regular file), never a file someone else owns or a second name of one
 * (the log's directory may be writable by others). */
static int
gw_audit_open(const gchar *path, GError **error)
{
    struct stat st;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK,
                  GW_AUDIT_MODE);
    int saved;

    if (fd < 0) {
        saved = errno;
        g_set_error(
            error, G_IO_ERROR, g_io_error_from_errno(saved), "cannot open audit log %s: %s", path,
            saved == ELOOP ? "it is a symbolic link, which is not followed" : g_strerror(saved));
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        saved = errno;
        close(fd);
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved), "cannot open audit log %s: %s",
                    path, g_strerror(saved));
        return -1;
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || st.st_nlink != 1) {
        close(fd);
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED, "cannot open audit log %s: %s",
                    path,
                    !S_ISREG(st.st_mode)     ? "not a regular file"
                    : st.st_uid != geteuid() ? "owned by another user"
                                             : "it has other names (hard links)");
        return -1;
    }
    /* writes to a regular file do not block anyway; clear it for clarity */
    if (fcntl(fd, F_SETFL, O_APPEND) != 0)
        g_debug("audit log %s: cannot clear O_NONBLOCK: %s", path, g_strerror(errno));
    return fd;
}

GwAudit *
gw_audit_new(const gchar *path, GError **error)
{
    g_autoptr(GwAudit) audit = g_new0(GwAudit, 1);

    audit->fd = -1;
    if (path == NULL || path[0] == '\0')
        return g_steal_pointer(&audit);
    audit->path = g_strdup(path);
    {
        g_autofree gchar *dir = g_path_get_dirname(path);
        if (g_mkdir_with_parents(dir, 0750) != 0) {
            int saved = errno;
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved), "cannot create %s: %s",
                        dir, g_strerror(saved));
            return NULL;
        }
    }
    audit->fd = gw_audit_open(path, error);
    if (audit->fd < 0)
        return NULL;
    return g_steal_pointer(&audit);
}

gboolean
gw_audit_reopen(GwAudit *audit, GError **error)
{
    int fd;

    if (audit->path == NULL)
        return TRUE;
    fd = gw_audit_open(audit->path, error);
    if (fd < 0)
        return FALSE;
    if (audit->fd >= 0)
        close(audit->fd);
    audit->fd = fd;
    return TRUE;
}

static void
gw_audit_set(JsonObject *obj, const gchar *name, const gchar *value)
{
    if (value != NULL)
        json_object_set_string_member(obj, name, value);
}

const gchar *
gw_audit_kind_to_string(GwAuditKind kind)
{
    switch (kind) {
    case GW_AUDIT_ATTACH:
        return "attach";
    case GW_AUDIT_ATTACH_FAILED:
        return "attach-failed";
    case GW_AUDIT_DETACH:
        return "detach";
    case GW_AUDIT_DENY:
        return "deny";
    case GW_AUDIT_VETO:
        return "veto";
    case GW_AUDIT_RELEASE:
        return "release";
    case GW_AUDIT_ASSIGN:
        return "assign";
    case GW_AUDIT_POLICY_RELOADED:
        return "policy-reloaded";
    case GW_AUDIT_SHARE:
        return "share";
    case GW_AUDIT_UNSHARE:
        return "unshare";
    case GW_AUDIT_LEND:
        return "lend";
    case GW_AUDIT_RETURN:
        return "return";
    case GW_AUDIT_PEER_REFUSED:
        return "peer-refused";
    case GW_AUDIT_LINK_UP:
        return "link-up";
    case GW_AUDIT_LINK_DOWN:
        return "link-down";
    case GW_AUDIT_LINK_REFUSED:
        return "link-refused";
    case GW_AUDIT_EXPORT_OPEN:
        return "export-open";
    case GW_AUDIT_EXPORT_CLOSE:
        return "export-close";
    case GW_AUDIT_WISH_DENIED:
        return "wish-denied";
    case GW_AUDIT_NO_USB_BUS:
        return "no-usb-bus";
    case GW_AUDIT_USB_CONTROLLER:
        return "usb-controller-added";
    case GW_AUDIT_MIGRATE:
        return "migrate";
    case GW_AUDIT_MIGRATE_FAILED:
        return "migrate-failed";
    case GW_AUDIT_MIGRATE_OUT:
        return "migrate-out";
    case GW_AUDIT_MIGRATE_IN:
        return "migrate-in";
    case GW_AUDIT_CLUSTER_HOLD:
        return "cluster-hold";
    case GW_AUDIT_CLUSTER_RELEASE:
        return "cluster-release";
    case GW_AUDIT_CLUSTER_LOST:
        return "cluster-lost";
    }
    return "unknown";
}

/* The journal's MESSAGE_ID of an event (gw-log.h), NULL for those
 * without one. */
static const gchar *
gw_audit_message_id(GwAuditKind kind)
{
    switch (kind) {
    case GW_AUDIT_ATTACH:
        return GW_LOG_ID_ATTACH;
    case GW_AUDIT_ATTACH_FAILED:
    case GW_AUDIT_NO_USB_BUS:
        return GW_LOG_ID_ATTACH_FAILED;
    case GW_AUDIT_DETACH:
        return GW_LOG_ID_DETACH;
    case GW_AUDIT_DENY:
    case GW_AUDIT_WISH_DENIED:
        return GW_LOG_ID_DENY;
    case GW_AUDIT_VETO:
        return GW_LOG_ID_VETO;
    case GW_AUDIT_PEER_REFUSED:
        return GW_LOG_ID_PEER_REFUSED;
    case GW_AUDIT_RELEASE:
    case GW_AUDIT_ASSIGN:
    case GW_AUDIT_POLICY_RELOADED:
    case GW_AUDIT_SHARE:
    case GW_AUDIT_UNSHARE:
    case GW_AUDIT_LEND:
    case GW_AUDIT_RETURN:
    case GW_AUDIT_LINK_UP:
    case GW_AUDIT_LINK_DOWN:
    case GW_AUDIT_LINK_REFUSED:
    case GW_AUDIT_EXPORT_OPEN:
    case GW_AUDIT_EXPORT_CLOSE:
    case GW_AUDIT_USB_CONTROLLER:
    case GW_AUDIT_MIGRATE:
    case GW_AUDIT_MIGRATE_FAILED:
    case GW_AUDIT_MIGRATE_OUT:
    case GW_AUDIT_MIGRATE_IN:
    case GW_AUDIT_CLUSTER_HOLD:
    case GW_AUDIT_CLUSTER_RELEASE:
    case GW_AUDIT_CLUSTER_LOST:
        break;
    }
    return NULL;
}

JsonNode *
gw_audit_record(GwAudit *audit, const GwAuditEvent *event)
{
    g_autoptr(JsonObject) obj = json_object_new();
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree gchar *time = g_date_time_format_iso8601(now);
    g_autoptr(JsonNode) node = NULL;
    g_autoptr(JsonGenerator) generator = json_generator_new();
    g_autofree gchar *line = NULL;
    g_autofree gchar *message = NULL;
    gsize len = 0;

    json_object_set_string_member(obj, "time", time);
    json_object_set_string_member(obj, "event", gw_audit_kind_to_string(event->event));
    gw_audit_set(obj, "device", event->device_id);
    if (event->device != NULL) {
        g_autofree gchar *vid = g_strdup_printf("%04x", event->device->vendor_id);
        g_autofree gchar *pid = g_strdup_printf("%04x", event->device->product_id);
        json_object_set_string_member(obj, "vid", vid);
        json_object_set_string_member(obj, "pid", pid);
        gw_audit_set(obj, "serial", event->device->serial);
        gw_audit_set(obj, "port", event->device->port);
        gw_audit_set(obj, "product", event->device->product);
        gw_audit_set(obj, "gateway", event->device->gateway);
    }
    gw_audit_set(obj, "peer", event->peer);
    gw_audit_set(obj, "address", event->address);
    gw_audit_set(obj, "from", event->from);
    gw_audit_set(obj, "to", event->to);
    gw_audit_set(obj, "pool", event->pool);
    if (event->revision != 0)
        json_object_set_int_member(obj, "revision", event->revision);
    gw_audit_set(obj, "vm", event->vm);
    gw_audit_set(obj, "uuid", event->vm_uuid);
    gw_audit_set(obj, "rule", event->rule);
    gw_audit_set(obj, "actor", event->actor);
    gw_audit_set(obj, "reason", event->reason);
    node = json_node_init_object(json_node_alloc(), obj);

    json_generator_set_root(generator, node);
    line = json_generator_to_data(generator, &len);
    if (audit->fd >= 0) {
        g_autofree gchar *record = g_strconcat(line, "\n", NULL);
        if (write(audit->fd, record, len + 1) != (ssize_t)(len + 1))
            g_warning("audit log %s: write failed: %s", audit->path, g_strerror(errno));
    }
    message = g_strdup_printf(
        "%s %s%s%s%s%s%s%s", gw_audit_kind_to_string(event->event),
        event->device_id != NULL ? event->device_id : "-", event->peer != NULL ? " gateway " : "",
        event->peer != NULL ? event->peer : "", event->vm != NULL ? " vm " : "",
        event->vm != NULL ? event->vm : "", event->reason != NULL ? ": " : "",
        event->reason != NULL ? event->reason : "");
    {
        const GLogField extra[] = {
            {"USBGW_EVENT", gw_audit_kind_to_string(event->event), -1},
            {"USBGW_VM_UUID", event->vm_uuid != NULL ? event->vm_uuid : "", -1},
            {"USBGW_RULE", event->rule != NULL ? event->rule : "", -1},
            {"USBGW_ACTOR", event->actor != NULL ? event->actor : "", -1},
            {"USBGW_GATEWAY", event->peer != NULL ? event->peer : "", -1},
        };
        gw_log_device_full(G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, event->device_id, event->vm,
                           gw_audit_message_id(event->event), extra, G_N_ELEMENTS(extra), __FILE__,
                           G_STRINGIFY(__LINE__), G_STRFUNC, "%s", message);
    }
    return g_steal_pointer(&node);
}

void
gw_audit_free(GwAudit *audit)
{
    if (audit == NULL)
        return;
    if (audit->fd >= 0)
        close(audit->fd);
    g_free(audit->path);
    g_free(audit);
}
