/* Small json-glib helpers (json-glib 1.6 lacks the object and array
 * _with_default getters): NULL when the member is missing or of another
 * type, so input from a socket or a file can be checked without aborts. */
#pragma once

#include <json-glib/json-glib.h>

static inline JsonObject *
gw_json_get_object(JsonObject *obj, const gchar *member)
{
    JsonNode *node = obj != NULL ? json_object_get_member(obj, member) : NULL;
    return node != NULL && JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
}

static inline JsonArray *
gw_json_get_array(JsonObject *obj, const gchar *member)
{
    JsonNode *node = obj != NULL ? json_object_get_member(obj, member) : NULL;
    return node != NULL && JSON_NODE_HOLDS_ARRAY(node) ? json_node_get_array(node) : NULL;
}

static inline const gchar *
gw_json_get_string(JsonObject *obj, const gchar *member)
{
    JsonNode *node = obj != NULL ? json_object_get_member(obj, member) : NULL;
    return node != NULL && json_node_get_value_type(node) == G_TYPE_STRING
               ? json_node_get_string(node)
               : NULL;
}

/* An integer member, or @fallback when it is missing or not an integer
 * (json-glib's _with_default getter is critical on an object or array). */
static inline gint64
gw_json_get_int(JsonObject *obj, const gchar *member, gint64 fallback)
{
    JsonNode *node = obj != NULL ? json_object_get_member(obj, member) : NULL;
    return node != NULL && json_node_get_value_type(node) == G_TYPE_INT64 ? json_node_get_int(node)
                                                                          : fallback;
}

/* A new object node that adopts @obj. json_node_init_object() takes a
 * reference of its own: given a new object, it leaks the caller's. */
static inline JsonNode *
gw_json_node_take_object(JsonObject *obj)
{
    JsonNode *node = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(node, obj);
    return node;
}
