/* The etcd v3 JSON gateway's wire (gw-etcd-json.h): request bodies,
 * answers, watch lines. Transactions (GwEtcdTxn) are built here too: they
 * are their request's JSON. */
#include <string.h>

#include "gw-etcd-json.h"
#include "gw-json.h"

G_DEFINE_QUARK(gw - etcd - error - quark, gw_etcd_error)

struct _GwEtcdTxn {
    JsonArray *compare; /* owned */
    JsonArray *success; /* owned */
    JsonArray *failure; /* owned */
};

void
gw_etcd_kv_free(GwEtcdKv *kv)
{
    if (kv == NULL)
        return;
    g_free(kv->key);
    g_clear_pointer(&kv->value, g_bytes_unref);
    g_free(kv);
}

void
gw_etcd_event_free(GwEtcdEvent *event)
{
    if (event == NULL)
        return;
    gw_etcd_kv_free(event->kv);
    g_free(event);
}

/* ---- request bodies ---- */

static gchar *
gw_etcd_json_b64(const void *data, gsize len)
{
    return g_base64_encode(data, len);
}

static gchar *
gw_etcd_json_b64_key(const gchar *key)
{
    return gw_etcd_json_b64(key, strlen(key));
}

static gchar *
gw_etcd_json_b64_bytes(GBytes *value)
{
    gsize len = 0;
    const void *data = value != NULL ? g_bytes_get_data(value, &len) : NULL;
    return gw_etcd_json_b64(data, len);
}

/* The end of the range of keys starting with @prefix: the prefix with its
 * last byte below 0xff incremented and what follows dropped, or "\0"
 * (etcd: every key from the start on) when there is no such byte. */
static gchar *
gw_etcd_json_prefix_end_b64(const gchar *prefix)
{
    gsize len = strlen(prefix);
    g_autofree guint8 *end = g_memdup2(prefix, len + 1);

    while (len > 0) {
        if (end[len - 1] != 0xff) {
            end[len - 1]++;
            return gw_etcd_json_b64(end, len);
        }
        len--;
    }
    return gw_etcd_json_b64("", 1);
}

static void
gw_etcd_json_take_string(JsonObject *obj, const gchar *member, gchar *value)
{
    json_object_set_string_member(obj, member, value);
    g_free(value);
}

static void
gw_etcd_json_set_int(JsonObject *obj, const gchar *member, gint64 value)
{
    /* grpc-gateway takes 64-bit integers as strings, like it writes them */
    gw_etcd_json_take_string(obj, member, g_strdup_printf("%" G_GINT64_FORMAT, value));
}

static gchar *
gw_etcd_json_to_text(JsonObject *obj)
{
    g_autoptr(JsonNode) node = gw_json_node_take_object(obj);
    return json_to_string(node, FALSE);
}

/* The key and, for a prefix, range_end members of a range-like request. */
static void
gw_etcd_json_set_key_range(JsonObject *obj, const gchar *key, gboolean prefix)
{
    /* The empty prefix means every key: key "\0" and range_end "\0". */
    if (prefix && key[0] == '\0')
        gw_etcd_json_take_string(obj, "key", gw_etcd_json_b64("", 1));
    else
        gw_etcd_json_take_string(obj, "key", gw_etcd_json_b64_key(key));
    if (prefix)
        gw_etcd_json_take_string(obj, "range_end", gw_etcd_json_prefix_end_b64(key));
}

gchar *
gw_etcd_json_lease_grant_request(gint64 ttl_s)
{
    JsonObject *obj = json_object_new();
    gw_etcd_json_set_int(obj, "TTL", ttl_s);
    return gw_etcd_json_to_text(obj);
}

gchar *
gw_etcd_json_lease_id_request(gint64 lease_id)
{
    JsonObject *obj = json_object_new();
    gw_etcd_json_set_int(obj, "ID", lease_id);
    return gw_etcd_json_to_text(obj);
}

