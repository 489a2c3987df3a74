/* The domain XML libvirt hands its hooks on stdin: reading it within a size
 * and time bound, and taking out of it the VM's name, UUID and the paths of
 * the usb-redir unix sockets its QEMU connects to.
 *
 * Only <domain><name>, <domain><uuid> and <domain><devices><redirdev>
 * directly under the root are read (GMarkup, no libxml2); a <name> or a
 * <redirdev> anywhere deeper (a disk's <name>, metadata) is not the
 * domain's. Parsing stops once the name, the UUID and <devices> (or the
 * whole <domain>) are complete, so whatever libvirt writes after them (security labels, user
 * metadata) cannot make the hook fail. Only the name and the UUID decide
 * whether the XML is usable: a problem with the sockets, or anything
 * wrong once both fields are read, is kept in HookDomain.sockets_error for
 * the one op that needs the sockets (migrate) to refuse, and every other
 * op goes on. Every error is one line that says what was wrong and where.
 *
 * Single-threaded use; a HookDomain owns all its strings and its
 * sockets_error. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define HOOK_DOMAIN_ERROR (hook_domain_error_quark())
GQuark hook_domain_error_quark(void);

typedef enum {
    HOOK_DOMAIN_ERROR_READ,             /* stdin could not be read */
    HOOK_DOMAIN_ERROR_TIMEOUT,          /* stdin did not end before the deadline */
    HOOK_DOMAIN_ERROR_TOO_LARGE,        /* more than HOOK_DOMAIN_MAX_XML_SIZE bytes */
    HOOK_DOMAIN_ERROR_SYNTAX,           /* not well-formed XML (GMarkup) or not UTF-8 */
    HOOK_DOMAIN_ERROR_NOT_DOMAIN,       /* the root element is not <domain> */
    HOOK_DOMAIN_ERROR_DUPLICATE,        /* <domain> has two <name>, <uuid> or <devices> */
    HOOK_DOMAIN_ERROR_NO_NAME,          /* no <domain><name> */
    HOOK_DOMAIN_ERROR_BAD_NAME,         /* <name> is empty or holds an element */
    HOOK_DOMAIN_ERROR_NO_UUID,          /* no <domain><uuid> */
    HOOK_DOMAIN_ERROR_BAD_UUID,         /* <uuid> is not a UUID or holds an element */
    HOOK_DOMAIN_ERROR_NAME_MISMATCH,    /* <name> is not the name libvirt passed in argv */
    HOOK_DOMAIN_ERROR_TOO_MANY_SOCKETS, /* more than HOOK_DOMAIN_MAX_SOCKETS unix redirdevs */
    HOOK_DOMAIN_ERROR_BAD_SOCKET,       /* a unix redirdev's path is not a usable absolute path */
} HookDomainError;

/* Domain XML larger than this is refused unread (libvirt's largest real
 * domains are a few hundred KiB). */
#define HOOK_DOMAIN_MAX_XML_SIZE (4 * 1024 * 1024)

/* At most this many usb-redir unix sockets per VM (more is a sockets_error
 * HOOK_DOMAIN_ERROR_TOO_MANY_SOCKETS): far more redirected devices than a VM
 * uses, and few enough that all their paths fit in one control request. */
#define HOOK_DOMAIN_MAX_SOCKETS 64

/* A socket path's longest length in bytes: struct sockaddr_un's sun_path
 * holds 108 bytes, the terminating NUL included (QEMU refuses longer). */
#define HOOK_DOMAIN_MAX_SOCKET_PATH 107

typedef struct {
    gchar *name; /* owned: <domain><name>, as libvirt wrote it (entities resolved) */
    gchar *uuid; /* owned: <domain><uuid>, validated, lower case */
    /* owned, NULL-terminated, empty when none or when sockets_error is set:
     * the path of each <domain><devices><redirdev bus='usb' type='unix'>
     * <source mode='connect' path='…'/>, in document order. Each is
     * absolute, valid UTF-8, at most HOOK_DOMAIN_MAX_SOCKET_PATH bytes,
     * without a ".." component. A redirdev of another type (spicevmc, tcp),
     * with mode='bind' or without a path is not listed. */
    gchar **sockets;
    /* owned, nullable: why the sockets cannot be told, a one-line
     * HOOK_DOMAIN_ERROR: the first path that is not as above (BAD_SOCKET),
     * more than HOOK_DOMAIN_MAX_SOCKETS of them (TOO_MANY_SOCKETS), a second
     * <devices> (DUPLICATE), or XML that goes wrong once <name> and <uuid>
     * are read but before </devices> or </domain> (SYNTAX, or DUPLICATE for
     * a second <name> or <uuid>). Not a parse failure: only migrate needs
     * the sockets. */
    GError *sockets_error;
} HookDomain;

void hook_domain_free(HookDomain *domain);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(HookDomain, hook_domain_free)

/* Reads @fd to its end, at most @max_size bytes (more is
 * HOOK_DOMAIN_ERROR_TOO_LARGE), giving up at @deadline (g_get_monotonic_time()
 * microseconds; HOOK_DOMAIN_ERROR_TIMEOUT). Does not close @fd. */
GBytes *hook_domain_read_fd(gint fd, gsize max_size, gint64 deadline,
                            GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Parses domain XML (@len bytes, need not be NUL-terminated). When
 * @argv_name is not NULL the XML's <name> must equal it. Fails only for
 * the name and the UUID (see sockets_error for the rest). */
HookDomain *hook_domain_parse(const gchar *xml, gsize len, const gchar *argv_name,
                              GError **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
