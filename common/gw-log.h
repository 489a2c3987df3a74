/* Device and VM log messages with journal fields (docs/journal.md). Every
 * message of usbgwd about a device or a VM goes through gw_log_device():
 * besides MESSAGE it carries USBGW_DEVICE=<device id> and USBGW_VM=<vm
 * name> (each only when known), and a MESSAGE_ID for the events admins
 * look up with `journalctl MESSAGE_ID=…`.
 *
 * Where it goes is GLib's writer's choice: its default writer sends the
 * fields to the journal when usbgwd's stderr is the journal
 * (g_log_writer_is_journald(), checked once; systemd's StandardError=
 * journal) and prints the message on stderr as g_message() does otherwise.
 *
 * Threading: any thread. Strings are borrowed for the call. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* MESSAGE_IDs: fixed 128-bit ids, one per kind of event. */
/* A device was given to a VM (libvirt plugged its redirdev in, or it was
 * bound while usbgwd runs without libvirt). */
#define GW_LOG_ID_ATTACH "e7f29cd9c2a049b3b5ebf690ff77db8b"
/* libvirt refused to plug a device into a VM. */
#define GW_LOG_ID_ATTACH_FAILED "ac55b40545ca458aaeda6c8d549950ad"
/* A device was taken from a VM (unbound, released, its VM stopped). */
#define GW_LOG_ID_DETACH "419cf028f82447d989bc16bc3459cadd"
/* The policy denied a device: nobody gets it. */
#define GW_LOG_ID_DENY "9ff45390515c4b7daa4ce48312dee6bf"
/* A process was refused a VM socket: not the VM's QEMU, or a second peer. */
#define GW_LOG_ID_PEER_REFUSED "185f87a10924439087cf0f15d37403a6"
/* A VM may not start: a device a `required` rule asks for is missing. */
#define GW_LOG_ID_VETO "582a234ec95d414f8c68f7679b4837bb"
/* A VM's QEMU connected and got a usbredir session for a device. */
#define GW_LOG_ID_SESSION "f1488283b50d4273ae1fa2ce10fdc2b6"

/* Logs @format for @device_id (nullable) and @vm (nullable) in @domain at
 * @level with @message_id (nullable) and @extra fields (n_extra of them,
 * nullable); the CODE_* fields name the caller. */
void gw_log_device_full(const gchar *domain, GLogLevelFlags level, const gchar *device_id,
                        const gchar *vm, const gchar *message_id, const GLogField *extra,
                        gsize n_extra, const gchar *file, const gchar *line, const gchar *func,
                        const gchar *format, ...) G_GNUC_PRINTF(11, 12);

#define gw_log_device(level, device_id, vm, message_id, ...)                                       \
    gw_log_device_full(G_LOG_DOMAIN, (level), (device_id), (vm), (message_id), NULL, 0, __FILE__,  \
                       G_STRINGIFY(__LINE__), G_STRFUNC, __VA_ARGS__)

G_END_DECLS
