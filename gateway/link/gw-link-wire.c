/* The gateway link's wire: see gw-link-wire.h. */
#include "gw-link-wire.h"

#include <string.h>

#include "gw-device-json.h"
#include "gw-json.h"

G_DEFINE_QUARK(gw - link - wire - error - quark, gw_link_wire_error)

/* What a frame type allows. */
typedef struct {
    const gchar *name;
    gboolean stream;  /* a stream message (stream id != 0), else link-level (0) */
    guint min_length; /* payload bounds */
    guint max_length;
    gint opener; /* -1: either; 0: OPENER must be clear; 1: must be set */
} GwLinkFrameRule;

/* JSON payloads are at least "{}". */
#define GW_LINK_WIRE_MIN_JSON 2

static const GwLinkFrameRule gw_link_frame_rules[] = {
    [GW_LINK_FRAME_HELLO] = {"HELLO", FALSE, GW_LINK_WIRE_MIN_JSON, GW_LINK_WIRE_MAX_PAYLOAD, 0},
    [GW_LINK_FRAME_REFUSE] = {"REFUSE", FALSE, GW_LINK_WIRE_MIN_JSON, GW_LINK_WIRE_MAX_PAYLOAD, 0},
    [GW_LINK_FRAME_DEVICE_ADD] = {"DEVICE_ADD", FALSE, GW_LINK_WIRE_MIN_JSON,
                                  GW_LINK_WIRE_MAX_PAYLOAD, 0},
    [GW_LINK_FRAME_DEVICE_REMOVE] = {"DEVICE_REMOVE", FALSE, GW_LINK_WIRE_MIN_JSON,
                                     GW_LINK_WIRE_MAX_PAYLOAD, 0},
    [GW_LINK_FRAME_SYNCED] = {"SYNCED", FALSE, GW_LINK_WIRE_MIN_JSON, GW_LINK_WIRE_MAX_PAYLOAD, 0},
    [GW_LINK_FRAME_OPEN] = {"OPEN", TRUE, GW_LINK_WIRE_MIN_JSON, GW_LINK_WIRE_MAX_PAYLOAD, 1},
    [GW_LINK_FRAME_OPENED] = {"OPENED", TRUE, 0, 0, 0},
    [GW_LINK_FRAME_CLOSE] = {"CLOSE", TRUE, GW_LINK_WIRE_MIN_JSON, GW_LINK_WIRE_MAX_PAYLOAD, -1},
    [GW_LINK_FRAME_DATA] = {"DATA", TRUE, 1, GW_LINK_WIRE_MAX_DATA, -1},
    [GW_LINK_FRAME_CREDIT] = {"CREDIT", TRUE, 8, 8, -1},
    [GW_LINK_FRAME_RESUME] = {"RESUME", TRUE, 8, 8, -1},
    [GW_LINK_FRAME_PING] = {"PING", FALSE, 8, 8, 0},
    [GW_LINK_FRAME_PONG] = {"PONG", FALSE, 8, 8, 0},
};

static const GwLinkFrameRule *
gw_link_frame_rule(guint type)
{
    if (type == 0 || type >= G_N_ELEMENTS(gw_link_frame_rules))
        return NULL;
    return &gw_link_frame_rules[type];
}

const gchar *
gw_link_frame_type_name(guint type)
{
    static GPrivate buffer = G_PRIVATE_INIT(g_free);
    const GwLinkFrameRule *rule = gw_link_frame_rule(type);
    gchar *name;

    if (rule != NULL)
        return rule->name;
    name = g_strdup_printf("frame type %u", type);
    g_private_replace(&buffer, name);
    return name;
}

/* ---- Decoder --------------------------------------------------------- */

void
gw_link_decoder_init(GwLinkDecoder *decoder)
{
    memset(decoder, 0, sizeof(*decoder));
}

void
gw_link_decoder_clear(GwLinkDecoder *decoder)
{
    g_free(decoder->payload);
    gw_link_decoder_init(decoder);
}