static JsonObject *
gw_etcd_json_put_object(const gchar *key, GBytes *value, gint64 lease_id)
{
    JsonObject *obj = json_object_new();
    gw_etcd_json_take_string(obj, "key", gw_etcd_json_b64_key(key));
    gw_etcd_json_take_string(obj, "value", gw_etcd_json_b64_bytes(value));
    if (lease_id != 0)
        gw_etcd_json_set_int(obj, "lease", lease_id);
    return obj;
}

gchar *
gw_etcd_json_put_request(const gchar *key, GBytes *value, gint64 lease_id)
{
    return gw_etcd_json_to_text(gw_etcd_json_put_object(key, value, lease_id));
}

gchar *
gw_etcd_json_range_request(const gchar *key, gboolean prefix, gint64 limit)
{
    JsonObject *obj = json_object_new();
    gw_etcd_json_set_key_range(obj, key, prefix);
    if (limit > 0)
        gw_etcd_json_set_int(obj, "limit", limit);
    return gw_etcd_json_to_text(obj);
}

static JsonObject *
gw_etcd_json_delete_object(const gchar *key, gboolean prefix)
{
    JsonObject *obj = json_object_new();
    gw_etcd_json_set_key_range(obj, key, prefix);
    return obj;
}

gchar *
gw_etcd_json_delete_request(const gchar *key, gboolean prefix)
{
    return gw_etcd_json_to_text(gw_etcd_json_delete_object(key, prefix));
}

gchar *
gw_etcd_json_watch_request(const gchar *prefix, gint64 start_revision)
{
    JsonObject *create = json_object_new();
    JsonObject *obj = json_object_new();

    gw_etcd_json_set_key_range(create, prefix, TRUE);
    gw_etcd_json_set_int(create, "start_revision", start_revision);
    json_object_set_object_member(obj, "create_request", create);
    return gw_etcd_json_to_text(obj);
}

GwEtcdTxn *
gw_etcd_txn_new(void)
{
    GwEtcdTxn *txn = g_new0(GwEtcdTxn, 1);
    txn->compare = json_array_new();
    txn->success = json_array_new();
    txn->failure = json_array_new();
    return txn;
}

void
gw_etcd_txn_free(GwEtcdTxn *txn)
{
    if (txn == NULL)
        return;
    json_array_unref(txn->compare);
    json_array_unref(txn->success);
    json_array_unref(txn->failure);
    g_free(txn);
}

/* A compare of @key's @target (CREATE, MOD, VALUE) for equality; the
 * caller sets the member compared. */
static JsonObject *
gw_etcd_txn_add_compare(GwEtcdTxn *txn, const gchar *key, const gchar *target)
{
    JsonObject *cmp = json_object_new();
    gw_etcd_json_take_string(cmp, "key", gw_etcd_json_b64_key(key));
    json_object_set_string_member(cmp, "target", target);
    json_object_set_string_member(cmp, "result", "EQUAL");
    json_array_add_object_element(txn->compare, cmp);
    return cmp;
}

void
gw_etcd_txn_if_absent(GwEtcdTxn *txn, const gchar *key)
{
    gw_etcd_json_set_int(gw_etcd_txn_add_compare(txn, key, "CREATE"), "create_revision", 0);
}

void
gw_etcd_txn_if_mod_revision(GwEtcdTxn *txn, const gchar *key, gint64 revision)
{
    gw_etcd_json_set_int(gw_etcd_txn_add_compare(txn, key, "MOD"), "mod_revision", revision);
}

void
gw_etcd_txn_if_value(GwEtcdTxn *txn, const gchar *key, GBytes *value)
{
    gw_etcd_json_take_string(gw_etcd_txn_add_compare(txn, key, "VALUE"), "value",
                             gw_etcd_json_b64_bytes(value));
}

static void
gw_etcd_txn_add_op(GwEtcdTxn *txn, gboolean on_success, const gchar *kind, JsonObject *request)
{
    JsonObject *op = json_object_new();
    json_object_set_object_member(op, kind, request);
    json_array_add_object_element(on_success ? txn->success : txn->failure, op);
}

