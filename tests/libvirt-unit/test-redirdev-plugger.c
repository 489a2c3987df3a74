/* GwRedirdevPlugger's names: socket paths and aliases that never meet for
 * two devices, and the alias of a device behind a hub found again. No
 * libvirt needed: without one the plugger only names things. */
#include "gw-device.h"
#include "gw-redirdev-plugger.h"

static gchar *
slot_name_of(guint16 vid, guint16 pid, const gchar *serial, const gchar *port)
{
    g_autoptr(PolicyDevice) device = policy_device_new(vid, pid);
    device->serial = g_strdup(serial);
    device->port = g_strdup(port);
    return gw_device_slot_name(device);
}

/* Plain identities keep the names usbgwd always gave them. */
static void
test_plugger_plain_names(void)
{
    g_autoptr(GwRedirdevPlugger) plugger = gw_redirdev_plugger_new("/run/usbgw", NULL, NULL, NULL);
    g_autofree gchar *slot_name = slot_name_of(0x0529, 0x0001, NULL, "1-1");
    g_autofree gchar *path =
        gw_redirdev_plugger_device_socket(plugger, "vm-1", "0529:0001@1-1", slot_name);
    g_autofree gchar *slot = gw_redirdev_slot("0529:0001@1-1", slot_name);
    g_autofree gchar *alias = gw_redirdev_alias(slot);
    g_autofree gchar *serial_name = slot_name_of(0x064f, 0x2af9, "3-1234567", "1-3.1");
    g_autofree gchar *serial_slot = gw_redirdev_slot("064f:2af9#3-1234567", serial_name);

    g_assert_cmpstr(path, ==, "/run/usbgw/vm/vm-1/0529-0001-at-1-1.sock");
    g_assert_cmpstr(alias, ==, "ua-usbgw-0529-0001-at-1-1");
    g_assert_cmpstr(serial_slot, ==, "064f-2af9-sn-3-1234567");
    g_assert_true(gw_redirdev_plugger_is_ours(plugger, path));
    g_assert_false(gw_redirdev_plugger_is_ours(plugger, "/run/other/vm-1/x.sock"));
}

/* Serials "A/B" and "A_B" had one file name: one device's bind unlinked
 * the other's socket. */
static void
test_plugger_sockets_never_collide(void)
{
    g_autoptr(GwRedirdevPlugger) plugger = gw_redirdev_plugger_new("/run/usbgw", NULL, NULL, NULL);
    g_autofree gchar *name_a = slot_name_of(0x0529, 0x0001, "A/B", "1-1");
    g_autofree gchar *name_b = slot_name_of(0x0529, 0x0001, "A_B", "1-2");
    g_autofree gchar *path_a =
        gw_redirdev_plugger_device_socket(plugger, "vm-1", "0529:0001#A/B", name_a);
    g_autofree gchar *path_b =
        gw_redirdev_plugger_device_socket(plugger, "vm-1", "0529:0001#A_B", name_b);

    /* the defect: the identity as a file name is the same for both */
    g_assert_cmpstr(name_a, ==, name_b);
    g_assert_cmpstr(path_a, !=, path_b);
    g_assert_cmpstr(path_b, ==, "/run/usbgw/vm/vm-1/0529-0001-sn-A_B.sock");
    g_assert_true(g_str_has_prefix(path_a, "/run/usbgw/vm/vm-1/0529-0001-sn-A_B-"));
}

/* Port paths behind a hub have a '.', which libvirt refuses in aliases:
 * "1-1.4" and "1-1_4" must not share one, and a removal is matched by the
 * alias exactly (the old suffix match never found the '.' ones). */
static void
test_plugger_aliases_behind_hubs(void)
{
    g_autoptr(GwRedirdevPlugger) plugger = gw_redirdev_plugger_new("/run/usbgw", NULL, NULL, NULL);
    g_autofree gchar *hub_name = slot_name_of(0x0529, 0x0001, NULL, "1-1.4");
    g_autofree gchar *hub_slot = gw_redirdev_slot("0529:0001@1-1.4", hub_name);
    g_autofree gchar *hub_alias = gw_redirdev_alias(hub_slot);
    g_autofree gchar *other_alias = gw_redirdev_alias("0529-0001-at-1-1_4");
    g_autofree gchar *path =
        gw_redirdev_plugger_device_socket(plugger, "vm-1", "0529:0001@1-1.4", hub_name);

    g_assert_cmpstr(hub_slot, ==, "0529-0001-at-1-1.4");
    g_assert_true(g_str_has_prefix(hub_alias, "ua-usbgw-0529-0001-at-1-1_4-"));
    g_assert_cmpstr(hub_alias, !=, other_alias);
    for (const gchar *c = hub_alias; *c != '\0'; c++)
        g_assert_true(g_ascii_isalnum(*c) || *c == '-' || *c == '_');
    g_assert_false(g_str_has_suffix(hub_alias, hub_slot));
    gw_redirdev_plugger_plug_device(plugger, "0529:0001@1-1.4", hub_name, "vm-1", NULL, path);
    g_assert_cmpstr(gw_redirdev_plugger_lookup_alias(plugger, "vm-1", hub_alias), ==,
                    "0529:0001@1-1.4");
    g_assert_null(gw_redirdev_plugger_lookup_alias(plugger, "vm-2", hub_alias));
    g_assert_null(gw_redirdev_plugger_lookup_alias(plugger, "vm-1", "ua-usbgw-share0"));
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/plugger/plain-names", test_plugger_plain_names);
    g_test_add_func("/plugger/sockets-never-collide", test_plugger_sockets_never_collide);
    g_test_add_func("/plugger/aliases-behind-hubs", test_plugger_aliases_behind_hubs);
    return g_test_run();
}