static gboolean
gw_link_decoder_check_header(GwLinkDecoder *decoder, GError **error)
{
    GwLinkFrame *f = &decoder->frame;
    const guint8 *h = decoder->header;
    const GwLinkFrameRule *rule;

    f->type = h[0];
    f->flags = h[1];
    f->length = (guint16)(h[2] << 8 | h[3]);
    f->stream = (guint32)h[4] << 24 | (guint32)h[5] << 16 | (guint32)h[6] << 8 | (guint32)h[7];
    f->payload = NULL;

    rule = gw_link_frame_rule(f->type);
    if (rule == NULL) {
        g_set_error(error, GW_LINK_WIRE_ERROR, GW_LINK_WIRE_ERROR_PROTOCOL, "unknown frame type %u",
                    f->type);
        return FALSE;
    }
    if ((f->flags & ~GW_LINK_WIRE_FLAG_OPENER) != 0) {
        g_set_error(error, GW_LINK_WIRE_ERROR, GW_LINK_WIRE_ERROR_PROTOCOL,
                    "%s: unknown flags 0x%02x", rule->name, f->flags);
        return FALSE;
    }
    if (rule->stream && f->stream == 0) {
        g_set_error(error, GW_LINK_WIRE_ERROR, GW_LINK_WIRE_ERROR_PROTOCOL,
                    "%s: stream 0 (a stream message needs a stream)", rule->name);
        return FALSE;
    }
    if (!rule->stream && f->stream != 0) {
        g_set_error(error, GW_LINK_WIRE_ERROR, GW_LINK_WIRE_ERROR_PROTOCOL,
                    "%s: stream %u (a link-level message goes on stream 0)", rule->name, f->stream);
        return FALSE;
    }
    if (rule->opener >= 0 && ((f->flags & GW_LINK_WIRE_FLAG_OPENER) != 0) != (rule->opener == 1)) {
        g_set_error(error, GW_LINK_WIRE_ERROR, GW_LINK_WIRE_ERROR_PROTOCOL,
                    "%s: the OPENER flag must be %s", rule->name,
                    rule->opener == 1 ? "set" : "clear");
        return FALSE;
    }
    if (f->length < rule->min_length || f->length > rule->max_length) {
        if (rule->min_length == rule->max_length)
            g_set_error(error, GW_LINK_WIRE_ERROR, GW_LINK_WIRE_ERROR_PROTOCOL,
                        "%s: payload of %u bytes, must be %u", rule->name, f->length,
                        rule->min_length);
        else
            g_set_error(error, GW_LINK_WIRE_ERROR, GW_LINK_WIRE_ERROR_PROTOCOL,
                        "%s: payload of %u bytes, must be %u to %u", rule->name, f->length,
                        rule->min_length, rule->max_length);
        return FALSE;
    }
    return TRUE;
}

GwLinkDecodeResult
gw_link_decoder_feed(GwLinkDecoder *decoder, const guint8 *data, gsize len, gsize *consumed,
                     GwLinkFrame *frame, GError **error)
{
    gsize used = 0;

    *consumed = 0;
    if (decoder->failed) {
        g_set_error_literal(error, GW_LINK_WIRE_ERROR, GW_LINK_WIRE_ERROR_PROTOCOL,
                            "the connection already broke the wire format");
        return GW_LINK_DECODE_ERROR;
    }
    /* the previous split frame was returned: its buffer is done */
    if (decoder->header_got == 0)
        g_clear_pointer(&decoder->payload, g_free);

    if (decoder->header_got < GW_LINK_WIRE_HEADER_LEN) {
        gsize take = MIN(len, GW_LINK_WIRE_HEADER_LEN - decoder->header_got);
        memcpy(decoder->header + decoder->header_got, data, take);
        decoder->header_got += (guint)take;
        used += take;
        if (decoder->header_got < GW_LINK_WIRE_HEADER_LEN) {
            *consumed = used;
            return GW_LINK_DECODE_MORE;
        }
        if (!gw_link_decoder_check_header(decoder, error)) {
            decoder->failed = TRUE;
            *consumed = used;
            return GW_LINK_DECODE_ERROR;
        }
        decoder->payload_got = 0;
        /* the whole payload is at hand: borrow it */
        if (len - used >= decoder->frame.length) {
            *frame = decoder->frame;
            frame->payload = decoder->frame.length > 0 ? data + used : NULL;
            *consumed = used + decoder->frame.length;
            decoder->header_got = 0;
            return GW_LINK_DECODE_FRAME;
        }
        decoder->payload = g_malloc(decoder->frame.length);
    }

    /* a split payload: gather it */
    gsize take = MIN(len - used, (gsize)decoder->frame.length - decoder->payload_got);
    memcpy(decoder->payload + decoder->payload_got, data + used, take);
    decoder->payload_got += (guint)take;
    used += take;
    *consumed = used;
    if (decoder->payload_got < decoder->frame.length)
        return GW_LINK_DECODE_MORE;
    *frame = decoder->frame;
    frame->payload = decoder->payload;
    decoder->header_got = 0;
    return GW_LINK_DECODE_FRAME;
}

/* ---- Message payloads -------------------------------------------------- */

