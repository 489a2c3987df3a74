/* Device and VM log messages with journal fields (gw-log.h). */
#include "gw-log.h"

/* syslog's priorities, as GLib gives them to the journal */
static const gchar *
gw_log_priority(GLogLevelFlags level)
{
    if (level & G_LOG_LEVEL_ERROR)
        return "3";
    if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING))
        return "4";
    if (level & G_LOG_LEVEL_MESSAGE)
        return "5";
    if (level & G_LOG_LEVEL_INFO)
        return "6";
    return "7";
}

/* The most fields one message has: MESSAGE, PRIORITY, GLIB_DOMAIN, the
 * three CODE_ ones, USBGW_DEVICE, USBGW_VM, MESSAGE_ID. */
#define GW_LOG_FIXED_FIELDS 9
/* Extra fields a caller may add (the audit's). */
#define GW_LOG_MAX_EXTRA 8

void
gw_log_device_full(const gchar *domain, GLogLevelFlags level, const gchar *device_id,
                   const gchar *vm, const gchar *message_id, const GLogField *extra, gsize n_extra,
                   const gchar *file, const gchar *line, const gchar *func, const gchar *format,
                   ...)
{
    GLogField fields[GW_LOG_FIXED_FIELDS + GW_LOG_MAX_EXTRA];
    g_autofree gchar *message = NULL;
    gsize n = 0;
    va_list args;

    va_start(args, format);
    message = g_strdup_vprintf(format, args);
    va_end(args);
    fields[n++] = (GLogField){"MESSAGE", message, -1};
    fields[n++] = (GLogField){"PRIORITY", gw_log_priority(level), -1};
    if (domain != NULL)
        fields[n++] = (GLogField){"GLIB_DOMAIN", domain, -1};
    fields[n++] = (GLogField){"CODE_FILE", file, -1};
    fields[n++] = (GLogField){"CODE_LINE", line, -1};
    fields[n++] = (GLogField){"CODE_FUNC", func, -1};
    if (device_id != NULL && device_id[0] != '\0')
        fields[n++] = (GLogField){"USBGW_DEVICE", device_id, -1};
    if (vm != NULL && vm[0] != '\0')
        fields[n++] = (GLogField){"USBGW_VM", vm, -1};
    if (message_id != NULL)
        fields[n++] = (GLogField){"MESSAGE_ID", message_id, -1};
    for (gsize i = 0; i < n_extra && i < GW_LOG_MAX_EXTRA; i++)
        fields[n++] = extra[i];
    g_log_structured_array(level, fields, n);
}