void
gw_etcd_txn_put(GwEtcdTxn *txn, gboolean on_success, const gchar *key, GBytes *value,
                gint64 lease_id)
{
    gw_etcd_txn_add_op(txn, on_success, "request_put",
                       gw_etcd_json_put_object(key, value, lease_id));
}

void
gw_etcd_txn_delete(GwEtcdTxn *txn, gboolean on_success, const gchar *key)
{
    gw_etcd_txn_add_op(txn, on_success, "request_delete_range",
                       gw_etcd_json_delete_object(key, FALSE));
}

gchar *
gw_etcd_json_txn_request(const GwEtcdTxn *txn)
{
    JsonObject *obj = json_object_new();
    json_object_set_array_member(obj, "compare", json_array_ref(txn->compare));
    json_object_set_array_member(obj, "success", json_array_ref(txn->success));
    json_object_set_array_member(obj, "failure", json_array_ref(txn->failure));
    return gw_etcd_json_to_text(obj);
}

/* ---- answers ---- */

/* Fails when brackets and braces outside strings nest deeper than
 * GW_ETCD_MAX_JSON_DEPTH (json-glib's parser recurses once per level), or
 * when anything but blanks follows the first object or array. */
static gboolean
gw_etcd_json_check_depth(const gchar *data, gsize len, GError **error)
{
    gboolean in_string = FALSE;
    gboolean ended = FALSE; /* a top-level object or array closed */
    guint depth = 0;

    for (gsize i = 0; i < len; i++) {
        gchar c = data[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = FALSE;
        } else if (depth == 0 && ended && !g_ascii_isspace(c)) {
            /* json-glib takes "{…} {…}" and leaks the first value's
             * nodes; an answer (or one watch line) is one value */
            g_set_error_literal(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL,
                                "bad JSON: more than one value");
            return FALSE;
        } else if (c == '"') {
            in_string = TRUE;
        } else if (c == '{' || c == '[') {
            if (++depth > GW_ETCD_MAX_JSON_DEPTH) {
                g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL,
                            "bad JSON: nested deeper than %d", GW_ETCD_MAX_JSON_DEPTH);
                return FALSE;
            }
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
        if (depth == 0 && (c == '}' || c == ']'))
            ended = TRUE;
    }
    return TRUE;
}

/* etcd's error answer in @root, if it is one: its message and gRPC code. */
static gboolean
gw_etcd_json_is_error(JsonObject *root, const gchar **message, gint *grpc_code)
{
    JsonObject *stream_error = gw_json_get_object(root, "error");
    const gchar *text;

    if (stream_error != NULL) {
        text = gw_json_get_string(stream_error, "message");
        *message = text != NULL && text[0] != '\0' ? text : "(no message)";
        *grpc_code = (gint)gw_json_get_int(stream_error, "grpc_code", -1);
        return TRUE;
    }
    if (!json_object_has_member(root, "error"))
        return FALSE;
    text = gw_json_get_string(root, "message");
    if (text == NULL || text[0] == '\0')
        text = gw_json_get_string(root, "error");
    /* a lease grant answer carries "error": "" when all went well */
    if (text == NULL || text[0] == '\0') {
        if (json_object_has_member(root, "code") || json_object_has_member(root, "message")) {
            *message = "(no message)";
            *grpc_code = (gint)gw_json_get_int(root, "code", -1);
            return TRUE;
        }
        return FALSE;
    }
    *message = text;
    *grpc_code = (gint)gw_json_get_int(root, "code", -1);
    return TRUE;
}

gchar *
gw_etcd_json_printable(const gchar *text)
{
    gchar *out = g_utf8_make_valid(text, -1);

    for (gchar *p = out; *p != '\0'; p++) {
        if ((guchar)*p < 0x20 || *p == 0x7f)
            *p = '?';
    }
    return out;
}