gchar *
gw_link_wire_sanitize(const gchar *text, gsize max)
{
    GString *out = g_string_new(NULL);
    const gchar *p = text;
    const gchar *end = text + strlen(text);

    while (p < end && out->len < max) {
        gunichar c = g_utf8_get_char_validated(p, end - p);
        if (c == (gunichar)-1 || c == (gunichar)-2) {
            g_string_append_c(out, '?');
            p++;
            continue;
        }
        gsize n = (gsize)(g_utf8_next_char(p) - p);
        if (out->len + n > max)
            break;
        if (g_unichar_iscntrl(c) || (!g_unichar_isprint(c) && c != ' '))
            g_string_append_c(out, '?');
        else
            g_string_append_len(out, p, (gssize)n);
        p += n;
    }
    return g_string_free(out, FALSE);
}

/* The payload as a JSON object, or an error naming the message. */
static JsonObject *
gw_link_wire_parse_object(const GwLinkFrame *frame, JsonParser *parser, GError **error)
{
    const gchar *name = gw_link_frame_type_name(frame->type);
    g_autoptr(GError) local = NULL;
    JsonNode *root;

    if (!json_parser_load_from_data(parser, (const gchar *)frame->payload, frame->length, &local)) {
        g_set_error(error, GW_LINK_WIRE_ERROR, GW_LINK_WIRE_ERROR_PROTOCOL, "%s: bad JSON: %s",
                    name, local->message);
        return NULL;
    }
    root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        g_set_error(error, GW_LINK_WIRE_ERROR, GW_LINK_WIRE_ERROR_PROTOCOL,
                    "%s: the payload is not a JSON object", name);
        return NULL;
    }
    return json_node_get_object(root);
}

/* A string member, or an error naming the message and the member. */
static const gchar *
gw_link_wire_member_string(const GwLinkFrame *frame, JsonObject *obj, const gchar *member,
                           GError **error)
{
    const gchar *value = gw_json_get_string(obj, member);
    if (value == NULL)
        g_set_error(error, GW_LINK_WIRE_ERROR, GW_LINK_WIRE_ERROR_PROTOCOL,
                    "%s: member \"%s\" missing or not a string",
                    gw_link_frame_type_name(frame->type), member);
    return value;
}

/* An id (device id) member: a non-empty string. */
static gboolean
gw_link_wire_member_id(const GwLinkFrame *frame, JsonObject *obj, const gchar *member, gchar **out,
                       GError **error)
{
    const gchar *value = gw_link_wire_member_string(frame, obj, member, error);
    if (value == NULL)
        return FALSE;
    if (value[0] == '\0') {
        g_set_error(error, GW_LINK_WIRE_ERROR, GW_LINK_WIRE_ERROR_PROTOCOL,
                    "%s: member \"%s\" is empty", gw_link_frame_type_name(frame->type), member);
        return FALSE;
    }
    *out = g_strdup(value);
    return TRUE;
}

static gboolean
gw_link_wire_is_instance(const gchar *s)
{
    if (strlen(s) != GW_LINK_WIRE_INSTANCE_LEN)
        return FALSE;
    for (const gchar *p = s; *p != '\0'; p++) {
        if (!g_ascii_isdigit(*p) && !(*p >= 'a' && *p <= 'f'))
            return FALSE;
    }
    return TRUE;
}

gboolean
gw_link_wire_parse_hello(const GwLinkFrame *frame, gchar **instance, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonObject *obj = gw_link_wire_parse_object(frame, parser, error);
    JsonNode *version;
    const gchar *value;

    if (obj == NULL)
        return FALSE;
    version = json_object_get_member(obj, "version");
    if (version == NULL || json_node_get_value_type(version) != G_TYPE_INT64) {
        g_set_error_literal(error, GW_LINK_WIRE_ERROR, GW_LINK_WIRE_ERROR_PROTOCOL,
                            "HELLO: member \"version\" missing or not an integer");
        return FALSE;
    }
    if (json_node_get_int(version) != 1) {
        g_set_error(error, GW_LINK_WIRE_ERROR, GW_LINK_WIRE_ERROR_PROTOCOL,
                    "HELLO: version %" G_GINT64_FORMAT " (this gateway speaks version 1)",
                    json_node_get_int(version));
        return FALSE;
    }
    value = gw_link_wire_member_string(frame, obj, "instance", error);
    if (value == NULL)
        return FALSE;
    if (!gw_link_wire_is_instance(value)) {
        g_set_error_literal(error, GW_LINK_WIRE_ERROR, GW_LINK_WIRE_ERROR_PROTOCOL,
                            "HELLO: member \"instance\" is not 16 lower-case hex digits");
        return FALSE;
    }
    *instance = g_strdup(value);
    return TRUE;
}

