/* libusbgw-policy: the rule language that says which USB device goes to
 * which VM, and which of this host's devices other gateways may import.
 *
 * A pure library: it parses rule text handed to it (policy_load_file() is
 * the only function that reads a file), matches device descriptions built
 * by the caller and answers decisions. It never touches libusb, sockets or
 * libvirt, so every rule can be tested alone. See docs/policy.md for the
 * language.
 *
 * Ownership: a Policy is immutable once loaded and may be shared between
 * threads for decisions. Strings in a PolicyDecision borrow from the Policy
 * that produced it and live as long as it does.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define POLICY_ERROR (policy_error_quark())
GQuark policy_error_quark(void);

typedef enum {
    POLICY_ERROR_PARSE,       /* the rule text is invalid */
    POLICY_ERROR_TOO_LARGE,   /* the rule text exceeds POLICY_MAX_TEXT_SIZE */
    POLICY_ERROR_NOT_FOUND,   /* a named pool or device is unknown */
    POLICY_ERROR_NOT_ALLOWED, /* the VM is not a member of the pool */
    POLICY_ERROR_EXHAUSTED,   /* every device of the pool is leased */
} PolicyError;

/* Rule text larger than this is refused before parsing. */
#define POLICY_MAX_TEXT_SIZE (4 * 1024 * 1024)

/* ---- Device description ---------------------------------------------- */

typedef struct {
    guint8 klass;
    guint8 subclass;
    guint8 protocol;
} PolicyInterface;

/* What the policy knows about a USB device, independent of libusb. */
typedef struct {
    guint16 vendor_id;
    guint16 product_id;
    guint16 bcd_device;
    guint8 device_class;
    guint8 device_subclass;
    guint8 device_protocol;
    gchar *manufacturer; /* owned, nullable */
    gchar *product;      /* owned, nullable */
    gchar *serial;       /* owned, nullable: many HASP keys have none */
    gchar *port;         /* owned, nullable: "1-1.4" (bus-port.port…) */
    gchar *hash;         /* owned, nullable: descriptor hash */
    gchar *gateway;      /* owned, nullable: the gateway it sits on; NULL for this host's */
    GArray *interfaces;  /* owned: PolicyInterface */
} PolicyDevice;

PolicyDevice *policy_device_new(guint16 vendor_id, guint16 product_id);
PolicyDevice *policy_device_copy(const PolicyDevice *device);
void policy_device_free(PolicyDevice *device);
void policy_device_add_interface(PolicyDevice *device, guint8 klass, guint8 subclass,
                                 guint8 protocol);
/* "0529:0001 serial \"A1\" port 1-1.4 on gateway \"dongles1\"": for
 * messages and audit lines. */
gchar *policy_device_describe(const PolicyDevice *device) G_GNUC_WARN_UNUSED_RESULT;

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PolicyDevice, policy_device_free)

/* Whether @name can name a gateway (the name in its TLS certificate): it
 * matches [A-Za-z0-9][A-Za-z0-9._-]* and has at most
 * POLICY_GATEWAY_NAME_MAX bytes. One rule for device lists, the policy's
 * gateway globs and the daemon. */
#define POLICY_GATEWAY_NAME_MAX 64
gboolean policy_gateway_name_is_valid(const gchar *name);

/* ---- Loading -------------------------------------------------------------- */

/* One problem found in rule text; "file:line:col: message" plus the line
 * and a caret under the column. */
typedef struct {
    gchar *file;      /* owned */
    guint line;       /* 1-based */
    guint column;     /* 1-based, in bytes */
    gchar *message;   /* owned */
    gchar *line_text; /* owned, the offending line without its newline */
} PolicyDiagnostic;

void policy_diagnostic_free(PolicyDiagnostic *diag);
/* Three lines: location and message, the source line, the caret. */
gchar *policy_diagnostic_format(const PolicyDiagnostic *diag) G_GNUC_WARN_UNUSED_RESULT;

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PolicyDiagnostic, policy_diagnostic_free)

typedef struct _Policy Policy;

/* Parses rule text. A text with any error is rejected whole: NULL is
 * returned, @error says how many problems there were and quotes the first,
 * and @diagnostics (if not NULL) receives every one (PolicyDiagnostic,
 * owned by the array). @filename only names the text in messages. */
Policy *policy_load_data(const gchar *data, gsize len, const gchar *filename,
                         GPtrArray **diagnostics, GError **error) G_GNUC_WARN_UNUSED_RESULT;
Policy *policy_load_file(const gchar *path, GPtrArray **diagnostics,
                         GError **error) G_GNUC_WARN_UNUSED_RESULT;
Policy *policy_ref(Policy *policy);
void policy_unref(Policy *policy);
guint policy_get_rule_count(const Policy *policy);
const gchar *policy_get_filename(const Policy *policy);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(Policy, policy_unref)

/* ---- Decisions ------------------------------------------------------------ */

