/* The domain XML libvirt hands its hooks on stdin: reading it within a size
 * and time bound, and taking the VM's name and UUID out of it.
 *
 * Only <domain><name> and <domain><uuid> directly under the root are read
 * (GMarkup, no libxml2); a <name> anywhere deeper (a disk's <name>, metadata)
 * is not the domain's. Parsing stops once both are complete, so whatever
 * libvirt writes after them (devices, user metadata) cannot make the hook
 * fail. Every error is one line that says what was wrong and where. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define HOOK_DOMAIN_ERROR (hook_domain_error_quark())
GQuark hook_domain_error_quark(void);

typedef enum {
    HOOK_DOMAIN_ERROR_READ,          /* stdin could not be read */
    HOOK_DOMAIN_ERROR_TIMEOUT,       /* stdin did not end before the deadline */
    HOOK_DOMAIN_ERROR_TOO_LARGE,     /* more than HOOK_DOMAIN_MAX_XML_SIZE bytes */
    HOOK_DOMAIN_ERROR_SYNTAX,        /* not well-formed XML (GMarkup) or not UTF-8 */
    HOOK_DOMAIN_ERROR_NOT_DOMAIN,    /* the root element is not <domain> */
    HOOK_DOMAIN_ERROR_DUPLICATE,     /* <domain> has two <name> or two <uuid> */
    HOOK_DOMAIN_ERROR_NO_NAME,       /* no <domain><name> */
    HOOK_DOMAIN_ERROR_BAD_NAME,      /* <name> is empty or holds an element */
    HOOK_DOMAIN_ERROR_NO_UUID,       /* no <domain><uuid> */
    HOOK_DOMAIN_ERROR_BAD_UUID,      /* <uuid> is not a UUID or holds an element */
    HOOK_DOMAIN_ERROR_NAME_MISMATCH, /* <name> is not the name libvirt passed in argv */
} HookDomainError;

/* Domain XML larger than this is refused unread (libvirt's largest real
 * domains are a few hundred KiB). */
#define HOOK_DOMAIN_MAX_XML_SIZE (4 * 1024 * 1024)

typedef struct {
    gchar *name; /* owned: <domain><name>, as libvirt wrote it (entities resolved) */
    gchar *uuid; /* owned: <domain><uuid>, validated, lower case */
} HookDomain;

void hook_domain_free(HookDomain *domain);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(HookDomain, hook_domain_free)

/* Reads @fd to its end, at most @max_size bytes (more is
 * HOOK_DOMAIN_ERROR_TOO_LARGE), giving up at @deadline (g_get_monotonic_time()
 * microseconds; HOOK_DOMAIN_ERROR_TIMEOUT). Does not close @fd. */
GBytes *hook_domain_read_fd(gint fd, gsize max_size, gint64 deadline,
                            GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Parses domain XML (@len bytes, need not be NUL-terminated). When
 * @argv_name is not NULL the XML's <name> must equal it. */
HookDomain *hook_domain_parse(const gchar *xml, gsize len, const gchar *argv_name,
                              GError **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