gboolean
gw_link_wire_parse_reason(const GwLinkFrame *frame, gchar **reason, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonObject *obj = gw_link_wire_parse_object(frame, parser, error);
    const gchar *value;

    if (obj == NULL)
        return FALSE;
    value = gw_link_wire_member_string(frame, obj, "reason", error);
    if (value == NULL)
        return FALSE;
    *reason = gw_link_wire_sanitize(value, GW_LINK_WIRE_MAX_REASON);
    return TRUE;
}

gchar *
gw_link_wire_device_json(const PolicyDevice *device)
{
    g_autoptr(JsonBuilder) builder = json_builder_new();
    g_autoptr(JsonNode) root = NULL;

    gw_device_to_json(device, builder);
    root = json_builder_get_root(builder);
    return json_to_string(root, FALSE);
}

gboolean
gw_link_wire_parse_device_add(const GwLinkFrame *frame, gchar **id, PolicyDevice **device,
                              gchar **device_json, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonObject *obj = gw_link_wire_parse_object(frame, parser, error);
    g_autoptr(GError) local = NULL;
    g_autofree gchar *value = NULL;
    g_autoptr(PolicyDevice) parsed = NULL;
    JsonNode *node;

    if (obj == NULL || !gw_link_wire_member_id(frame, obj, "id", &value, error))
        return FALSE;
    node = json_object_get_member(obj, "device");
    if (node == NULL || !JSON_NODE_HOLDS_OBJECT(node)) {
        g_set_error_literal(error, GW_LINK_WIRE_ERROR, GW_LINK_WIRE_ERROR_PROTOCOL,
                            "DEVICE_ADD: member \"device\" missing or not an object");
        return FALSE;
    }
    parsed = gw_device_from_json(node, "DEVICE_ADD.device", &local);
    if (parsed == NULL) {
        g_set_error(error, GW_LINK_WIRE_ERROR, GW_LINK_WIRE_ERROR_PROTOCOL, "%s", local->message);
        return FALSE;
    }
    *device_json = gw_link_wire_device_json(parsed);
    *device = g_steal_pointer(&parsed);
    *id = g_steal_pointer(&value);
    return TRUE;
}

gboolean
gw_link_wire_parse_device_remove(const GwLinkFrame *frame, gchar **id, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonObject *obj = gw_link_wire_parse_object(frame, parser, error);

    return obj != NULL && gw_link_wire_member_id(frame, obj, "id", id, error);
}

gboolean
gw_link_wire_parse_synced(const GwLinkFrame *frame, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    return gw_link_wire_parse_object(frame, parser, error) != NULL;
}

gboolean
gw_link_wire_parse_open(const GwLinkFrame *frame, gchar **device, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonObject *obj = gw_link_wire_parse_object(frame, parser, error);

    g_autofree gchar *raw = NULL;

    if (obj == NULL || !gw_link_wire_member_id(frame, obj, "device", &raw, error))
        return FALSE;
    /* the id reaches logs and refusal reasons: printable only (every id a
     * gateway serves is, so a changed one matches nothing) */
    *device = gw_link_wire_sanitize(raw, GW_LINK_WIRE_MAX_PAYLOAD);
    return TRUE;
}

guint64
gw_link_wire_parse_u64(const GwLinkFrame *frame)
{
    guint64 value = 0;
    for (guint i = 0; i < 8 && i < frame->length; i++)
        value = value << 8 | frame->payload[i];
    return value;
}

/* ---- Encoders ------------------------------------------------------------ */

void
gw_link_wire_put_header(GByteArray *out, GwLinkFrameType type, guint8 flags, guint16 length,
                        guint32 stream)
{
    guint8 h[GW_LINK_WIRE_HEADER_LEN] = {
        (guint8)type,           flags,
        (guint8)(length >> 8),  (guint8)length,
        (guint8)(stream >> 24), (guint8)(stream >> 16),
        (guint8)(stream >> 8),  (guint8)stream,
    };
    g_byte_array_append(out, h, sizeof(h));
}

/* Appends a frame carrying @obj (taken) as JSON; FALSE when too large. */
static gboolean
gw_link_wire_put_json(GByteArray *out, GwLinkFrameType type, guint8 flags, guint32 stream,
                      JsonObject *obj, GError **error)
{
    g_autoptr(JsonNode) node = gw_json_node_take_object(obj);
    gsize len = 0;
    g_autofree gchar *text = json_to_string(node, FALSE);

    len = strlen(text);
    if (len > GW_LINK_WIRE_MAX_PAYLOAD) {
        g_set_error(error, GW_LINK_WIRE_ERROR, GW_LINK_WIRE_ERROR_TOO_LARGE,
                    "%s: %" G_GSIZE_FORMAT " bytes of JSON, a frame carries at most %u",
                    gw_link_frame_type_name(type), len, (guint)GW_LINK_WIRE_MAX_PAYLOAD);
        return FALSE;
    }
    gw_link_wire_put_header(out, type, flags, (guint16)len, stream);
    g_byte_array_append(out, (const guint8 *)text, (guint)len);
    return TRUE;
}

