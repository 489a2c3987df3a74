/* Packet boundaries and answers in the stream a session writes to its
 * peer. */
#include "gw-handover-stream.h"

#include <string.h>
#include <usbredirproto.h>

/* A header: type, length, id (32 or 64 bits); then the first byte of the
 * type header, which is the endpoint for data packets. */
#define GW_HANDOVER_HEADER_MAX 16
/* More than any packet usbredirhost writes (a bulk packet carries at most
 * 128 MiB); a longer one means the stream was not followed right. */
#define GW_HANDOVER_PACKET_MAX (256u * 1024 * 1024)

typedef struct {
    guint64 start;
    guint64 end;
    gboolean answer;
} GwHandoverPacket;

struct _GwHandoverStream {
    guint8 head[GW_HANDOVER_HEADER_MAX + 1];
    guint head_have;   /* bytes of head collected */
    guint head_need;   /* bytes of head the current packet has */
    guint header_len;  /* of the current packet: 12 or 16 */
    guint64 body_left; /* bytes of the current packet after its head */
    guint64 start;     /* offset of the current packet */
    guint64 offset;    /* offset after the last byte appended */
    guint64 packets;   /* packets seen */
    gboolean ids64_known;
    gboolean ids64;
    gboolean lost; /* a header made no sense: no boundary is known since */
    gboolean recording;
    GArray *records; /* GwHandoverPacket, while recording */
};

GwHandoverStream *
gw_handover_stream_new(void)
{
    GwHandoverStream *stream = g_new0(GwHandoverStream, 1);
    stream->records = g_array_new(FALSE, FALSE, sizeof(GwHandoverPacket));
    return stream;
}

void
gw_handover_stream_free(GwHandoverStream *stream)
{
    if (stream == NULL)
        return;
    g_array_unref(stream->records);
    g_free(stream);
}

void
gw_handover_stream_set_ids64(GwHandoverStream *stream, gboolean ids64)
{
    stream->ids64_known = TRUE;
    stream->ids64 = ids64;
}

void
gw_handover_stream_record(GwHandoverStream *stream, gboolean record)
{
    stream->recording = record;
    if (!record)
        g_array_set_size(stream->records, 0);
}

void
gw_handover_stream_forget_before(GwHandoverStream *stream, guint64 offset)
{
    guint n = 0;

    while (n < stream->records->len &&
           g_array_index(stream->records, GwHandoverPacket, n).start < offset)
        n++;
    if (n > 0)
        g_array_remove_range(stream->records, 0, n);
}

/* An answer QEMU looks its request up for by id (hw/usb/redirect.c's
 * packet handlers); interrupt packets of IN endpoints are buffered
 * reports, not answers. */
static gboolean
gw_handover_is_answer(guint32 type, guint8 endpoint)
{
    switch (type) {
    case usb_redir_control_packet:
    case usb_redir_bulk_packet:
    case usb_redir_configuration_status:
    case usb_redir_alt_setting_status:
        return TRUE;
    case usb_redir_interrupt_packet:
        return (endpoint & 0x80) == 0;
    default:
        return FALSE;
    }
}

static void
gw_handover_stream_packet_done(GwHandoverStream *stream)
{
    guint32 type;

    memcpy(&type, stream->head, sizeof(type));
    if (stream->recording) {
        GwHandoverPacket packet = {
            .start = stream->start,
            .end = stream->offset,
            .answer = gw_handover_is_answer(type, stream->head_need > stream->header_len
                                                      ? stream->head[stream->header_len]
                                                      : 0),
        };
        g_array_append_val(stream->records, packet);
    }
    stream->packets++;
    stream->head_have = 0;
    stream->head_need = 0;
    stream->body_left = 0;
}

/* The header of the current packet is complete: how much follows. */
static gboolean
gw_handover_stream_header_done(GwHandoverStream *stream)
{
    guint32 length;

    memcpy(&length, stream->head + 4, sizeof(length));
    if (length > GW_HANDOVER_PACKET_MAX)
        return FALSE;
    /* the type header's first byte, when there is one */
    stream->head_need = stream->header_len + (length > 0 ? 1 : 0);
    stream->body_left = length - (stream->head_need - stream->header_len);
    return TRUE;
}

