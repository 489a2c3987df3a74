/* libFuzzer target for the etcd client's wire (gateway/cluster/
 * gw-etcd-json.c): the input is what an etcd member, or anything
 * listening at an endpoint, sends. It goes through:
 *
 *   - the watch stream's line buffer, in pieces of sizes the input's first
 *     byte picks, with a small line bound, and every line it returns
 *     through gw_etcd_json_parse() and the watch parser;
 *   - the whole input as one unary answer, through gw_etcd_json_parse()
 *     and every answer parser (lease grant, keepalive, header, range,
 *     delete, txn).
 *
 * Never a crash, a leak, a sanitizer report, a warning or a broken
 * invariant: a failing parser sets an error in GW_ETCD_ERROR (its message
 * without control characters: it is logged); a line is
 * never longer than its bound nor contains '\n'; a range's pairs have a
 * non-empty NUL-terminated key and a value; watch events have a kv with a
 * positive, non-decreasing mod_revision.
 *
 * Run the fuzzer (clang):
 *
 *   CC=clang meson setup /tmp/buildfuzz -Dfuzzing=true -Db_sanitize=address,undefined \
 *       -Db_lundef=false
 *   ninja -C /tmp/buildfuzz tests/fuzz/fuzz-etcd-json
 *   mkdir -p /tmp/fuzz-etcd-json-corpus
 *   /tmp/buildfuzz/tests/fuzz/fuzz-etcd-json /tmp/fuzz-etcd-json-corpus \
 *       tests/fuzz/corpus/etcd-json -dict=tests/fuzz/etcd-json.dict -max_total_time=300
 *
 * A crash leaves crash-<sha1>: fix it and copy it to
 * tests/fuzz/corpus/etcd-json/; fuzz-etcd-json-replay replays the corpus in
 * every build. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw-etcd-json.h"

#include "fuzz-common.h"

/* The line bound of the stream pass: small, so that the fuzzer reaches it. */
#define FUZZ_MAX_LINE 512

static void
fuzz_check_kv(const GwEtcdKv *kv)
{
    FUZZ_CHECK(kv->key != NULL && kv->key_len > 0 && kv->key[kv->key_len] == '\0');
    FUZZ_CHECK(kv->value != NULL);
}

static void
fuzz_watch_line(const gchar *data, gsize len)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) root = gw_etcd_json_parse(data, len, NULL, &error);
    GwEtcdWatchResponse response;
    gint64 last = 0;

    if (root == NULL) {
        FUZZ_CHECK(error != NULL && error->domain == GW_ETCD_ERROR);
        FUZZ_CHECK(fuzz_is_printable(error->message));
        return;
    }
    if (!gw_etcd_json_parse_watch(json_node_get_object(root), &response, &error)) {
        FUZZ_CHECK(error != NULL && error->domain == GW_ETCD_ERROR);
        FUZZ_CHECK(fuzz_is_printable(error->message));
        return;
    }
    for (guint i = 0; i < response.events->len; i++) {
        GwEtcdEvent *event = g_ptr_array_index(response.events, i);
        FUZZ_CHECK(event->type == GW_ETCD_EVENT_PUT || event->type == GW_ETCD_EVENT_DELETE);
        fuzz_check_kv(event->kv);
        FUZZ_CHECK(event->kv->mod_revision > 0 && event->kv->mod_revision >= last);
        last = event->kv->mod_revision;
    }
    gw_etcd_watch_response_clear(&response);
}

static void
fuzz_stream(const uint8_t *data, size_t size)
{
    GwEtcdLineBuffer lines;
    size_t piece = size > 0 ? (size_t)(data[0] % 31) + 1 : 1;
    gboolean ok = TRUE;

    gw_etcd_line_buffer_init(&lines, FUZZ_MAX_LINE);
    for (size_t off = 0; ok && off < size; off += piece) {
        g_autoptr(GError) error = NULL;
        ok = gw_etcd_line_buffer_push(&lines, data + off, MIN(piece, size - off), &error);
        FUZZ_CHECK(ok == (error == NULL));
        FUZZ_CHECK(ok || error->code == GW_ETCD_ERROR_TOO_LARGE);
        for (;;) {
            g_autoptr(GBytes) line = gw_etcd_line_buffer_pop(&lines);
            gsize len = 0;
            const gchar *text;
            if (line == NULL)
                break;
            text = g_bytes_get_data(line, &len);
            FUZZ_CHECK(len > 0 && len <= FUZZ_MAX_LINE && memchr(text, '\n', len) == NULL);
            fuzz_watch_line(text, len);
        }
    }
    gw_etcd_line_buffer_clear(&lines);
}

static void
fuzz_answer(const uint8_t *data, size_t size)
{
    g_autoptr(GError) error = NULL;
    gint code = 0;
    g_autoptr(JsonNode) root = gw_etcd_json_parse((const gchar *)data, size, &code, &error);
    JsonObject *obj;
    gint64 a = 0, b = 0;
    gboolean flag = FALSE;

    if (root == NULL) {
        FUZZ_CHECK(error != NULL && error->domain == GW_ETCD_ERROR);
        FUZZ_CHECK(fuzz_is_printable(error->message));
        return;
    }
    FUZZ_CHECK(code == -1);
    obj = json_node_get_object(root);

#define FUZZ_PARSE(call)                                                                           \
    do {                                                                                           \
        g_autoptr(GError) e = NULL;                                                                \
        gboolean r = (call);                                                                       \
        FUZZ_CHECK(r == (e == NULL));                                                              \
        FUZZ_CHECK(r || e->domain == GW_ETCD_ERROR);                                               \
    } while (0)
    FUZZ_PARSE(gw_etcd_json_parse_lease_grant(obj, &a, &b, &e));
    FUZZ_PARSE(gw_etcd_json_parse_keepalive(obj, &a, &e));
    FUZZ_PARSE(gw_etcd_json_parse_header(obj, &a, &e));
    FUZZ_PARSE(gw_etcd_json_parse_delete(obj, &a, &b, &e));
    FUZZ_PARSE(gw_etcd_json_parse_txn(obj, &flag, &a, &e));
#undef FUZZ_PARSE
    {
        g_autoptr(GError) e = NULL;
        g_autoptr(GPtrArray) kvs = gw_etcd_json_parse_range(obj, &a, &flag, &e);
        FUZZ_CHECK((kvs != NULL) == (e == NULL));
        for (guint i = 0; kvs != NULL && i < kvs->len; i++)
            fuzz_check_kv(g_ptr_array_index(kvs, i));
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gboolean initialized;

    if (!initialized) {
        g_log_set_default_handler(fuzz_log_handler, NULL);
        initialized = TRUE;
    }
    fuzz_stream(data, size);
    fuzz_answer(data, size);
    return 0;
}
