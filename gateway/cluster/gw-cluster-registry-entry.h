/* The directory's entries as etcd holds them (docs/cluster.md, "The
 * directory"): keys and values built and parsed, device ids escaped into
 * keys and back. Pure (no I/O, no global state; any thread), fuzzed by
 * tests/fuzz/fuzz-cluster-registry.c since every byte of a key or value
 * read from etcd may come from anyone who can write there.
 *
 * Key layout:
 *   /usbgw/gateways/G      = {"address": "HOST:PORT" or null, "version": V}
 *   /usbgw/devices/G/ID    = the device's description (gw_device_to_json)
 * G: 1 to GW_CLUSTER_REGISTRY_MAX_NAME bytes of letters, digits and
 * "._:-". ID: 1 to GW_CLUSTER_REGISTRY_MAX_ID bytes of UTF-8 without
 * control characters, written in the key with "/", "%" and every byte
 * from 0x80 on as %XX (upper-case hex), so a device key has exactly one
 * "/" after the prefix; a key whose escaping is not exactly that form is
 * refused (one id, one key).
 *
 * Ownership: results are the caller's. */
#pragma once

#include <json-glib/json-glib.h>

#include "policy.h"

G_BEGIN_DECLS

#define GW_CLUSTER_REGISTRY_ERROR (gw_cluster_registry_error_quark())
GQuark gw_cluster_registry_error_quark(void);

typedef enum {
    GW_CLUSTER_REGISTRY_ERROR_INVALID,   /* a bad gateway name, device id or address given */
    GW_CLUSTER_REGISTRY_ERROR_BAD_ENTRY, /* a key or value in etcd that is not of our form */
    GW_CLUSTER_REGISTRY_ERROR_TOO_LARGE, /* a value over GW_CLUSTER_REGISTRY_MAX_VALUE */
} GwClusterRegistryError;

/* Where the directory lives in etcd. */
#define GW_CLUSTER_REGISTRY_PREFIX          "/usbgw/"
#define GW_CLUSTER_REGISTRY_GATEWAYS_PREFIX "/usbgw/gateways/"
#define GW_CLUSTER_REGISTRY_DEVICES_PREFIX  "/usbgw/devices/"
/* Longest gateway name, device id (unescaped) and address, in bytes. */
#define GW_CLUSTER_REGISTRY_MAX_NAME    128
#define GW_CLUSTER_REGISTRY_MAX_ID      256
#define GW_CLUSTER_REGISTRY_MAX_ADDRESS 256
/* Largest value read (a device description is well under 1 KiB). */
#define GW_CLUSTER_REGISTRY_MAX_VALUE (64 * 1024)

typedef enum {
    GW_CLUSTER_REGISTRY_KEY_OTHER,   /* under /usbgw/ but not the directory's (pools) */
    GW_CLUSTER_REGISTRY_KEY_GATEWAY, /* /usbgw/gateways/G */
    GW_CLUSTER_REGISTRY_KEY_DEVICE,  /* /usbgw/devices/G/ID */
} GwClusterRegistryKeyKind;

/* Whether @name may name a gateway (INVALID naming it otherwise). */
gboolean gw_cluster_registry_check_name(const gchar *name, GError **error);
/* Whether @id may be a device id (INVALID naming it otherwise). */
gboolean gw_cluster_registry_check_id(const gchar *id, GError **error);
/* Whether @address is "HOST:PORT" (INVALID quoting it otherwise). */
gboolean gw_cluster_registry_check_address(const gchar *address, GError **error);

/* @id (valid) as it appears in a key. */
gchar *gw_cluster_registry_escape_id(const gchar *id) G_GNUC_WARN_UNUSED_RESULT;
gchar *gw_cluster_registry_gateway_key(const gchar *gateway) G_GNUC_WARN_UNUSED_RESULT;
gchar *gw_cluster_registry_device_key(const gchar *gateway,
                                      const gchar *id) G_GNUC_WARN_UNUSED_RESULT;

/* The values this gateway writes. @address nullable. */
GBytes *gw_cluster_registry_gateway_value(const gchar *address) G_GNUC_WARN_UNUSED_RESULT;
GBytes *gw_cluster_registry_device_value(const PolicyDevice *device) G_GNUC_WARN_UNUSED_RESULT;

/* A key read from etcd (@key_len bytes, may hold NULs): its kind, and the
 * gateway and (unescaped) id it names (owned, set for GATEWAY and DEVICE).
 * FALSE with BAD_ENTRY saying what is wrong for a key under the gateways'
 * or devices' prefix that is not of the form above. */
gboolean gw_cluster_registry_parse_key(const gchar *key, gsize key_len,
                                       GwClusterRegistryKeyKind *kind, gchar **gateway, gchar **id,
                                       GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* A gateway key's value; *@address (owned) is NULL when it exports
 * nothing reachable. */
gboolean gw_cluster_registry_parse_gateway_value(const gchar *data, gsize len, gchar **address,
                                                 GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* A device key's value. */
PolicyDevice *gw_cluster_registry_parse_device_value(const gchar *data, gsize len,
                                                     GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Whether two descriptions say the same (every field and interface). */
gboolean gw_cluster_registry_device_equal(const PolicyDevice *a, const PolicyDevice *b);

G_END_DECLS
