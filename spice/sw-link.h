/* sw-link: the worker's end of the socketpair to usbgwd, carrying the
 * frames of sw-frame.h.
 *
 * Ownership: the link owns the fd. Threading: the main context's thread.
 * Callbacks are never called from inside sw_link_send() or
 * sw_link_set_reading(), so callers may hold their own state in any shape
 * while calling those. */
#pragma once

#include <gio/gio.h>

#include "sw-frame.h"

typedef struct SwLink SwLink;

typedef struct {
    /* One whole frame from usbgwd (header checked, channel not). Return
     * FALSE with error to close the link with that error. */
    gboolean (*frame)(const SwFrameHeader *header, const guint8 *payload, gpointer user_data,
                      GError **error);
    /* Optional: the frames of one read (or of one resumption after a
     * pause) were all handed to frame(). Called from the link's own fd
     * watch or idle callback, never from inside another library's call,
     * so it may call into spice-server. */
    void (*frames_done)(gpointer user_data);
    /* The queue of frames to usbgwd became empty after
     * sw_link_notify_when_drained(). */
    void (*drained)(gpointer user_data);
    /* The link is gone: error is NULL on an orderly EOF from usbgwd. No
     * callback follows. */
    void (*closed)(const GError *error, gpointer user_data);
} SwLinkCallbacks;

SwLink *sw_link_new(int fd, const SwLinkCallbacks *callbacks, gpointer user_data);
void sw_link_free(SwLink *link);

/* Queues one frame (payload <= SW_FRAME_MAX_PAYLOAD). Never blocks; the
 * caller bounds the queue with sw_link_get_queued(). */
void sw_link_send(SwLink *link, SwFrameType type, guint channel, const guint8 *payload,
                  gsize length);
gsize sw_link_get_queued(SwLink *link);
/* Asks for one callbacks->drained once the queue is empty. */
void sw_link_notify_when_drained(SwLink *link);

/* Stops or resumes taking frames from usbgwd (back-pressure). */
void sw_link_set_reading(SwLink *link, gboolean reading);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(SwLink, sw_link_free)