JsonNode *
gw_etcd_json_parse(const gchar *data, gsize len, gint *grpc_code, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) local = NULL;
    JsonNode *root;
    const gchar *message = NULL;
    gint code = -1;

    if (grpc_code != NULL)
        *grpc_code = -1;
    if (data == NULL || len == 0) {
        g_set_error_literal(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL,
                            "bad JSON: the answer is empty");
        return NULL;
    }
    if (!gw_etcd_json_check_depth(data, len, error))
        return NULL;
    if (len > G_MAXSSIZE || !json_parser_load_from_data(parser, data, (gssize)len, &local)) {
        /* json-glib quotes the input it stumbled on */
        g_autofree gchar *shown =
            gw_etcd_json_printable(local != NULL ? local->message : "too long");
        g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL, "bad JSON: %s", shown);
        return NULL;
    }
    root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        g_set_error_literal(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL,
                            "the answer is not a JSON object");
        return NULL;
    }
    if (gw_etcd_json_is_error(json_node_get_object(root), &message, &code)) {
        g_autofree gchar *shown = gw_etcd_json_printable(message);
        if (grpc_code != NULL)
            *grpc_code = code;
        /* etcd: "etcdserver: requested lease not found" (gRPC NotFound) */
        g_set_error(error, GW_ETCD_ERROR,
                    code == GW_ETCD_GRPC_NOT_FOUND && strstr(message, "lease") != NULL
                        ? GW_ETCD_ERROR_LEASE_NOT_FOUND
                        : GW_ETCD_ERROR_SERVER,
                    "etcd error (code %d): %s", code, shown);
        return NULL;
    }
    return json_node_ref(root);
}

/* A stream's answer is wrapped in "result"; a unary one is not. */
static JsonObject *
gw_etcd_json_unwrap(JsonObject *root)
{
    JsonObject *result = gw_json_get_object(root, "result");
    return result != NULL ? result : root;
}

/* A 64-bit integer member: grpc-gateway writes them as strings of digits;
 * a JSON integer is taken too. Missing: @fallback, or an error when
 * @required. */
static gboolean
gw_etcd_json_member_int(JsonObject *obj, const gchar *member, gboolean required, gint64 *out,
                        GError **error)
{
    JsonNode *node = json_object_get_member(obj, member);
    GType type = node != NULL ? json_node_get_value_type(node) : G_TYPE_INVALID;
    g_autoptr(GError) local = NULL;

    *out = 0;
    if (node == NULL || JSON_NODE_HOLDS_NULL(node)) {
        if (!required)
            return TRUE;
        g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL, "member \"%s\" missing", member);
        return FALSE;
    }
    if (JSON_NODE_HOLDS_VALUE(node) && type == G_TYPE_INT64) {
        *out = json_node_get_int(node);
        return TRUE;
    }
    if (JSON_NODE_HOLDS_VALUE(node) && type == G_TYPE_STRING) {
        const gchar *text = json_node_get_string(node);
        if (g_ascii_string_to_signed(text, 10, G_MININT64, G_MAXINT64, out, &local))
            return TRUE;
        g_autofree gchar *shown = gw_etcd_json_printable(local->message);
        g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL,
                    "member \"%s\" is not an integer: %s", member, shown);
        return FALSE;
    }
    g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL,
                "member \"%s\" is not an integer string", member);
    return FALSE;
}

/* A boolean member; missing means FALSE (grpc-gateway leaves false out). */
static gboolean
gw_etcd_json_member_bool(JsonObject *obj, const gchar *member, gboolean *out, GError **error)
{
    JsonNode *node = json_object_get_member(obj, member);

    *out = FALSE;
    if (node == NULL || JSON_NODE_HOLDS_NULL(node))
        return TRUE;
    if (JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == G_TYPE_BOOLEAN) {
        *out = json_node_get_boolean(node);
        return TRUE;
    }
    g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL, "member \"%s\" is not a boolean",
                member);
    return FALSE;
}

/* Decodes standard base64 (padded, as Go writes it) strictly: GLib's
 * decoder skips characters it does not know. */