void
gw_handover_stream_append(GwHandoverStream *stream, guint64 offset, const guint8 *data, gsize len)
{
    /* bytes sent again to a migration's destination come in between: the
     * stream goes on at the new offset */
    stream->offset = offset;
    while (len > 0 && !stream->lost) {
        if (stream->head_have == 0 && stream->body_left == 0) {
            stream->start = stream->offset;
            if (stream->packets > 0 && !stream->ids64_known) {
                stream->lost = TRUE;
                break;
            }
            /* the first packet is the hello, with 32-bit ids */
            stream->header_len = stream->packets > 0 && stream->ids64 ? 16 : 12;
            stream->head_need = stream->header_len;
        }
        if (stream->head_have < stream->head_need) {
            gsize take = MIN(len, (gsize)(stream->head_need - stream->head_have));
            memcpy(stream->head + stream->head_have, data, take);
            stream->head_have += (guint)take;
            stream->offset += take;
            data += take;
            len -= take;
            if (stream->head_have == stream->header_len &&
                stream->head_need == stream->header_len &&
                !gw_handover_stream_header_done(stream)) {
                stream->lost = TRUE;
                break;
            }
            if (stream->head_have == stream->head_need && stream->body_left == 0)
                gw_handover_stream_packet_done(stream);
            continue;
        }
        gsize take = (gsize)MIN((guint64)len, stream->body_left);
        stream->body_left -= take;
        stream->offset += take;
        data += take;
        len -= take;
        if (stream->body_left == 0)
            gw_handover_stream_packet_done(stream);
    }
    if (stream->lost)
        g_array_set_size(stream->records, 0);
}

/* Whether @offset falls between two packets of the records or at the
 * stream's current boundary. */
static gboolean
gw_handover_stream_is_boundary(GwHandoverStream *stream, guint64 offset)
{
    if (offset == stream->offset && stream->head_have == 0 && stream->body_left == 0)
        return TRUE;
    for (guint i = 0; i < stream->records->len; i++) {
        const GwHandoverPacket *packet = &g_array_index(stream->records, GwHandoverPacket, i);
        if (offset == packet->start || offset == packet->end)
            return TRUE;
    }
    return FALSE;
}

gboolean
gw_handover_stream_answers(GwHandoverStream *stream, guint64 from, guint64 to, GArray *answers)
{
    if (stream->lost || !gw_handover_stream_is_boundary(stream, to))
        return FALSE;
    for (guint i = 0; i < stream->records->len; i++) {
        const GwHandoverPacket *packet = &g_array_index(stream->records, GwHandoverPacket, i);
        if (packet->answer && packet->start >= from && packet->end <= to) {
            GwHandoverRange range = {packet->start, packet->end};
            g_array_append_val(answers, range);
        }
    }
    return TRUE;
}

gboolean
gw_handover_hello_ids64(const guint8 *data, gsize len, gboolean *ids64)
{
    guint32 type, length, caps;

    if (len < 8)
        return FALSE;
    memcpy(&type, data, sizeof(type));
    memcpy(&length, data + 4, sizeof(length));
    if (type != usb_redir_hello) {
        /* not a hello: nothing to follow with */
        *ids64 = FALSE;
        return TRUE;
    }
    if (length < sizeof(struct usb_redir_hello_header) + sizeof(caps)) {
        /* no capabilities */
        *ids64 = FALSE;
        return TRUE;
    }
    if (len < GW_HANDOVER_HELLO_CAPS_END)
        return FALSE;
    memcpy(&caps, data + 12 + sizeof(struct usb_redir_hello_header), sizeof(caps));
    *ids64 = (caps & (1u << usb_redir_cap_64bits_ids)) != 0;
    return TRUE;
}