typedef enum {
    POLICY_VERDICT_NONE,     /* no rule matched: leave the device to the host */
    POLICY_VERDICT_ASSIGN,   /* give it to the target */
    POLICY_VERDICT_SHARE,    /* the user may lend it to the target VM */
    POLICY_VERDICT_DENY,     /* nobody gets it */
    POLICY_VERDICT_EXPORT,   /* this host serves it to the gateways the target glob names */
    POLICY_VERDICT_METADATA, /* allow metadata: the target's VMs get it if they ask for it */
} PolicyVerdict;

typedef enum {
    POLICY_TARGET_NONE,
    POLICY_TARGET_VM,      /* value: a VM name glob */
    POLICY_TARGET_VM_UUID, /* value: a UUID, lower case */
    POLICY_TARGET_POOL,    /* value: a pool name */
    POLICY_TARGET_GATEWAY, /* value: a gateway name glob (export rules) */
} PolicyTargetKind;

/* Where a device came from decides which rules apply to it. */
typedef enum {
    POLICY_ORIGIN_HOST,  /* plugged into this host or a gateway: assign/deny/export */
    POLICY_ORIGIN_SHARE, /* lent by a workstation user: share/deny */
} PolicyOrigin;

typedef struct {
    const gchar *vm_name;       /* nullable */
    const gchar *vm_uuid;       /* nullable */
    const gchar *user;          /* nullable: the lending user (share) */
    const gchar *const *groups; /* nullable, NULL-terminated: the user's groups */
    const gchar *gateway;       /* nullable: the importing gateway an export decision is for */
} PolicyContext;

typedef struct {
    PolicyVerdict verdict;
    PolicyTargetKind target_kind;
    const gchar *target; /* borrowed from the Policy, nullable */
    gboolean required;
    const gchar *file; /* borrowed: the deciding rule's file, NULL when no rule decided */
    guint line;        /* the deciding rule's line, 0 when no rule decided */
    guint rule_index;  /* 0-based index of the deciding rule */
} PolicyDecision;

/* Host devices: the first assign, deny or export rule whose matchers all
 * match decides. An export rule only matches this host's own devices
 * (device->gateway NULL) and, when ctx->gateway is given, only if its
 * gateway glob matches it; without ctx or ctx->gateway it matches on its
 * device matchers alone ("is this device exported to anyone?"). The rest
 * of the context is not used for host devices. Shared devices: the first deny rule or
 * share rule that matches the device, the user or one of the groups, and
 * the VM (context vm_name/vm_uuid) decides; no match means deny. A rule
 * that matches on serial, name, via-port or hash never decides for a
 * shared device: those are only what the lending client claims (share
 * rules cannot have them; deny rules with them stop host devices only). */
void policy_decide(const Policy *policy, PolicyOrigin origin, const PolicyDevice *device,
                   const PolicyContext *ctx, PolicyDecision *decision);

/* Whether the host-origin decision for @device asked for the importing
 * gateway @gateway (nullable: any gateway) is EXPORT: this host may serve
 * the device to that gateway. @decision (nullable) receives the decision
 * in either case, so the caller can log the rule that refused it. */
gboolean policy_exports_to(const Policy *policy, const PolicyDevice *device, const gchar *gateway,
                           PolicyDecision *decision);

/* Whether an ASSIGN, SHARE or METADATA decision gives the device to this
 * VM: the name glob or UUID matches, or the VM is a member of the target
 * pool. (A METADATA decision gives it only to a VM that asks for it: the
 * caller checks the VM's wish.) */
gboolean policy_decision_is_for_vm(const Policy *policy, const PolicyDecision *decision,
                                   const gchar *vm_name, const gchar *vm_uuid);

/* A `required` assign rule that gives a device to a VM: the VM must not
 * start without a device the rule decides for. */
typedef struct {
    guint rule_index;
    const gchar *file; /* borrowed from the Policy */
    guint line;
    PolicyTargetKind target_kind;
    const gchar *target; /* borrowed */
} PolicyRequirement;

/* The required assign rules whose target is this VM (name glob, UUID or a
 * pool the VM belongs to), in rule order. Array of PolicyRequirement. */
GArray *policy_get_requirements(const Policy *policy, const gchar *vm_name,
                                const gchar *vm_uuid) G_GNUC_WARN_UNUSED_RESULT;
/* Whether @device satisfies @req: the requirement's rule is the one that
 * decides for the device (an earlier deny would take it first). */
gboolean policy_requirement_is_met_by(const Policy *policy, const PolicyRequirement *req,
                                      const PolicyDevice *device);

/* ---- Wishes: what a VM asks for in its own libvirt metadata --------------- */

/* One wish: a key of a pool (@pool set), or a device by id and, optionally,
 * serial number. */