static GBytes *
gw_etcd_json_decode_b64(const gchar *text, const gchar *member, GError **error)
{
    gsize len = strlen(text);
    gsize pad = 0;
    gsize out_len = 0;

    for (gsize i = 0; i < len; i++) {
        gchar c = text[i];
        gboolean ok = g_ascii_isalnum(c) || c == '+' || c == '/';
        if (c == '=' && i + 2 >= len && len % 4 == 0) {
            pad++;
            ok = TRUE;
        } else if (pad > 0) {
            ok = FALSE;
        }
        if (!ok) {
            g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL,
                        "member \"%s\" is not base64 (byte %" G_GSIZE_FORMAT ")", member, i);
            return NULL;
        }
    }
    if (len % 4 != 0) {
        g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL,
                    "member \"%s\" is not base64 (length %" G_GSIZE_FORMAT ")", member, len);
        return NULL;
    }
    if (len == 0)
        return g_bytes_new(NULL, 0);
    guchar *data = g_base64_decode(text, &out_len);
    return g_bytes_new_take(data, out_len);
}

/* A base64 member as bytes; missing means empty. */
static GBytes *
gw_etcd_json_member_bytes(JsonObject *obj, const gchar *member, GError **error)
{
    JsonNode *node = json_object_get_member(obj, member);

    if (node == NULL || JSON_NODE_HOLDS_NULL(node))
        return g_bytes_new(NULL, 0);
    if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_STRING) {
        g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL,
                    "member \"%s\" is not a base64 string", member);
        return NULL;
    }
    return gw_etcd_json_decode_b64(json_node_get_string(node), member, error);
}

gboolean
gw_etcd_json_parse_header(JsonObject *root, gint64 *revision, GError **error)
{
    JsonObject *obj = gw_etcd_json_unwrap(root);
    JsonObject *header = gw_json_get_object(obj, "header");

    if (header == NULL) {
        g_set_error_literal(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL,
                            "member \"header\" missing or not an object");
        return FALSE;
    }
    if (!gw_etcd_json_member_int(header, "revision", FALSE, revision, error)) {
        g_prefix_error(error, "header: ");
        return FALSE;
    }
    return TRUE;
}

gboolean
gw_etcd_json_parse_lease_grant(JsonObject *root, gint64 *lease_id, gint64 *ttl_s, GError **error)
{
    if (!gw_etcd_json_member_int(root, "ID", TRUE, lease_id, error) ||
        !gw_etcd_json_member_int(root, "TTL", TRUE, ttl_s, error))
        return FALSE;
    if (*lease_id == 0 || *ttl_s <= 0) {
        g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL,
                    "lease id %" G_GINT64_FORMAT " with TTL %" G_GINT64_FORMAT, *lease_id, *ttl_s);
        return FALSE;
    }
    return TRUE;
}

gboolean
gw_etcd_json_parse_keepalive(JsonObject *root, gint64 *ttl_s, GError **error)
{
    JsonObject *obj = gw_etcd_json_unwrap(root);
    gint64 id = 0;

    if (!gw_etcd_json_member_int(obj, "ID", FALSE, &id, error) ||
        !gw_etcd_json_member_int(obj, "TTL", FALSE, ttl_s, error))
        return FALSE;
    if (*ttl_s <= 0) {
        g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_LEASE_NOT_FOUND,
                    "lease %" G_GINT64_FORMAT " not found (expired or revoked)", id);
        return FALSE;
    }
    return TRUE;
}

/* One key-value object of a range answer or a watch event. */
static GwEtcdKv *
gw_etcd_json_parse_kv(JsonObject *obj, GError **error)
{
    g_autoptr(GwEtcdKv) kv = g_new0(GwEtcdKv, 1);
    g_autoptr(GBytes) key = gw_etcd_json_member_bytes(obj, "key", error);

    if (key == NULL)
        return NULL;
    if (g_bytes_get_size(key) == 0) {
        g_set_error_literal(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL,
                            "member \"key\" missing or empty");
        return NULL;
    }
    kv->key_len = g_bytes_get_size(key);
    kv->key = g_malloc(kv->key_len + 1);
    memcpy(kv->key, g_bytes_get_data(key, NULL), kv->key_len);
    kv->key[kv->key_len] = '\0';
    kv->value = gw_etcd_json_member_bytes(obj, "value", error);
    if (kv->value == NULL ||
        !gw_etcd_json_member_int(obj, "create_revision", FALSE, &kv->create_revision, error) ||
        !gw_etcd_json_member_int(obj, "mod_revision", FALSE, &kv->mod_revision, error) ||
        !gw_etcd_json_member_int(obj, "version", FALSE, &kv->version, error) ||
        !gw_etcd_json_member_int(obj, "lease", FALSE, &kv->lease, error))
        return NULL;
    return g_steal_pointer(&kv);
}

