/* GwLinkBuffer: a stream's bytes in chunks (gw-link-private.h). */
#include <string.h>

#include "gw-link-private.h"

/* Size of a buffer chunk made for a small first write and for later ones. */
#define GW_LINK_CHUNK_SMALL 2048
#define GW_LINK_CHUNK_LARGE GW_LINK_MAX_DATA

void
gw_link_buffer_append(GwLinkBuffer *buf, const guint8 *data, gsize len)
{
    GwLinkChunk *tail = g_queue_peek_tail(&buf->chunks);

    buf->size += len;
    if (tail != NULL && tail->cap > tail->len) {
        gsize take = MIN(len, tail->cap - tail->len);
        memcpy(tail->data + tail->len, data, take);
        tail->len += take;
        data += take;
        len -= take;
    }
    if (len == 0)
        return;
    gsize cap = MAX(len, buf->chunks.length == 0 ? GW_LINK_CHUNK_SMALL : GW_LINK_CHUNK_LARGE);
    GwLinkChunk *chunk = g_malloc(sizeof(GwLinkChunk) + cap);
    chunk->len = len;
    chunk->cap = cap;
    memcpy(chunk->data, data, len);
    g_queue_push_tail(&buf->chunks, chunk);
}

/* Copies @len bytes from @offset (from the first byte held) to @out. */
void
gw_link_buffer_peek(GwLinkBuffer *buf, gsize offset, guint8 *out, gsize len)
{
    offset += buf->head_off;
    for (GList *l = buf->chunks.head; l != NULL && len > 0; l = l->next) {
        GwLinkChunk *chunk = l->data;
        if (offset >= chunk->len) {
            offset -= chunk->len;
            continue;
        }
        gsize take = MIN(len, chunk->len - offset);
        memcpy(out, chunk->data + offset, take);
        out += take;
        len -= take;
        offset = 0;
    }
}

void
gw_link_buffer_drop(GwLinkBuffer *buf, gsize len)
{
    len = MIN(len, buf->size);
    buf->size -= len;
    while (len > 0) {
        GwLinkChunk *chunk = g_queue_peek_head(&buf->chunks);
        gsize take = MIN(len, chunk->len - buf->head_off);
        buf->head_off += take;
        len -= take;
        if (buf->head_off == chunk->len) {
            g_free(g_queue_pop_head(&buf->chunks));
            buf->head_off = 0;
        }
    }
}

void
gw_link_buffer_clear(GwLinkBuffer *buf)
{
    g_queue_clear_full(&buf->chunks, g_free);
    buf->head_off = 0;
    buf->size = 0;
}
