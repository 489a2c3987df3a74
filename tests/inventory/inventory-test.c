/* See inventory-test.h. */
#include "inventory-test.h"

#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>
#include <string.h>

static gboolean
set_flag_cb(gpointer data)
{
    *(gboolean *)data = TRUE;
    return G_SOURCE_REMOVE;
}

void
inventory_test_run_until_nonzero(const guint *counter)
{
    gboolean timed_out = FALSE;
    guint timeout_id = g_timeout_add(INVENTORY_TEST_TIMEOUT_MS, set_flag_cb, &timed_out);

    while (*counter == 0 && !timed_out)
        g_main_context_iteration(NULL, TRUE);
    if (!timed_out)
        g_source_remove(timeout_id);
}

void
inventory_test_drain(void)
{
    while (g_main_context_iteration(NULL, FALSE))
        ;
}

void
inventory_test_sim_command(const gchar *command)
{
    const gchar *path = g_getenv("USBGW_TEST_SIM_CONTROL");
    g_autoptr(GError) error = NULL;
    g_autoptr(GSocketClient) client = g_socket_client_new();
    g_autoptr(GSocketAddress) address = g_unix_socket_address_new(path);
    g_autoptr(GSocketConnection) connection = NULL;
    g_autoptr(GDataInputStream) in = NULL;
    g_autofree gchar *line = NULL;
    g_autofree gchar *request = g_strdup_printf("%s\n", command);

    connection = g_socket_client_connect(client, G_SOCKET_CONNECTABLE(address), NULL, &error);
    g_assert_no_error(error);
    g_output_stream_write_all(g_io_stream_get_output_stream(G_IO_STREAM(connection)), request,
                              strlen(request), NULL, NULL, &error);
    g_assert_no_error(error);
    in = g_data_input_stream_new(g_io_stream_get_input_stream(G_IO_STREAM(connection)));
    /* the reply's last line is "ok[ …]" or "error: …" */
    do {
        g_clear_pointer(&line, g_free);
        line = g_data_input_stream_read_line_utf8(in, NULL, NULL, &error);
        g_assert_no_error(error);
        g_assert_nonnull(line);
    } while (!g_str_has_prefix(line, "ok") && !g_str_has_prefix(line, "error"));
    g_assert_cmpstr(line, ==, "ok");
}

gboolean
inventory_test_skip_without_sim(void)
{
    if (g_getenv("USBGW_TEST_SIM_CONTROL") != NULL)
        return FALSE;
    g_test_skip("needs usbgw-sim (run through meson test)");
    return TRUE;
}