/* @member of @obj as an array of objects, each given to @parse; a missing
 * member is an empty array. */
static GPtrArray *
gw_etcd_json_parse_list(JsonObject *obj, const gchar *member,
                        gpointer (*parse)(JsonObject *, GError **), GDestroyNotify free_func,
                        GError **error)
{
    JsonNode *node = json_object_get_member(obj, member);
    g_autoptr(GPtrArray) list = g_ptr_array_new_with_free_func(free_func);

    if (node == NULL || JSON_NODE_HOLDS_NULL(node))
        return g_steal_pointer(&list);
    if (!JSON_NODE_HOLDS_ARRAY(node)) {
        g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL, "member \"%s\" is not an array",
                    member);
        return NULL;
    }
    JsonArray *array = json_node_get_array(node);
    for (guint i = 0; i < json_array_get_length(array); i++) {
        JsonNode *element = json_array_get_element(array, i);
        gpointer item;
        if (!JSON_NODE_HOLDS_OBJECT(element)) {
            g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL, "%s[%u] is not an object",
                        member, i);
            return NULL;
        }
        item = parse(json_node_get_object(element), error);
        if (item == NULL) {
            g_prefix_error(error, "%s[%u]: ", member, i);
            return NULL;
        }
        g_ptr_array_add(list, item);
    }
    return g_steal_pointer(&list);
}

GPtrArray *
gw_etcd_json_parse_range(JsonObject *root, gint64 *revision, gboolean *more, GError **error)
{
    if (!gw_etcd_json_parse_header(root, revision, error) ||
        !gw_etcd_json_member_bool(root, "more", more, error))
        return NULL;
    return gw_etcd_json_parse_list(root, "kvs",
                                   (gpointer(*)(JsonObject *, GError **))gw_etcd_json_parse_kv,
                                   (GDestroyNotify)gw_etcd_kv_free, error);
}

gboolean
gw_etcd_json_parse_delete(JsonObject *root, gint64 *deleted, gint64 *revision, GError **error)
{
    return gw_etcd_json_parse_header(root, revision, error) &&
           gw_etcd_json_member_int(root, "deleted", FALSE, deleted, error);
}

gboolean
gw_etcd_json_parse_txn(JsonObject *root, gboolean *succeeded, gint64 *revision, GError **error)
{
    return gw_etcd_json_parse_header(root, revision, error) &&
           gw_etcd_json_member_bool(root, "succeeded", succeeded, error);
}

/* One event of a watch answer: "type" is left out for a put. */
static GwEtcdEvent *
gw_etcd_json_parse_event(JsonObject *obj, GError **error)
{
    g_autoptr(GwEtcdEvent) event = g_new0(GwEtcdEvent, 1);
    JsonNode *type = json_object_get_member(obj, "type");
    JsonObject *kv = gw_json_get_object(obj, "kv");

    if (type == NULL || JSON_NODE_HOLDS_NULL(type)) {
        event->type = GW_ETCD_EVENT_PUT;
    } else {
        const gchar *name = gw_json_get_string(obj, "type");
        if (g_strcmp0(name, "PUT") == 0) {
            event->type = GW_ETCD_EVENT_PUT;
        } else if (g_strcmp0(name, "DELETE") == 0) {
            event->type = GW_ETCD_EVENT_DELETE;
        } else {
            g_set_error_literal(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL,
                                "member \"type\" is neither \"PUT\" nor \"DELETE\"");
            return NULL;
        }
    }
    if (kv == NULL) {
        g_set_error_literal(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL,
                            "member \"kv\" missing or not an object");
        return NULL;
    }
    event->kv = gw_etcd_json_parse_kv(kv, error);
    if (event->kv == NULL) {
        g_prefix_error(error, "kv: ");
        return NULL;
    }
    if (event->kv->mod_revision <= 0) {
        g_set_error_literal(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL,
                            "kv: member \"mod_revision\" missing or not positive");
        return NULL;
    }
    return g_steal_pointer(&event);
}

