/* usbredirhost's status codes as GErrors. */
#include "gw-usbredir-error.h"

#include <usbredirhost.h>
#include <usbredirproto.h>

/* the quark's name has dashes, which clang-format would space out */
/* clang-format off */
G_DEFINE_QUARK(usbgw-usbredir-error-quark, gw_usbredir_error)
/* clang-format on */

/* usbredir declares its codes in anonymous enums, which a switch cannot be
 * checked against. Each family is named again here from usbredir's own
 * constants, and the switches below run over these names with no default:
 * -Wswitch flags a name without a case. A code a later usbredir adds must
 * be added here by hand (usbredirhost.h, usbredirproto.h); until then it
 * maps to GW_USBREDIR_ERROR_UNKNOWN. */
typedef enum {
    GW_USBREDIR_READ_OK = 0,
    GW_USBREDIR_READ_IO_ERROR = usbredirhost_read_io_error,
    GW_USBREDIR_READ_PARSE_ERROR = usbredirhost_read_parse_error,
    GW_USBREDIR_READ_DEVICE_REJECTED = usbredirhost_read_device_rejected,
    GW_USBREDIR_READ_DEVICE_LOST = usbredirhost_read_device_lost,
} GwUsbredirReadResult;

typedef enum {
    GW_USBREDIR_WRITE_OK = 0,
    GW_USBREDIR_WRITE_IO_ERROR = usbredirhost_write_io_error,
} GwUsbredirWriteResult;

typedef enum {
    GW_USBREDIR_STATUS_SUCCESS = usb_redir_success,
    GW_USBREDIR_STATUS_CANCELLED = usb_redir_cancelled,
    GW_USBREDIR_STATUS_INVAL = usb_redir_inval,
    GW_USBREDIR_STATUS_IOERROR = usb_redir_ioerror,
    GW_USBREDIR_STATUS_STALL = usb_redir_stall,
    GW_USBREDIR_STATUS_TIMEOUT = usb_redir_timeout,
    GW_USBREDIR_STATUS_BABBLE = usb_redir_babble,
} GwUsbredirStatus;

gboolean
gw_usbredir_read_result_to_error(int rc, GError **error)
{
    switch ((GwUsbredirReadResult)rc) {
    case GW_USBREDIR_READ_OK:
        return TRUE;
    case GW_USBREDIR_READ_IO_ERROR:
        g_set_error_literal(error, GW_USBREDIR_ERROR, GW_USBREDIR_ERROR_PEER_CLOSED,
                            "peer closed the connection");
        return FALSE;
    case GW_USBREDIR_READ_PARSE_ERROR:
        g_set_error_literal(error, GW_USBREDIR_ERROR, GW_USBREDIR_ERROR_PROTOCOL,
                            "peer sent malformed usbredir data");
        return FALSE;
    case GW_USBREDIR_READ_DEVICE_REJECTED:
        g_set_error_literal(error, GW_USBREDIR_ERROR, GW_USBREDIR_ERROR_DEVICE_REJECTED,
                            "peer rejected the device (its filter refused it)");
        return FALSE;
    case GW_USBREDIR_READ_DEVICE_LOST:
        g_set_error_literal(error, GW_USBREDIR_ERROR, GW_USBREDIR_ERROR_DEVICE_LOST, "device lost");
        return FALSE;
    }
    g_set_error(error, GW_USBREDIR_ERROR, GW_USBREDIR_ERROR_UNKNOWN,
                "unknown usbredirhost read result %d", rc);
    return FALSE;
}

gboolean
gw_usbredir_write_result_to_error(int rc, GError **error)
{
    switch ((GwUsbredirWriteResult)rc) {
    case GW_USBREDIR_WRITE_OK:
        return TRUE;
    case GW_USBREDIR_WRITE_IO_ERROR:
        g_set_error_literal(error, GW_USBREDIR_ERROR, GW_USBREDIR_ERROR_WRITE,
                            "write to peer failed");
        return FALSE;
    }
    g_set_error(error, GW_USBREDIR_ERROR, GW_USBREDIR_ERROR_UNKNOWN,
                "unknown usbredirhost write result %d", rc);
    return FALSE;
}

gboolean
gw_usbredir_status_to_error(int status, GError **error)
{
    switch ((GwUsbredirStatus)status) {
    case GW_USBREDIR_STATUS_SUCCESS:
        return TRUE;
    case GW_USBREDIR_STATUS_CANCELLED:
        g_set_error_literal(error, GW_USBREDIR_ERROR, GW_USBREDIR_ERROR_CANCELLED, "cancelled");
        return FALSE;
    case GW_USBREDIR_STATUS_INVAL:
        g_set_error_literal(error, GW_USBREDIR_ERROR, GW_USBREDIR_ERROR_INVALID, "invalid request");
        return FALSE;
    case GW_USBREDIR_STATUS_IOERROR:
        g_set_error_literal(error, GW_USBREDIR_ERROR, GW_USBREDIR_ERROR_DEVICE_IO, "USB I/O error");
        return FALSE;
    case GW_USBREDIR_STATUS_STALL:
        g_set_error_literal(error, GW_USBREDIR_ERROR, GW_USBREDIR_ERROR_STALL,
                            "the device stalled");
        return FALSE;
    case GW_USBREDIR_STATUS_TIMEOUT:
        g_set_error_literal(error, GW_USBREDIR_ERROR, GW_USBREDIR_ERROR_TIMEOUT,
                            "the device did not answer in time");
        return FALSE;
    case GW_USBREDIR_STATUS_BABBLE:
        g_set_error_literal(error, GW_USBREDIR_ERROR, GW_USBREDIR_ERROR_BABBLE,
                            "the device sent more than was asked for (babble)");
        return FALSE;
    }
    g_set_error(error, GW_USBREDIR_ERROR, GW_USBREDIR_ERROR_UNKNOWN, "unknown usbredir status %d",
                status);
    return FALSE;
}
