/* PolicyDevice: what the policy knows about a USB device, and the rule for
 * gateway names. */
#include "policy-private.h"

#include <string.h>

PolicyDevice *
policy_device_new(guint16 vendor_id, guint16 product_id)
{
    PolicyDevice *device = g_new0(PolicyDevice, 1);
    device->vendor_id = vendor_id;
    device->product_id = product_id;
    device->interfaces = g_array_new(FALSE, FALSE, sizeof(PolicyInterface));
    return device;
}

PolicyDevice *
policy_device_copy(const PolicyDevice *device)
{
    PolicyDevice *copy = g_memdup2(device, sizeof(*device));
    copy->manufacturer = g_strdup(device->manufacturer);
    copy->product = g_strdup(device->product);
    copy->serial = g_strdup(device->serial);
    copy->port = g_strdup(device->port);
    copy->hash = g_strdup(device->hash);
    copy->gateway = g_strdup(device->gateway);
    copy->interfaces = g_array_copy(device->interfaces);
    return copy;
}

void
policy_device_free(PolicyDevice *device)
{
    if (device == NULL)
        return;
    g_free(device->manufacturer);
    g_free(device->product);
    g_free(device->serial);
    g_free(device->port);
    g_free(device->hash);
    g_free(device->gateway);
    g_array_unref(device->interfaces);
    g_free(device);
}

void
policy_device_add_interface(PolicyDevice *device, guint8 klass, guint8 subclass, guint8 protocol)
{
    PolicyInterface iface = {.klass = klass, .subclass = subclass, .protocol = protocol};
    g_array_append_val(device->interfaces, iface);
}

gchar *
policy_device_describe(const PolicyDevice *device)
{
    GString *out = g_string_new(NULL);
    g_string_append_printf(out, "%04x:%04x", device->vendor_id, device->product_id);
    if (device->serial != NULL && device->serial[0] != '\0') {
        g_autofree gchar *escaped = g_strescape(device->serial, NULL);
        g_string_append_printf(out, " serial \"%s\"", escaped);
    }
    if (device->port != NULL)
        g_string_append_printf(out, " port %s", device->port);
    if (device->gateway != NULL) {
        /* escaped: a caller may describe a device before checking its name */
        g_autofree gchar *escaped = g_strescape(device->gateway, NULL);
        g_string_append_printf(out, " on gateway \"%s\"", escaped);
    }
    return g_string_free(out, FALSE);
}

gboolean
policy_gateway_name_is_valid(const gchar *name)
{
    gsize len;

    if (name == NULL || !g_ascii_isalnum(name[0]))
        return FALSE;
    len = strlen(name);
    return len <= POLICY_GATEWAY_NAME_MAX && strspn(name, POLICY_GATEWAY_NAME_CHARS) == len;
}