void
gw_link_wire_put_hello(GByteArray *out, const gchar *instance)
{
    JsonObject *obj = json_object_new();
    json_object_set_int_member(obj, "version", 1);
    json_object_set_string_member(obj, "instance", instance);
    (void)gw_link_wire_put_json(out, GW_LINK_FRAME_HELLO, 0, 0, obj, NULL);
}

/* {"reason": …} with the reason cut to fit. */
static JsonObject *
gw_link_wire_reason_object(const gchar *reason)
{
    JsonObject *obj = json_object_new();
    g_autofree gchar *text =
        gw_link_wire_sanitize(reason != NULL ? reason : "", GW_LINK_WIRE_MAX_REASON);
    json_object_set_string_member(obj, "reason", text);
    return obj;
}

void
gw_link_wire_put_refuse(GByteArray *out, const gchar *reason)
{
    (void)gw_link_wire_put_json(out, GW_LINK_FRAME_REFUSE, 0, 0, gw_link_wire_reason_object(reason),
                                NULL);
}

gboolean
gw_link_wire_put_device_add(GByteArray *out, const gchar *id, const gchar *device_json,
                            GError **error)
{
    g_autoptr(JsonNode) device = json_from_string(device_json, error);
    JsonObject *obj;

    if (device == NULL)
        return FALSE;
    obj = json_object_new();
    json_object_set_string_member(obj, "id", id);
    json_object_set_member(obj, "device", g_steal_pointer(&device));
    return gw_link_wire_put_json(out, GW_LINK_FRAME_DEVICE_ADD, 0, 0, obj, error);
}

gboolean
gw_link_wire_put_device_remove(GByteArray *out, const gchar *id, GError **error)
{
    JsonObject *obj = json_object_new();
    json_object_set_string_member(obj, "id", id);
    return gw_link_wire_put_json(out, GW_LINK_FRAME_DEVICE_REMOVE, 0, 0, obj, error);
}

void
gw_link_wire_put_synced(GByteArray *out)
{
    (void)gw_link_wire_put_json(out, GW_LINK_FRAME_SYNCED, 0, 0, json_object_new(), NULL);
}

gboolean
gw_link_wire_put_open(GByteArray *out, guint32 stream, const gchar *device, GError **error)
{
    JsonObject *obj = json_object_new();
    json_object_set_string_member(obj, "device", device);
    return gw_link_wire_put_json(out, GW_LINK_FRAME_OPEN, GW_LINK_WIRE_FLAG_OPENER, stream, obj,
                                 error);
}

void
gw_link_wire_put_opened(GByteArray *out, guint8 flags, guint32 stream)
{
    gw_link_wire_put_header(out, GW_LINK_FRAME_OPENED, flags, 0, stream);
}

void
gw_link_wire_put_close(GByteArray *out, guint8 flags, guint32 stream, const gchar *reason)
{
    (void)gw_link_wire_put_json(out, GW_LINK_FRAME_CLOSE, flags, stream,
                                gw_link_wire_reason_object(reason), NULL);
}

void
gw_link_wire_put_data(GByteArray *out, guint8 flags, guint32 stream, const guint8 *data, gsize len)
{
    g_return_if_fail(len > 0 && len <= GW_LINK_WIRE_MAX_DATA);
    gw_link_wire_put_header(out, GW_LINK_FRAME_DATA, flags, (guint16)len, stream);
    g_byte_array_append(out, data, (guint)len);
}

void
gw_link_wire_put_u64(GByteArray *out, GwLinkFrameType type, guint8 flags, guint32 stream,
                     guint64 value)
{
    guint8 v[8];
    for (guint i = 0; i < 8; i++)
        v[i] = (guint8)(value >> (56 - 8 * i));
    gw_link_wire_put_header(out, type, flags, sizeof(v), stream);
    g_byte_array_append(out, v, sizeof(v));
}

void
gw_link_wire_put_ping(GByteArray *out, GwLinkFrameType type, const guint8 payload[8])
{
    gw_link_wire_put_header(out, type, 0, 8, 0);
    g_byte_array_append(out, payload, 8);
}