typedef struct {
    gchar *pool;       /* owned, nullable: a pool wish */
    gint32 vendor_id;  /* -1: any (a device wish gives at least the vendor) */
    gint32 product_id; /* -1: any */
    gchar *serial;     /* owned, nullable: exact serial number */
} PolicyWish;

PolicyWish *policy_wish_new_pool(const gchar *pool);
/* @id: VID:PID as in the rule language (0529:0001, 0529:*); NULL when it
 * is not one. */
PolicyWish *policy_wish_new_device(const gchar *id, const gchar *serial);
PolicyWish *policy_wish_copy(const PolicyWish *wish);
void policy_wish_free(PolicyWish *wish);
gboolean policy_wish_equal(const PolicyWish *a, const PolicyWish *b);
/* "pool \"cad\"" or "id 0529:0001 serial \"A1\"": for messages. */
gchar *policy_wish_describe(const PolicyWish *wish) G_GNUC_WARN_UNUSED_RESULT;
/* Whether the device wish @wish names @device. */
gboolean policy_wish_matches_device(const PolicyWish *wish, const PolicyDevice *device);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PolicyWish, policy_wish_free)

/* Whether an `allow metadata pool "POOL" for vm …` rule lets this VM join
 * @pool by its wish; @decision (nullable) receives that rule. */
gboolean policy_metadata_allows_pool(const Policy *policy, const gchar *pool, const gchar *vm_name,
                                     const gchar *vm_uuid, PolicyDecision *decision);
/* Whether some `allow metadata` rule (device or pool form) names this VM. */
gboolean policy_metadata_names_vm(const Policy *policy, const gchar *vm_name, const gchar *vm_uuid);

/* Whether @name can be a VM's name in usbgw: non-empty, at most
 * POLICY_VM_NAME_MAX bytes, no '/', not starting with '.' — it names a
 * directory under usbgwd's run directory. One rule for usbgwd, usbgwctl
 * and the hook. */
#define POLICY_VM_NAME_MAX 255
gboolean policy_vm_name_is_valid(const gchar *name);

const gchar *policy_verdict_to_string(PolicyVerdict verdict);
const gchar *policy_target_kind_to_string(PolicyTargetKind kind);

/* ---- Pools ---------------------------------------------------------------- */

/* Leases of a pool's identical devices to its VMs. Devices are named by a
 * caller-chosen stable key (e.g. the port path); the first free device in
 * key order is handed out, so the same inventory always gives the same
 * answer. Not thread-safe: the caller serializes. */
typedef struct _PolicyPools PolicyPools;

PolicyPools *policy_pools_new(Policy *policy);
void policy_pools_free(PolicyPools *pools);
/* A device the policy assigned to @pool is present. */
gboolean policy_pools_add_device(PolicyPools *pools, const gchar *pool, const gchar *device_key,
                                 GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* The device is gone; its lease, if any, ends. */
void policy_pools_remove_device(PolicyPools *pools, const gchar *device_key);
/* Leases a device of @pool to @vm_name (returns the one it already holds,
 * if any). Returns the device key, borrowed from @pools. */
const gchar *policy_pools_acquire(PolicyPools *pools, const gchar *pool, const gchar *vm_name,
                                  GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Leases this device of @pool to @vm_name if it is free (restoring a lease
 * from before a restart). Returns FALSE with @error when it is not a
 * member, is held by another VM, or the VM already holds another device. */
gboolean policy_pools_acquire_key(PolicyPools *pools, const gchar *pool, const gchar *vm_name,
                                  const gchar *device_key,
                                  GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* @vm_name is a member of @pool although the pool's VM glob does not
 * match it (its wish was allowed), or no longer (@member FALSE). */
void policy_pools_set_member(PolicyPools *pools, const gchar *pool, const gchar *vm_name,
                             gboolean member);
/* Ends every lease held by @vm_name (and the memberships of its wishes);
 * returns how many leases. */
guint policy_pools_release_vm(PolicyPools *pools, const gchar *vm_name);
/* The VM holding @device_key, or NULL. */
const gchar *policy_pools_lookup_holder(PolicyPools *pools, const gchar *device_key);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PolicyPools, policy_pools_free)

/* ---- usbredirfilter -------------------------------------------------------- */

/* Compiles the rules that concern @vm_name/@vm_uuid (all assign and share
 * rules when both are NULL; export rules are not for QEMU and left out) to a usbredirfilter string
 * ("class,vid,pid, version,allow|…", usbredirfilter_rules_to_string() format) for QEMU's
 * <redirfilter>. Matchers usbredirfilter cannot express are reported in
 * @notes (strings "file:line: …"): an allow rule is widened (the gateway
 * still enforces the exact rule), a deny rule that would become wider is
 * left out. Returns NULL with @error only when usbredirfilter rejects the
 * result. An empty rule set compiles to a filter that denies everything. */
gchar *policy_compile_usbredirfilter(const Policy *policy, const gchar *vm_name,
                                     const gchar *vm_uuid, GPtrArray **notes,
                                     GError **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
