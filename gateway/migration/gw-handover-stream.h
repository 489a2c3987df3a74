/* GwHandoverStream: follows the usbredir packets of the stream a session
 * writes to its peer, so a live migration's handover knows which answers
 * the source may have taken after it stopped (docs/migration.md, "What
 * the source takes after it stopped").
 *
 * A QEMU that stops for a migration's last phase can still read its
 * chardev once after its device state was saved: its main loop polled
 * the socket while the VM ran and dispatches the read afterwards. The
 * answers it takes then are lost to the destination, whose guest waits
 * for them (usb-redir's "already in flight" packets). The stream records
 * where each answer QEMU matches to a request by id lies (control and
 * bulk packets, interrupt packets of OUT endpoints, configuration and
 * alternate setting status), so those the source took late can be sent
 * to the destination again; QEMU ignores an answer whose request it does
 * not hold.
 *
 * Offsets are those of the session's stream (bytes written to the peer).
 * Threading: none of its own; used under its owner's lock. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _GwHandoverStream GwHandoverStream;

typedef struct {
    guint64 start; /* offset of the packet's first byte */
    guint64 end;   /* offset after its last byte */
} GwHandoverRange;

GwHandoverStream *gw_handover_stream_new(void);
void gw_handover_stream_free(GwHandoverStream *stream);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwHandoverStream, gw_handover_stream_free)

/* The peer's hello said whether both ends use 64-bit ids: the headers
 * after the first packet (the hello, with 32-bit ids) are 16 bytes long,
 * or 12. Until this is known the stream cannot follow those packets. */
void gw_handover_stream_set_ids64(GwHandoverStream *stream, gboolean ids64);

/* @len bytes written to the peer at @offset, in the stream's order. */
void gw_handover_stream_append(GwHandoverStream *stream, guint64 offset, const guint8 *data,
                               gsize len);

/* Records every packet that ends from now on; stopping forgets them. */
void gw_handover_stream_record(GwHandoverStream *stream, gboolean record);

/* Forgets the records of packets that start before @offset (their bytes
 * are no longer kept). */
void gw_handover_stream_forget_before(GwHandoverStream *stream, guint64 offset);

/* Appends to @answers (GwHandoverRange) the answers recorded that lie
 * wholly in [@from, @to). FALSE, and nothing appended, when @to is not
 * known to fall between two packets (the stream could not follow, or
 * @to splits a packet): then no answer can be re-sent without breaking
 * the destination's stream. */
gboolean gw_handover_stream_answers(GwHandoverStream *stream, guint64 from, guint64 to,
                                    GArray *answers);

/* Whether @data (the first @len bytes a peer sent) hold enough of its
 * usbredir hello to say if it has 64-bit ids: TRUE with *@ids64 set. */
gboolean gw_handover_hello_ids64(const guint8 *data, gsize len, gboolean *ids64);
/* The bytes of a hello gw_handover_hello_ids64() needs at most. */
#define GW_HANDOVER_HELLO_CAPS_END (12 + 64 + 4)

G_END_DECLS