gboolean
gw_etcd_json_parse_watch(JsonObject *root, GwEtcdWatchResponse *out, GError **error)
{
    JsonObject *obj = gw_etcd_json_unwrap(root);
    const gchar *reason = gw_json_get_string(obj, "cancel_reason");
    gint64 last = 0;

    memset(out, 0, sizeof(*out));
    if (!gw_etcd_json_parse_header(obj, &out->revision, error) ||
        !gw_etcd_json_member_bool(obj, "created", &out->created, error) ||
        !gw_etcd_json_member_bool(obj, "canceled", &out->canceled, error) ||
        !gw_etcd_json_member_int(obj, "compact_revision", FALSE, &out->compact_revision, error))
        return FALSE;
    out->cancel_reason = reason != NULL && reason[0] != '\0' ? g_strdup(reason) : NULL;
    out->events = gw_etcd_json_parse_list(
        obj, "events", (gpointer(*)(JsonObject *, GError **))gw_etcd_json_parse_event,
        (GDestroyNotify)gw_etcd_event_free, error);
    if (out->events == NULL) {
        gw_etcd_watch_response_clear(out);
        return FALSE;
    }
    /* events come in revision order: anything else would make the resume
     * revision after a broken stream wrong */
    for (guint i = 0; i < out->events->len; i++) {
        GwEtcdEvent *event = g_ptr_array_index(out->events, i);
        if (event->kv->mod_revision < last) {
            g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_PROTOCOL,
                        "events[%u]: revision %" G_GINT64_FORMAT " after %" G_GINT64_FORMAT, i,
                        event->kv->mod_revision, last);
            gw_etcd_watch_response_clear(out);
            return FALSE;
        }
        last = event->kv->mod_revision;
    }
    return TRUE;
}

void
gw_etcd_watch_response_clear(GwEtcdWatchResponse *response)
{
    g_clear_pointer(&response->cancel_reason, g_free);
    g_clear_pointer(&response->events, g_ptr_array_unref);
}

/* ---- the watch stream's lines ---- */

void
gw_etcd_line_buffer_init(GwEtcdLineBuffer *buffer, gsize max)
{
    buffer->partial = g_byte_array_new();
    g_queue_init(&buffer->lines);
    buffer->max = max;
}

void
gw_etcd_line_buffer_clear(GwEtcdLineBuffer *buffer)
{
    g_clear_pointer(&buffer->partial, g_byte_array_unref);
    g_queue_clear_full(&buffer->lines, (GDestroyNotify)g_bytes_unref);
}

gboolean
gw_etcd_line_buffer_push(GwEtcdLineBuffer *buffer, const guint8 *data, gsize len, GError **error)
{
    while (len > 0) {
        const guint8 *nl = memchr(data, '\n', len);
        gsize take = nl != NULL ? (gsize)(nl - data) : len;

        if (buffer->partial->len + take > buffer->max) {
            g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_TOO_LARGE,
                        "a watch stream line longer than %" G_GSIZE_FORMAT " bytes", buffer->max);
            return FALSE;
        }
        g_byte_array_append(buffer->partial, data, (guint)take);
        if (nl == NULL)
            return TRUE;
        if (buffer->partial->len > 0) {
            GByteArray *line = g_steal_pointer(&buffer->partial);
            buffer->partial = g_byte_array_new();
            g_queue_push_tail(&buffer->lines, g_byte_array_free_to_bytes(line));
        }
        data += take + 1;
        len -= take + 1;
    }
    return TRUE;
}

GBytes *
gw_etcd_line_buffer_pop(GwEtcdLineBuffer *buffer)
{
    return g_queue_pop_head(&buffer->lines);
}
