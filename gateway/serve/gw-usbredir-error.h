/* usbredirhost's status codes as GErrors: one domain, one code per status,
 * so that a caller decides on the code and logs the message.
 *
 * Three families of codes, all plain ints in usbredir's API:
 * - usbredirhost_read_guest_data(): 0 or usbredirhost_read_* (io, parse,
 *   device rejected, device lost);
 * - usbredirhost_write_guest_data(): 0 or usbredirhost_write_io_error;
 * - usbredirhost_set_device(): a usbredirproto.h status (usb_redir_success,
 *   usb_redir_cancelled, usb_redir_inval, usb_redir_ioerror,
 *   usb_redir_stall, usb_redir_timeout, usb_redir_babble).
 * A value none of these names (a newer usbredir) maps to
 * GW_USBREDIR_ERROR_UNKNOWN with the number in the message.
 *
 * Pure functions, any thread. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define GW_USBREDIR_ERROR (gw_usbredir_error_quark())
GQuark gw_usbredir_error_quark(void);

typedef enum {
    GW_USBREDIR_ERROR_PEER_CLOSED,     /* read: the peer closed the socket, or it failed */
    GW_USBREDIR_ERROR_PROTOCOL,        /* read: the peer sent malformed usbredir data */
    GW_USBREDIR_ERROR_DEVICE_REJECTED, /* read: the peer's filter refused the device */
    GW_USBREDIR_ERROR_DEVICE_LOST,     /* read: the device went; usbredirhost let it go */
    GW_USBREDIR_ERROR_WRITE,           /* write: the peer's socket failed */
    GW_USBREDIR_ERROR_CANCELLED,       /* usb_redir_cancelled */
    GW_USBREDIR_ERROR_INVALID,         /* usb_redir_inval */
    GW_USBREDIR_ERROR_DEVICE_IO,       /* usb_redir_ioerror: the device could not be used */
    GW_USBREDIR_ERROR_STALL,           /* usb_redir_stall */
    GW_USBREDIR_ERROR_TIMEOUT,         /* usb_redir_timeout */
    GW_USBREDIR_ERROR_BABBLE,          /* usb_redir_babble */
    GW_USBREDIR_ERROR_UNKNOWN,         /* a code this build does not know */
} GwUsbredirError;

/* TRUE for 0; else sets @error from a usbredirhost_read_guest_data()
 * result and returns FALSE. */
gboolean gw_usbredir_read_result_to_error(int rc, GError **error);
/* TRUE for 0; else sets @error from a usbredirhost_write_guest_data()
 * result and returns FALSE. */
gboolean gw_usbredir_write_result_to_error(int rc, GError **error);
/* TRUE for usb_redir_success; else sets @error from a usbredirproto.h
 * status (usbredirhost_set_device()) and returns FALSE. */
gboolean gw_usbredir_status_to_error(int status, GError **error);

G_END_DECLS
