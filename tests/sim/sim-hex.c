#include "sim-hex.h"

#include <gio/gio.h>
#include <string.h>

char *
sim_hex_encode(const guint8 *data, gsize len)
{
    GString *out = g_string_sized_new(2 * len);
    for (gsize i = 0; i < len; i++)
        g_string_append_printf(out, "%02x", data[i]);
    return g_string_free(out, FALSE);
}

gboolean
sim_hex_decode(const char *hex, guint8 *out, gsize len, GError **error)
{
    if (strlen(hex) != 2 * len) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "'%s': expected %" G_GSIZE_FORMAT " hex digits", hex, 2 * len);
        return FALSE;
    }
    for (gsize i = 0; i < len; i++) {
        int hi = g_ascii_xdigit_value(hex[2 * i]);
        int lo = g_ascii_xdigit_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "'%s': not a hex digit at position %" G_GSIZE_FORMAT, hex,
                        2 * i + (hi < 0 ? 1 : 2));
            return FALSE;
        }
        out[i] = (guint8)(hi << 4 | lo);
    }
    return TRUE;
}

GByteArray *
sim_hex_decode_spaced(const char *hex, GError **error)
{
    g_auto(GStrv) parts = g_strsplit(hex, " ", -1);
    g_autofree gchar *digits = g_strjoinv("", parts);
    gsize len = strlen(digits) / 2;
    g_autoptr(GByteArray) out = g_byte_array_sized_new((guint)len);

    g_byte_array_set_size(out, (guint)len);
    if (strlen(digits) % 2 != 0 || !sim_hex_decode(digits, out->data, len, error)) {
        if (error != NULL && *error == NULL)
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "'%s': an odd number of hex digits", hex);
        return NULL;
    }
    return g_steal_pointer(&out);
}
