/* gw-libvirt against libvirt's in-process test driver: test:///default (one
 * running domain "test", shared by every connection of this process) and
 * test:///FILE. No libvirtd. The test driver cannot hot-plug devices, so
 * attach and detach are checked for what they do before that call (lookup,
 * state, "already attached", argument checks) and for how they report the
 * driver's refusal; the real hot-plug is checked by hand against
 * qemu:///system (tests/libvirt-unit/README.md). */
#include <glib/gstdio.h>
#include <sys/stat.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "gw-libvirt.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC(virConnect, virConnectClose)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(virDomain, virDomainFree)

#define TEST_URI        "test:///default"
#define TEST_DOMAIN     "test" /* predefined, running */
#define TEST_UUID       "6695eb01-f6a4-8304-79aa-97f2502e193f"
#define TEST_UNKNOWN    "00000000-0000-4000-8000-000000000000"
#define TEST_TIMEOUT_MS 5000
#define TEST_TICK_MS    10
/* Slack on top of a backoff delay before a retry must have happened. */
#define TEST_BACKOFF_SLACK_MS 1500
/* gw_libvirt_free() mid-backoff must not wait for the retry. */
#define TEST_FREE_FAST_MS 300

static GThread *test_main_thread;
/* The test's own connection: keeps test:///default's state alive for the
 * whole run and defines / starts / stops domains. */
static virConnectPtr test_conn;

static gboolean
test_tick(gpointer data)
{
    return G_SOURCE_CONTINUE;
}

/* Iterates the default main context until @cond holds or @ms pass. */
#define TEST_WAIT_UNTIL(cond, ms)                                                                  \
    do {                                                                                           \
        gint64 deadline_ = g_get_monotonic_time() + (gint64)(ms)*G_TIME_SPAN_MILLISECOND;          \
        guint tick_ = g_timeout_add(TEST_TICK_MS, test_tick, NULL);                                \
        while (!(cond) && g_get_monotonic_time() < deadline_)                                      \
            g_main_context_iteration(NULL, TRUE);                                                  \
        g_source_remove(tick_);                                                                    \
        g_assert_true(cond);                                                                       \
    } while (0)

/* Lets queued idles run without waiting for more. */
static void
test_drain(guint ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)ms * G_TIME_SPAN_MILLISECOND;
    guint tick = g_timeout_add(TEST_TICK_MS, test_tick, NULL);

    while (g_get_monotonic_time() < deadline)
        g_main_context_iteration(NULL, TRUE);
    g_source_remove(tick);
}

/* ---- handler recorder ---------------------------------------------------- */

typedef struct {
    guint up;
    guint down;
    GPtrArray *events;    /* "started NAME UUID", "stopped …", "removed NAME UUID ALIAS" */
    GPtrArray *inspected; /* "NAME wishes=W usb=BUS" (test_describe_domain) */
} TestRecorder;

static void
test_assert_main_thread(void)
{
    g_assert_true(g_thread_self() == test_main_thread);
}

static void
test_on_connected(gboolean up, gpointer user_data)
{
    TestRecorder *rec = user_data;
    test_assert_main_thread();
    if (up)
        rec->up++;
    else
        rec->down++;
}

static void
test_on_started(const gchar *name, const gchar *uuid, gpointer user_data)
{
    TestRecorder *rec = user_data;
    test_assert_main_thread();
    g_ptr_array_add(rec->events, g_strdup_printf("started %s %s", name, uuid));
}

static void
test_on_stopped(const gchar *name, const gchar *uuid, gpointer user_data)
{
    TestRecorder *rec = user_data;
    test_assert_main_thread();
    g_ptr_array_add(rec->events, g_strdup_printf("stopped %s %s", name, uuid));
}

static void
test_on_removed(const gchar *name, const gchar *uuid, const gchar *alias, gpointer user_data)
{
    TestRecorder *rec = user_data;
    test_assert_main_thread();
    g_ptr_array_add(rec->events, g_strdup_printf("removed %s %s %s", name, uuid, alias));
}

/* "NAME wishes=pool "a"|id 0529:0001 usb=qemu-xhci", "… wishes=ERROR: …",
 * "… usb=NONE fix=…" */
static gchar *
test_describe_domain(const GwLibvirtDomain *domain)
{
    GString *out = g_string_new(domain->name);

    g_string_append(out, " wishes=");
    if (domain->wishes_error != NULL)
        g_string_append_printf(out, "ERROR: %s", domain->wishes_error);
    for (guint i = 0; i < domain->wishes->len; i++) {
        g_autofree gchar *what = policy_wish_describe(g_ptr_array_index(domain->wishes, i));
        g_string_append_printf(out, "%s%s", i > 0 ? "|" : "", what);
    }
    g_string_append_printf(out, " usb=%s", domain->usb_bus != NULL ? domain->usb_bus : "NONE");
    if (domain->usb_fix != NULL)
        g_string_append_printf(out, " fix=%s%s", domain->usb_fixed ? "" : "FAILED ",
                               domain->usb_fix);
    return g_string_free(out, FALSE);
}

static void
test_on_inspected(const GwLibvirtDomain *domain, gpointer user_data)
{
    TestRecorder *rec = user_data;
    test_assert_main_thread();
    g_ptr_array_add(rec->inspected, test_describe_domain(domain));
}

static const GwLibvirtHandlers test_handlers = {
    .connected = test_on_connected,
    .domain_started = test_on_started,
    .domain_stopped = test_on_stopped,
    .device_removed = test_on_removed,
    .domain_inspected = test_on_inspected,
};

static void
test_recorder_init(TestRecorder *rec)
{
    rec->up = rec->down = 0;
    rec->events = g_ptr_array_new_with_free_func(g_free);
    rec->inspected = g_ptr_array_new_with_free_func(g_free);
}

static void
test_recorder_clear(TestRecorder *rec)
{
    g_clear_pointer(&rec->events, g_ptr_array_unref);
    g_clear_pointer(&rec->inspected, g_ptr_array_unref);
}

static gboolean
test_recorder_has(TestRecorder *rec, const gchar *event)
{
    return g_ptr_array_find_with_equal_func(rec->events, event, g_str_equal, NULL);
}

static GwLibvirt *
test_connect(const gchar *uri, TestRecorder *rec)
{
    GwLibvirt *lv = gw_libvirt_new(uri, NULL);

    gw_libvirt_set_handlers(lv, &test_handlers, rec);
    gw_libvirt_start(lv);
    TEST_WAIT_UNTIL(rec->up == 1, TEST_TIMEOUT_MS);
    g_assert_true(gw_libvirt_is_connected(lv));
    return lv;
}

/* ---- async results ------------------------------------------------------- */

typedef struct {
    guint calls;
    GAsyncResult *result; /* owned */
} TestAsync;

static void
test_async_cb(GObject *source, GAsyncResult *result, gpointer user_data)
{
    TestAsync *async = user_data;
    test_assert_main_thread();
    async->calls++;
    g_set_object(&async->result, result);
}

static void
test_async_clear(TestAsync *async)
{
    g_clear_object(&async->result);
}

static gboolean
test_attach(GwLibvirt *lv, const gchar *uuid, const gchar *path, const gchar *alias, GError **error)
{
    TestAsync async = {0};
    gboolean ok;

    gw_libvirt_attach_redirdev_async(lv, uuid, path, alias, NULL, test_async_cb, &async);
    /* Never completes inside the call, even for argument errors. */
    g_assert_cmpuint(async.calls, ==, 0);
    TEST_WAIT_UNTIL(async.calls == 1, TEST_TIMEOUT_MS);
    ok = gw_libvirt_attach_redirdev_finish(lv, async.result, error);
    test_async_clear(&async);
    return ok;
}

static gboolean
test_detach(GwLibvirt *lv, const gchar *uuid, const gchar *path, GError **error)
{
    TestAsync async = {0};
    gboolean ok;

    gw_libvirt_detach_redirdev_async(lv, uuid, path, NULL, test_async_cb, &async);
    g_assert_cmpuint(async.calls, ==, 0);
    TEST_WAIT_UNTIL(async.calls == 1, TEST_TIMEOUT_MS);
    ok = gw_libvirt_detach_redirdev_finish(lv, async.result, error);
    test_async_clear(&async);
    return ok;
}

static GPtrArray *
test_list(GwLibvirt *lv, GError **error)
{
    TestAsync async = {0};
    GPtrArray *list;

    gw_libvirt_list_running_async(lv, NULL, test_async_cb, &async);
    TEST_WAIT_UNTIL(async.calls == 1, TEST_TIMEOUT_MS);
    list = gw_libvirt_list_running_finish(lv, async.result, error);
    test_async_clear(&async);
    return list;
}

static GwLibvirtDomain *
test_list_find(GPtrArray *list, const gchar *uuid)
{
    for (guint i = 0; i < list->len; i++) {
        GwLibvirtDomain *domain = g_ptr_array_index(list, i);
        if (g_str_equal(domain->uuid, uuid))
            return domain;
    }
    return NULL;
}

/* ---- test-driver domains -------------------------------------------------- */

/* Defines (not starts) a test-driver domain with one unix redirdev per
 * path, its USB controller @usb (a model, "none") and @metadata (nullable:
 * the elements inside <metadata>). */
static virDomainPtr
test_define_full(const gchar *name, const gchar *uuid, const gchar *const *paths, const gchar *usb,
                 const gchar *metadata)
{
    g_autofree gchar *controller =
        g_strdup_printf("<controller type='usb' index='0' model='%s'/>", usb);
    g_autoptr(GString) devices = g_string_new(controller);
    g_autofree gchar *xml = NULL;
    virDomainPtr dom;

    for (guint i = 0; paths != NULL && paths[i] != NULL; i++) {
        g_autofree gchar *dev = g_markup_printf_escaped(
            "<redirdev bus='usb' type='unix'><source mode='connect' path='%s'/></redirdev>",
            paths[i]);
        g_string_append(devices, dev);
    }
    /* Not a unix redirdev: must not be listed (libvirt refuses any
     * redirdev without a USB bus). */
    if (g_strcmp0(usb, "none") != 0)
        g_string_append(devices, "<redirdev bus='usb' type='spicevmc'/>");
    xml = g_strdup_printf("<domain type='test'><name>%s</name><uuid>%s</uuid>"
                          "<metadata>%s</metadata>"
                          "<memory>65536</memory><os><type>hvm</type></os>"
                          "<devices>%s</devices></domain>",
                          name, uuid, metadata != NULL ? metadata : "", devices->str);
    dom = virDomainDefineXML(test_conn, xml);
    g_assert_nonnull(dom);
    return dom;
}

static virDomainPtr
test_define(const gchar *name, const gchar *uuid, const gchar *const *paths)
{
    return test_define_full(name, uuid, paths, "qemu-xhci", NULL);
}

static void
test_undefine(virDomainPtr dom)
{
    if (virDomainIsActive(dom) == 1)
        g_assert_cmpint(virDomainDestroy(dom), ==, 0);
    g_assert_cmpint(virDomainUndefine(dom), ==, 0);
}

/* ---- log expectations ------------------------------------------------------ */

/* Warnings gw-libvirt is expected to log (connect failures) are counted
 * here; any other warning fails the test. */
static guint test_connect_warnings;

static void
test_warning_handler(const gchar *domain, GLogLevelFlags level, const gchar *message,
                     gpointer user_data)
{
    if (!g_str_has_prefix(message, "cannot connect to libvirt") &&
        !g_str_has_prefix(message, "the libvirt worker is still inside a call"))
        g_error("unexpected warning: %s", message);
    test_connect_warnings++;
    g_test_message("expected warning: %s", message);
}

/* ---- tests --------------------------------------------------------------- */

typedef struct {
    const gchar *name;
    const gchar *xml;
    const gchar *want_paths;   /* '|'-separated, "" for none; NULL: parse error */
    const gchar *want_aliases; /* '|'-separated, "-" for an element without one */
} ParseCase;

static const ParseCase parse_cases[] = {
    {.name = "none", .xml = "<domain><devices/></domain>", .want_paths = "", .want_aliases = ""},
    {.name = "one",
     .xml = "<domain type='kvm' id='3'><name>a</name><devices>"
            "<redirdev bus='usb' type='unix'><source mode='connect' path='/run/a.sock'>"
            "<reconnect enabled='yes' timeout='2'/></source><alias name='ua-usbgw-1'/>"
            "<address type='usb' bus='0' port='1'/></redirdev></devices></domain>",
     .want_paths = "/run/a.sock",
     .want_aliases = "ua-usbgw-1"},
    {.name = "escaped and generated alias",
     .xml = "<?xml version='1.0'?><!-- live --><domain><devices>"
            "<redirdev type=\"unix\" bus=\"usb\"><alias name=\"redir0\"/>"
            "<source mode=\"connect\" path=\"/tmp/a&amp;b &apos;c&apos; &lt;d&gt;\"/>"
            "</redirdev></devices></domain>",
     .want_paths = "/tmp/a&b 'c' <d>",
     .want_aliases = "redir0"},
    {.name = "other redirdev types and devices ignored",
     .xml = "<domain><devices><redirdev bus='usb' type='spicevmc'><alias name='redir0'/>"
            "</redirdev><serial type='unix'><source mode='bind' path='/tmp/serial'/></serial>"
            "<redirdev bus='usb' type='tcp'><source mode='connect' host='h' service='1'/>"
            "</redirdev><redirfilter><usbdev allow='yes'/></redirfilter>"
            "<redirdev bus='usb' type='unix'><source mode='connect' path='/b'/></redirdev>"
            "<redirdev bus='usb' type='unix'><source mode='connect' path='/c'/>"
            "<alias name='ua-c'/></redirdev></devices></domain>",
     .want_paths = "/b|/c",
     .want_aliases = "-|ua-c"},
    {.name = "only direct children of devices",
     .xml = "<domain><metadata><devices><redirdev type='unix'><source path='/meta'/>"
            "</redirdev></devices></metadata><devices><hub type='usb'><redirdev "
            "type='unix'><source path='/nested'/></redirdev></hub><redirdev type='unix'>"
            "<boot order='1'/><source path='/direct'/><x><source path='/deeper'/></x>"
            "</redirdev></devices></domain>",
     .want_paths = "/direct",
     .want_aliases = "-"},
    {.name = "unix redirdev without source",
     .xml = "<domain><devices><redirdev type='unix'/></devices></domain>",
     .want_paths = "",
     .want_aliases = ""},
    {.name = "not a domain", .xml = "<network><devices/></network>", .want_paths = NULL},
    {.name = "malformed", .xml = "<domain><devices><redirdev></devices>", .want_paths = NULL},
    {.name = "truncated", .xml = "<domain><devices>", .want_paths = NULL},
    {.name = "empty", .xml = "", .want_paths = NULL},
};

/* "a|b|c"; @empty stands for empty elements. The string lives until the
 * next call. */
static const gchar *
test_join(GPtrArray *array, const gchar *empty)
{
    static gchar *joined;
    g_autoptr(GString) out = g_string_new(NULL);

    for (guint i = 0; i < array->len; i++) {
        const gchar *item = g_ptr_array_index(array, i);
        if (i > 0)
            g_string_append_c(out, '|');
        g_string_append(out, *item == '\0' && empty != NULL ? empty : item);
    }
    g_free(joined);
    joined = g_string_free(g_steal_pointer(&out), FALSE);
    return joined;
}

static void
test_parse(void)
{
    for (gsize i = 0; i < G_N_ELEMENTS(parse_cases); i++) {
        const ParseCase *c = &parse_cases[i];
        g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GPtrArray) aliases = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GError) error = NULL;
        gboolean ok = gw_libvirt_parse_redirdevs(c->xml, paths, aliases, &error);

        g_test_message("case '%s'", c->name);
        if (c->want_paths == NULL) {
            g_assert_false(ok);
            g_assert_nonnull(error);
            continue;
        }
        g_assert_no_error(error);
        g_assert_true(ok);
        g_assert_cmpuint(aliases->len, ==, paths->len);
        g_assert_cmpstr(test_join(paths, NULL), ==, c->want_paths);
        g_assert_cmpstr(test_join(aliases, "-"), ==, c->want_aliases);
    }
}

/* ---- usbgw's metadata and the USB bus ------------------------------------- */

#define NS "xmlns:usbgw='" GW_LIBVIRT_METADATA_NS "'"

typedef struct {
    const gchar *name;
    const gchar *xml;
    const gchar
        *want; /* wishes as policy_wish_describe() gives them, '|'-separated; NULL: refused */
    const gchar *want_error; /* refused: a part of the message */
} MetadataCase;

static const MetadataCase metadata_cases[] = {
    {"pool and devices",
     "<usbgw:devices " NS "><usbgw:device pool='cad'/><usbgw:device id='0529:0001'/>"
     "<usbgw:device id='096E:0006' serial='FT 01'/></usbgw:devices>",
     "pool \"cad\"|id 0529:0001|id 096e:0006 serial \"FT 01\"", NULL},
    {"another prefix, whitespace, a vendor glob",
     "\n <u:devices xmlns:u='" GW_LIBVIRT_METADATA_NS
     "'>\n  <u:device id='0529:*'/>\n</u:devices>\n",
     "id 0529:*", NULL},
    {"no prefix", "<devices xmlns='" GW_LIBVIRT_METADATA_NS "'><device pool='p'/></devices>",
     "pool \"p\"", NULL},
    {"empty", "<usbgw:devices " NS "/>", "", NULL},
    {"escaped serial",
     "<usbgw:devices " NS "><usbgw:device id='0529:0001' serial='a&amp;b'/></usbgw:devices>",
     "id 0529:0001 serial \"a&b\"", NULL},
    {"wrong root", "<usbgw:device " NS " pool='x'/>", NULL, "the root element is <usbgw:device>"},
    {"unknown attribute",
     "<usbgw:devices " NS "><usbgw:device pool='x' port='1-1'/></usbgw:devices>", NULL,
     "<device> #1: unknown attribute 'port'"},
    {"pool and id",
     "<usbgw:devices " NS
     "><usbgw:device id='0529:0001'/><usbgw:device pool='x' id='0529:0001'/></usbgw:devices>",
     NULL, "<device> #2: needs either pool"},
    {"neither", "<usbgw:devices " NS "><usbgw:device serial='x'/></usbgw:devices>", NULL,
     "<device> #1: needs either pool"},
    {"bad id", "<usbgw:devices " NS "><usbgw:device id='05g9:0001'/></usbgw:devices>", NULL,
     "<device> #1: id \"05g9:0001\" is not VID:PID"},
    {"any id", "<usbgw:devices " NS "><usbgw:device id='*:*'/></usbgw:devices>", NULL,
     "is not VID:PID"},
    {"serial with pool",
     "<usbgw:devices " NS "><usbgw:device pool='x' serial='y'/></usbgw:devices>", NULL,
     "serial belongs with id"},
    {"empty value", "<usbgw:devices " NS "><usbgw:device pool=''/></usbgw:devices>", NULL,
     "attribute 'pool' is empty"},
    {"control character", "<usbgw:devices " NS "><usbgw:device pool='a&#9;b'/></usbgw:devices>",
     NULL, "control character"},
    {"nested",
     "<usbgw:devices " NS
     "><usbgw:device pool='x'><usbgw:device pool='y'/></usbgw:device></usbgw:devices>",
     NULL, "inside <device> #1"},
    {"other element", "<usbgw:devices " NS "><usbgw:pool name='x'/></usbgw:devices>", NULL,
     "<usbgw:pool> in <devices>"},
    {"other prefix inside",
     "<usbgw:devices " NS "><x:device xmlns:x='urn:x' pool='x'/></usbgw:devices>", NULL,
     "<x:device> in <devices>"},
    {"text", "<usbgw:devices " NS ">cad</usbgw:devices>", NULL, "text is not allowed"},
    {"attribute on root", "<usbgw:devices " NS " version='2'/>", NULL,
     "<devices> takes no attribute 'version'"},
    {"malformed", "<usbgw:devices " NS "><usbgw:device pool='x'>", NULL, ""},
    {"not XML", "cad", NULL, ""},
    {"nothing", "", NULL, "empty"},
};

static void
test_parse_metadata(void)
{
    for (gsize i = 0; i < G_N_ELEMENTS(metadata_cases); i++) {
        const MetadataCase *c = &metadata_cases[i];
        g_autoptr(GPtrArray) wishes =
            g_ptr_array_new_with_free_func((GDestroyNotify)policy_wish_free);
        g_autoptr(GPtrArray) described = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GError) error = NULL;
        gboolean ok = gw_libvirt_parse_metadata(c->xml, -1, wishes, &error);

        g_test_message("case '%s'", c->name);
        if (c->want == NULL) {
            g_assert_false(ok);
            g_assert_nonnull(error);
            g_test_message("refused: %s", error->message);
            g_assert_nonnull(strstr(error->message, c->want_error));
            g_assert_cmpuint(wishes->len, ==, 0);
            continue;
        }
        g_assert_no_error(error);
        g_assert_true(ok);
        for (guint k = 0; k < wishes->len; k++)
            g_ptr_array_add(described, policy_wish_describe(g_ptr_array_index(wishes, k)));
        g_assert_cmpstr(test_join(described, NULL), ==, c->want);
    }
}

/* The bounds: size, number of <device> elements, one value's bytes. */
static void
test_parse_metadata_bounds(void)
{
    g_autoptr(GString) many = g_string_new("<usbgw:devices " NS ">");
    g_autoptr(GString) big = g_string_new("<usbgw:devices " NS ">");
    g_autofree gchar *long_pool = g_strnfill(GW_LIBVIRT_METADATA_MAX_VALUE + 1, 'p');
    g_autofree gchar *long_xml = NULL;
    g_autoptr(GPtrArray) wishes = g_ptr_array_new_with_free_func((GDestroyNotify)policy_wish_free);
    g_autoptr(GError) error = NULL;

    for (guint i = 0; i < GW_LIBVIRT_METADATA_MAX_WISHES; i++)
        g_string_append_printf(many, "<usbgw:device pool='p%u'/>", i);
    g_string_append(many, "</usbgw:devices>");
    g_assert_true(gw_libvirt_parse_metadata(many->str, -1, wishes, &error));
    g_assert_cmpuint(wishes->len, ==, GW_LIBVIRT_METADATA_MAX_WISHES);
    g_ptr_array_set_size(wishes, 0);
    g_string_truncate(many, many->len - strlen("</usbgw:devices>"));
    g_string_append(many, "<usbgw:device pool='one-more'/></usbgw:devices>");
    g_assert_false(gw_libvirt_parse_metadata(many->str, -1, wishes, &error));
    g_assert_nonnull(strstr(error->message, "more than 32 <device> elements"));
    g_assert_cmpuint(wishes->len, ==, 0);
    g_clear_error(&error);

    while (big->len <= GW_LIBVIRT_METADATA_MAX_BYTES)
        g_string_append(big, "<!-- padding padding padding -->");
    g_string_append(big, "</usbgw:devices>");
    g_assert_false(gw_libvirt_parse_metadata(big->str, -1, wishes, &error));
    g_assert_nonnull(strstr(error->message, "more than the 16384 allowed"));
    g_clear_error(&error);

    long_xml = g_strdup_printf("<usbgw:devices " NS "><usbgw:device pool='%s'/></usbgw:devices>",
                               long_pool);
    g_assert_false(gw_libvirt_parse_metadata(long_xml, -1, wishes, &error));
    g_assert_nonnull(strstr(error->message, "has 256 bytes, more than 255"));
    g_clear_error(&error);

    /* a length that cuts the text: only those bytes are read */
    g_assert_false(gw_libvirt_parse_metadata("<usbgw:devices " NS "/>", 10, wishes, &error));
    g_clear_error(&error);
    g_assert_false(gw_libvirt_parse_metadata(
        "<usbgw:devices " NS "><usbgw:device pool='\xff'/></usbgw:devices>", -1, wishes, &error));
    g_assert_nonnull(strstr(error->message, "not UTF-8"));
}

typedef struct {
    const gchar *name;
    const gchar *devices;  /* inside <domain><devices> */
    const gchar *want_bus; /* gw_libvirt_usb_bus(); NULL: none */
} UsbBusCase;

static const UsbBusCase usb_bus_cases[] = {
    {"xhci",
     "<controller type='usb' index='0' model='qemu-xhci' ports='15'><alias name='usb'/>"
     "<address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/></controller>",
     "qemu-xhci"},
    {"none",
     "<controller type='usb' index='0' model='none'/><controller type='pci' model='pcie-root'/>",
     NULL},
    {"default model", "<controller type='usb' index='0'/>", "default"},
    {"ehci with companions",
     "<controller type='usb' index='0' model='ich9-ehci1'/><controller type='usb' index='0' "
     "model='ich9-uhci1'/>",
     "ich9-ehci1"},
    {"uhci only", "<controller type='usb' index='0' model='piix3-uhci'/>", "piix3-uhci"},
    {"no usb controller element", "<controller type='sata' index='0'/>", "unlisted"},
};

static void
test_usb_bus(void)
{
    for (gsize i = 0; i < G_N_ELEMENTS(usb_bus_cases); i++) {
        const UsbBusCase *c = &usb_bus_cases[i];
        g_autofree gchar *xml = g_strdup_printf("<domain><devices>%s</devices>"
                                                "<metadata><controller type='usb' model='x'/>"
                                                "</metadata></domain>",
                                                c->devices);
        g_autoptr(GPtrArray) models = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GError) error = NULL;

        g_test_message("case '%s'", c->name);
        g_assert_true(gw_libvirt_parse_domain(xml, NULL, NULL, models, &error));
        g_assert_no_error(error);
        g_assert_cmpstr(gw_libvirt_usb_bus(models), ==, c->want_bus);
    }
}

static void
test_add_usb_controller(void)
{
    static const gchar *none_xml =
        "<domain type='kvm'>\n  <name>w</name>\n  <devices>\n"
        "    <disk type='file' device='disk'/>\n"
        "    <controller type='usb' index='0' model='none'/>\n"
        "    <controller type='pci' index='0' model='pcie-root'/>\n  </devices>\n</domain>\n";
    static const gchar *open_none_xml =
        "<domain><devices><controller type=\"usb\" model=\"none\" index=\"0\">"
        "</controller><serial type='pty'/></devices></domain>";
    static const gchar *unlisted_xml = "<domain><devices><serial type='pty'/></devices></domain>";
    g_autoptr(GError) error = NULL;
    g_autofree gchar *edited = gw_libvirt_add_usb_controller(none_xml, &error);
    g_autofree gchar *edited_open = NULL;
    g_autofree gchar *edited_unlisted = NULL;
    g_autofree gchar *again = NULL;

    g_assert_no_error(error);
    g_assert_cmpstr(edited, ==,
                    "<domain type='kvm'>\n  <name>w</name>\n  <devices>\n"
                    "    <disk type='file' device='disk'/>\n"
                    "    <controller type='usb' index='0' model='qemu-xhci'/>\n"
                    "    <controller type='pci' index='0' model='pcie-root'/>\n  </devices>\n"
                    "</domain>\n");
    edited_open = gw_libvirt_add_usb_controller(open_none_xml, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(edited_open, ==,
                    "<domain><devices><controller type='usb' index='0' model='qemu-xhci'/>"
                    "<serial type='pty'/></devices></domain>");
    edited_unlisted = gw_libvirt_add_usb_controller(unlisted_xml, &error);
    g_assert_null(edited_unlisted);
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS);
    g_clear_error(&error);
    /* what has a bus is left alone */
    again = gw_libvirt_add_usb_controller(edited, &error);
    g_assert_null(again);
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS);
    g_assert_nonnull(strstr(error->message, "qemu-xhci"));
    g_clear_error(&error);
    g_assert_null(gw_libvirt_add_usb_controller("<domain><devices>", &error));
    g_assert_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT);
}

/* A running test-driver domain's metadata: read by the listing, and again
 * after virDomainSetMetadata (the metadata-change event); a change of
 * another namespace is not usbgwd's business. */
static void
test_metadata_test_driver(void)
{
    static const gchar *uuid = "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e";
    TestRecorder rec;
    g_autoptr(GwLibvirt) lv = NULL;
    g_autoptr(virDomain) dom =
        test_define_full("usbgw-meta", uuid, NULL, "qemu-xhci",
                         "<usbgw:devices " NS "><usbgw:device pool='cad'/></usbgw:devices>");
    g_autoptr(GPtrArray) list = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *described = NULL;

    g_assert_cmpint(virDomainCreate(dom), ==, 0);
    test_recorder_init(&rec);
    lv = test_connect(TEST_URI, &rec);
    list = test_list(lv, &error);
    g_assert_no_error(error);
    described = test_describe_domain(test_list_find(list, uuid));
    g_assert_cmpstr(described, ==, "usbgw-meta wishes=pool \"cad\" usb=qemu-xhci");
    g_clear_pointer(&described, g_free);
    /* the test domain has no usbgw metadata: no wishes, no error */
    described = test_describe_domain(test_list_find(list, TEST_UUID));
    g_assert_cmpstr(described, ==, "test wishes= usb=unlisted");

    g_assert_cmpint(virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT,
                                         "<devices><device id='0529:0001' serial='A1'/>"
                                         "</devices>",
                                         GW_LIBVIRT_METADATA_PREFIX, GW_LIBVIRT_METADATA_NS,
                                         VIR_DOMAIN_AFFECT_LIVE),
                    ==, 0);
    TEST_WAIT_UNTIL(rec.inspected->len == 1, TEST_TIMEOUT_MS);
    g_assert_cmpstr(g_ptr_array_index(rec.inspected, 0), ==,
                    "usbgw-meta wishes=id 0529:0001 serial \"A1\" usb=qemu-xhci");
    g_assert_cmpint(virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, "<x/>", "other",
                                         "urn:other", VIR_DOMAIN_AFFECT_LIVE),
                    ==, 0);
    /* refused metadata: an error naming the VM and the element */
    g_assert_cmpint(virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT,
                                         "<devices><device id='0529:0001' port='1-1'/></devices>",
                                         GW_LIBVIRT_METADATA_PREFIX, GW_LIBVIRT_METADATA_NS,
                                         VIR_DOMAIN_AFFECT_LIVE),
                    ==, 0);
    TEST_WAIT_UNTIL(rec.inspected->len == 2, TEST_TIMEOUT_MS);
    g_test_message("%s", (gchar *)g_ptr_array_index(rec.inspected, 1));
    g_assert_true(g_str_has_prefix(
        g_ptr_array_index(rec.inspected, 1),
        "usbgw-meta wishes=ERROR: VM 'usbgw-meta': usbgw metadata (" GW_LIBVIRT_METADATA_NS
        ") refused: "));
    g_assert_nonnull(
        strstr(g_ptr_array_index(rec.inspected, 1), "<device> #1: unknown attribute 'port'"));
    /* removed: no wishes */
    g_assert_cmpint(virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, NULL, NULL,
                                         GW_LIBVIRT_METADATA_NS, VIR_DOMAIN_AFFECT_LIVE),
                    ==, 0);
    TEST_WAIT_UNTIL(rec.inspected->len == 3, TEST_TIMEOUT_MS);
    g_assert_cmpstr(g_ptr_array_index(rec.inspected, 2), ==, "usbgw-meta wishes= usb=qemu-xhci");
    /* a start is followed by an inspection */
    g_assert_cmpint(virDomainDestroy(dom), ==, 0);
    g_assert_cmpint(virDomainCreate(dom), ==, 0);
    TEST_WAIT_UNTIL(rec.inspected->len == 4, TEST_TIMEOUT_MS);
    test_drain(100);
    g_assert_cmpuint(rec.inspected->len, ==, 4);

    g_clear_pointer(&lv, gw_libvirt_free);
    test_undefine(dom);
    test_recorder_clear(&rec);
}

/* A domain whose only USB controller is model='none': reported without a
 * bus, a hot-plug is refused with the reason, and with add-usb-controller
 * its persistent definition gets a qemu-xhci controller. */
static void
test_usb_bus_test_driver(void)
{
    static const gchar *uuid = "1c2d3e4f-5a6b-4c7d-8e9f-a0b1c2d3e4f5";
    TestRecorder rec;
    g_autoptr(GwLibvirt) lv = NULL;
    g_autoptr(virDomain) dom = test_define_full("usbgw-nousb", uuid, NULL, "none", NULL);
    g_autoptr(GPtrArray) list = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *described = NULL;
    g_autofree gchar *inactive = NULL;
    g_autofree gchar *live = NULL;

    g_assert_cmpint(virDomainCreate(dom), ==, 0);
    test_recorder_init(&rec);
    lv = test_connect(TEST_URI, &rec);
    list = test_list(lv, &error);
    g_assert_no_error(error);
    described = test_describe_domain(test_list_find(list, uuid));
    g_assert_cmpstr(described, ==, "usbgw-nousb wishes= usb=NONE");
    g_assert_false(test_attach(lv, uuid, "/run/usbgw/vm/n/0.sock", "ua-usbgw-n", &error));
    g_assert_error(error, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_NO_USB_BUS);
    g_test_message("%s", error->message);
    g_assert_nonnull(strstr(error->message, "VM 'usbgw-nousb'"));
    g_assert_nonnull(
        strstr(error->message, "it has no USB bus (<controller type='usb' model='none'/>)"));
    g_clear_error(&error);
    g_clear_pointer(&list, g_ptr_array_unref);
    g_clear_pointer(&lv, gw_libvirt_free);
    test_recorder_clear(&rec);

    /* add-usb-controller: the persistent definition is edited, the live
     * domain is not (it takes effect at the next start) */
    test_recorder_init(&rec);
    lv = gw_libvirt_new(TEST_URI, NULL);
    gw_libvirt_set_handlers(lv, &test_handlers, &rec);
    gw_libvirt_set_add_usb_controller(lv, TRUE);
    gw_libvirt_start(lv);
    TEST_WAIT_UNTIL(rec.up == 1, TEST_TIMEOUT_MS);
    list = test_list(lv, &error);
    g_assert_no_error(error);
    g_clear_pointer(&described, g_free);
    described = test_describe_domain(test_list_find(list, uuid));
    g_assert_cmpstr(described, ==,
                    "usbgw-nousb wishes= usb=NONE fix=added <controller type='usb' "
                    "model='qemu-xhci'/> to the persistent definition: effective at the next "
                    "start");
    inactive = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE);
    g_assert_nonnull(strstr(inactive, "model='qemu-xhci'"));
    g_assert_null(strstr(inactive, "model='none'"));
    live = virDomainGetXMLDesc(dom, 0);
    g_assert_nonnull(strstr(live, "<controller type='usb' index='0' model='none'"));
    /* inspected again (a metadata change): done already, said so */
    g_assert_cmpint(virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, "<devices/>",
                                         GW_LIBVIRT_METADATA_PREFIX, GW_LIBVIRT_METADATA_NS,
                                         VIR_DOMAIN_AFFECT_LIVE),
                    ==, 0);
    TEST_WAIT_UNTIL(rec.inspected->len == 1, TEST_TIMEOUT_MS);
    g_assert_true(g_str_has_prefix(g_ptr_array_index(rec.inspected, 0),
                                   "usbgw-nousb wishes= usb=NONE fix=the persistent definition "
                                   "has one already"));
    /* the next start has the bus */
    g_assert_cmpint(virDomainDestroy(dom), ==, 0);
    g_assert_cmpint(virDomainCreate(dom), ==, 0);
    TEST_WAIT_UNTIL(rec.inspected->len == 2, TEST_TIMEOUT_MS);
    g_assert_cmpstr(g_ptr_array_index(rec.inspected, 1), ==, "usbgw-nousb wishes= usb=qemu-xhci");

    g_clear_pointer(&lv, gw_libvirt_free);
    test_undefine(dom);
    test_recorder_clear(&rec);
}

static void
test_connect_list(void)
{
    TestRecorder rec;
    g_autoptr(GwLibvirt) lv = NULL;
    g_autoptr(GPtrArray) list = NULL;
    g_autoptr(GError) error = NULL;
    GwLibvirtStatus status = {0};
    GwLibvirtDomain *domain;

    test_recorder_init(&rec);
    lv = test_connect(TEST_URI, &rec);
    g_assert_cmpstr(gw_libvirt_get_uri(lv), ==, TEST_URI);
    gw_libvirt_get_status(lv, &status);
    g_assert_true(status.connected);
    g_assert_cmpuint(status.failed_attempts, ==, 0);
    g_assert_cmpuint(status.retry_delay_ms, ==, 0);
    g_assert_null(status.last_error);
    gw_libvirt_status_clear(&status);

    list = test_list(lv, &error);
    g_assert_no_error(error);
    domain = test_list_find(list, TEST_UUID);
    g_assert_nonnull(domain);
    g_assert_cmpstr(domain->name, ==, TEST_DOMAIN);
    g_assert_cmpuint(domain->redirdev_paths->len, ==, 0);
    g_assert_cmpuint(rec.down, ==, 0);
    g_clear_pointer(&lv, gw_libvirt_free);
    test_recorder_clear(&rec);
}

static void
test_list_redirdevs(void)
{
    static const gchar *const paths[] = {"/run/usbgw/vm/x/0.sock", "/tmp/we<ird> & 'quoted'.sock",
                                         NULL};
    static const gchar *uuid = "0d0b4a52-1c8d-4b43-9a57-6d0e1f5b2c11";
    TestRecorder rec;
    g_autoptr(GwLibvirt) lv = NULL;
    g_autoptr(virDomain) running = test_define("usbgw-list", uuid, paths);
    g_autoptr(virDomain) inactive =
        test_define("usbgw-list-off", "0d0b4a52-1c8d-4b43-9a57-6d0e1f5b2c12", paths);
    g_autoptr(GPtrArray) list = NULL;
    g_autoptr(GError) error = NULL;
    GwLibvirtDomain *domain;

    g_assert_cmpint(virDomainCreate(running), ==, 0);
    test_recorder_init(&rec);
    lv = test_connect(TEST_URI, &rec);
    list = test_list(lv, &error);
    g_assert_no_error(error);
    domain = test_list_find(list, uuid);
    g_assert_nonnull(domain);
    g_assert_cmpstr(domain->name, ==, "usbgw-list");
    g_assert_cmpuint(domain->redirdev_paths->len, ==, 2);
    g_assert_cmpstr(g_ptr_array_index(domain->redirdev_paths, 0), ==, paths[0]);
    g_assert_cmpstr(g_ptr_array_index(domain->redirdev_paths, 1), ==, paths[1]);
    g_assert_null(test_list_find(list, "0d0b4a52-1c8d-4b43-9a57-6d0e1f5b2c12"));
    g_assert_nonnull(test_list_find(list, TEST_UUID));

    test_undefine(running);
    test_undefine(inactive);
    g_clear_pointer(&lv, gw_libvirt_free);
    test_recorder_clear(&rec);
}

static void
test_lifecycle(void)
{
    static const gchar *uuid = "4f7c2a10-8e55-4c39-b1a2-3d4e5f607182";
    TestRecorder rec;
    g_autoptr(GwLibvirt) lv = NULL;
    g_autoptr(virDomain) dom = test_define("usbgw-life", uuid, NULL);
    g_autofree gchar *started = g_strdup_printf("started usbgw-life %s", uuid);
    g_autofree gchar *stopped = g_strdup_printf("stopped usbgw-life %s", uuid);

    test_recorder_init(&rec);
    lv = test_connect(TEST_URI, &rec);

    /* start, destroy */
    g_assert_cmpint(virDomainCreate(dom), ==, 0);
    TEST_WAIT_UNTIL(rec.events->len == 1, TEST_TIMEOUT_MS);
    g_assert_cmpstr(g_ptr_array_index(rec.events, 0), ==, started);
    g_assert_cmpint(virDomainDestroy(dom), ==, 0);
    TEST_WAIT_UNTIL(rec.events->len == 2, TEST_TIMEOUT_MS);
    g_assert_cmpstr(g_ptr_array_index(rec.events, 1), ==, stopped);

    /* start, shutdown (the test driver stops at once); suspend and resume
     * in between give no callback */
    g_assert_cmpint(virDomainCreate(dom), ==, 0);
    g_assert_cmpint(virDomainSuspend(dom), ==, 0);
    g_assert_cmpint(virDomainResume(dom), ==, 0);
    g_assert_cmpint(virDomainShutdown(dom), ==, 0);
    TEST_WAIT_UNTIL(rec.events->len == 4, TEST_TIMEOUT_MS);
    g_assert_cmpstr(g_ptr_array_index(rec.events, 2), ==, started);
    g_assert_cmpstr(g_ptr_array_index(rec.events, 3), ==, stopped);

    /* nothing after free */
    g_clear_pointer(&lv, gw_libvirt_free);
    g_assert_cmpint(virDomainCreate(dom), ==, 0);
    test_drain(200);
    g_assert_cmpuint(rec.events->len, ==, 4);
    g_assert_cmpuint(rec.down, ==, 0);
    test_undefine(dom);
    test_recorder_clear(&rec);
}

static void
test_attach_test_driver(void)
{
    static const gchar *const paths[] = {"/run/usbgw/vm/y/0.sock", NULL};
    static const gchar *uuid = "9a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d";
    static const gchar *off_uuid = "9a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3e";
    TestRecorder rec;
    g_autoptr(GwLibvirt) lv = NULL;
    g_autoptr(virDomain) dom = test_define("usbgw-attach", uuid, paths);
    g_autoptr(virDomain) off = test_define("usbgw-attach-off", off_uuid, NULL);
    g_autoptr(GError) error = NULL;

    g_assert_cmpint(virDomainCreate(dom), ==, 0);
    test_recorder_init(&rec);
    lv = test_connect(TEST_URI, &rec);

    /* the test driver refuses hot-plug: a clear error naming VM and op */
    g_assert_false(test_attach(lv, TEST_UUID, "/run/usbgw/new.sock", "ua-usbgw-0", &error));
    g_assert_error(error, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_NOT_SUPPORTED);
    g_test_message("%s", error->message);
    g_assert_nonnull(strstr(error->message, "cannot attach USB redirection '/run/usbgw/new.sock'"));
    g_assert_nonnull(strstr(error->message, "VM '" TEST_DOMAIN "' (" TEST_UUID ")"));
    g_assert_nonnull(strstr(error->message, "virDomainAttachDeviceFlags"));
    g_clear_error(&error);

    /* already attached: success without calling libvirt's attach (which
     * would fail here) */
    g_assert_true(test_attach(lv, uuid, paths[0], "ua-usbgw-1", &error));
    g_assert_no_error(error);

    /* unknown VM */
    g_assert_false(test_attach(lv, TEST_UNKNOWN, "/run/a.sock", "ua-a", &error));
    g_assert_error(error, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_NO_DOMAIN);
    g_assert_nonnull(strstr(error->message, TEST_UNKNOWN));
    g_clear_error(&error);

    /* defined, not running */
    g_assert_false(test_attach(lv, off_uuid, "/run/a.sock", "ua-a", &error));
    g_assert_error(error, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_NOT_RUNNING);
    g_assert_nonnull(strstr(error->message, "'usbgw-attach-off'"));
    g_clear_error(&error);

    /* malformed UUID: libvirt's own check */
    g_assert_false(test_attach(lv, "not-a-uuid", "/run/a.sock", "ua-a", &error));
    g_assert_error(error, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_INVALID_ARGUMENT);
    g_clear_error(&error);

    g_clear_pointer(&lv, gw_libvirt_free);
    test_undefine(dom);
    test_undefine(off);
    test_recorder_clear(&rec);
}

typedef struct {
    const gchar *alias;
    const gchar *path;
} BadAttachCase;

static const BadAttachCase bad_attach_cases[] = {
    {"usbgw-0", "/run/a.sock"}, /* no "ua-" */
    {"ua-", "/run/a.sock"},     /* nothing after it */
    {"ua-a b", "/run/a.sock"},  {"ua-a'b", "/run/a.sock"}, {"ua-a/b", "/run/a.sock"},
    {"UA-a", "/run/a.sock"},    {NULL, "/run/a.sock"},     {"ua-ok", "relative.sock"},
};

static void
test_attach_arguments(void)
{
    TestRecorder rec;
    g_autoptr(GwLibvirt) lv = NULL;

    test_recorder_init(&rec);
    lv = test_connect(TEST_URI, &rec);
    for (gsize i = 0; i < G_N_ELEMENTS(bad_attach_cases); i++) {
        g_autoptr(GError) error = NULL;
        g_test_message("alias %s path %s", bad_attach_cases[i].alias, bad_attach_cases[i].path);
        g_assert_false(test_attach(lv, TEST_UUID, bad_attach_cases[i].path,
                                   bad_attach_cases[i].alias, &error));
        g_assert_error(error, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_INVALID_ARGUMENT);
        g_assert_nonnull(strstr(error->message, TEST_UUID));
    }
    g_clear_pointer(&lv, gw_libvirt_free);
    test_recorder_clear(&rec);
}

static void
test_detach_test_driver(void)
{
    static const gchar *const paths[] = {"/run/usbgw/vm/z/0.sock", NULL};
    static const gchar *uuid = "7e6d5c4b-3a29-4817-9605-f4e3d2c1b0a9";
    TestRecorder rec;
    g_autoptr(GwLibvirt) lv = NULL;
    g_autoptr(virDomain) dom = test_define("usbgw-detach", uuid, paths);
    g_autoptr(GError) error = NULL;

    g_assert_cmpint(virDomainCreate(dom), ==, 0);
    test_recorder_init(&rec);
    lv = test_connect(TEST_URI, &rec);

    /* "not attached" in every form is success */
    g_assert_true(test_detach(lv, uuid, "/run/other.sock", &error));
    g_assert_no_error(error);
    g_assert_true(test_detach(lv, TEST_UNKNOWN, paths[0], &error));
    g_assert_no_error(error);
    g_assert_cmpint(virDomainDestroy(dom), ==, 0);
    g_assert_true(test_detach(lv, uuid, paths[0], &error));
    g_assert_no_error(error);

    /* attached: the test driver refuses the unplug, reported clearly */
    g_assert_cmpint(virDomainCreate(dom), ==, 0);
    g_assert_false(test_detach(lv, uuid, paths[0], &error));
    g_assert_error(error, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_NOT_SUPPORTED);
    g_test_message("%s", error->message);
    g_assert_nonnull(strstr(error->message, "cannot detach USB redirection"));
    g_assert_nonnull(strstr(error->message, "'usbgw-detach'"));

    g_clear_pointer(&lv, gw_libvirt_free);
    test_undefine(dom);
    test_recorder_clear(&rec);
}

static void
test_not_connected(void)
{
    TestRecorder rec;
    g_autoptr(GwLibvirt) lv = gw_libvirt_new("test:///nonexistent/usbgw/none.xml", NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) list = NULL;

    test_recorder_init(&rec);
    gw_libvirt_set_handlers(lv, &test_handlers, &rec);
    /* not even started */
    g_assert_false(test_attach(lv, TEST_UUID, "/run/a.sock", "ua-a", &error));
    g_assert_error(error, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_NOT_CONNECTED);
    g_assert_nonnull(strstr(error->message, "not connected to libvirt at test:///nonexistent"));
    g_clear_error(&error);
    list = test_list(lv, &error);
    g_assert_null(list);
    g_assert_error(error, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_NOT_CONNECTED);
    g_clear_error(&error);
    g_assert_false(test_detach(lv, TEST_UUID, "/run/a.sock", &error));
    g_assert_error(error, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_NOT_CONNECTED);
    g_assert_false(gw_libvirt_is_connected(lv));
    g_clear_pointer(&lv, gw_libvirt_free);
    test_recorder_clear(&rec);
}

static void
test_backoff(void)
{
    TestRecorder rec;
    g_autoptr(GwLibvirt) lv = gw_libvirt_new("test:///nonexistent/usbgw/none.xml", NULL);
    GwLibvirtStatus status = {0};
    guint warnings_before = test_connect_warnings;
    guint expected_delay = GW_LIBVIRT_BACKOFF_INITIAL_MS;
    gint64 previous = 0;
    gint64 start;

    test_recorder_init(&rec);
    gw_libvirt_set_handlers(lv, &test_handlers, &rec);
    gw_libvirt_start(lv);
    for (guint attempt = 1; attempt <= 3; attempt++) {
        gint64 now;

        TEST_WAIT_UNTIL((gw_libvirt_get_status(lv, &status), gw_libvirt_status_clear(&status),
                         status.failed_attempts == attempt),
                        expected_delay + TEST_BACKOFF_SLACK_MS);
        now = g_get_monotonic_time();
        gw_libvirt_get_status(lv, &status);
        g_test_message("attempt %u failed after %.3f s; next in %u ms: %s", attempt,
                       previous != 0 ? (now - previous) / 1e6 : 0.0, status.retry_delay_ms,
                       status.last_error);
        g_assert_false(status.connected);
        g_assert_cmpuint(status.retry_delay_ms, ==, expected_delay);
        g_assert_nonnull(strstr(status.last_error,
                                "cannot connect to libvirt at test:///nonexistent/usbgw/none.xml"));
        /* the retry came no earlier than the delay asked for */
        if (previous != 0)
            g_assert_cmpint(now - previous, >=, (expected_delay / 2) * G_TIME_SPAN_MILLISECOND);
        gw_libvirt_status_clear(&status);
        previous = now;
        expected_delay *= 2;
    }
    /* one warning for the same failure, not one per retry */
    g_assert_cmpuint(test_connect_warnings - warnings_before, ==, 1);
    g_assert_cmpuint(rec.up + rec.down, ==, 0);

    /* free mid-backoff: returns at once, no retry after */
    start = g_get_monotonic_time();
    g_clear_pointer(&lv, gw_libvirt_free);
    g_assert_cmpint(g_get_monotonic_time() - start, <, TEST_FREE_FAST_MS * G_TIME_SPAN_MILLISECOND);
    test_drain(expected_delay / 2 + 200);
    g_assert_cmpuint(test_connect_warnings - warnings_before, ==, 1);
    g_assert_cmpuint(rec.up + rec.down, ==, 0);
    test_recorder_clear(&rec);
}

static const gchar test_node_xml[] =
    "<node><domain type='test'><name>from-file</name>"
    "<uuid>11111111-2222-4333-8444-555555555555</uuid><memory>65536</memory>"
    "<os><type>hvm</type></os><devices>"
    "<controller type='usb' index='0' model='qemu-xhci'/>"
    "<redirdev bus='usb' type='unix'><source mode='connect' path='/run/file &amp; co.sock'/>"
    "</redirdev></devices></domain></node>";

static void
test_reconnect_after_failure(void)
{
    TestRecorder rec;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *dir = g_dir_make_tmp("usbgw-libvirt-XXXXXX", &error);
    g_autofree gchar *file = g_build_filename(dir, "node.xml", NULL);
    g_autofree gchar *uri = g_strdup_printf("test://%s", file);
    g_autoptr(GwLibvirt) lv = gw_libvirt_new(uri, NULL);
    g_autoptr(GPtrArray) list = NULL;
    GwLibvirtStatus status = {0};
    GwLibvirtDomain *domain;

    g_assert_no_error(error);
    test_recorder_init(&rec);
    gw_libvirt_set_handlers(lv, &test_handlers, &rec);
    gw_libvirt_start(lv);
    TEST_WAIT_UNTIL((gw_libvirt_get_status(lv, &status), gw_libvirt_status_clear(&status),
                     status.failed_attempts >= 1),
                    TEST_TIMEOUT_MS);
    g_assert_cmpuint(rec.up, ==, 0);

    /* the host "comes back": the next retry connects */
    g_assert_true(g_file_set_contents(file, test_node_xml, -1, &error));
    g_assert_no_error(error);
    TEST_WAIT_UNTIL(rec.up == 1, GW_LIBVIRT_BACKOFF_INITIAL_MS * 4 + TEST_BACKOFF_SLACK_MS);
    gw_libvirt_get_status(lv, &status);
    g_assert_true(status.connected);
    g_assert_cmpuint(status.failed_attempts, ==, 0);
    g_assert_cmpuint(status.retry_delay_ms, ==, 0);
    g_assert_null(status.last_error);
    gw_libvirt_status_clear(&status);

    list = test_list(lv, &error);
    g_assert_no_error(error);
    domain = test_list_find(list, "11111111-2222-4333-8444-555555555555");
    g_assert_nonnull(domain);
    g_assert_cmpstr(domain->name, ==, "from-file");
    g_assert_cmpuint(domain->redirdev_paths->len, ==, 1);
    g_assert_cmpstr(g_ptr_array_index(domain->redirdev_paths, 0), ==, "/run/file & co.sock");

    g_clear_pointer(&lv, gw_libvirt_free);
    g_assert_cmpint(g_unlink(file), ==, 0);
    g_assert_cmpint(g_rmdir(dir), ==, 0);
    test_recorder_clear(&rec);
}

static void
test_free_in_flight(void)
{
    enum { N_OPS = 8 };
    TestRecorder rec;
    GwLibvirt *lv;
    TestAsync ops[N_OPS] = {{0}};
    guint cancelled = 0;
    guint completed = 0;

    test_recorder_init(&rec);
    lv = test_connect(TEST_URI, &rec);
    for (guint i = 0; i < N_OPS; i++) {
        switch (i % 3) {
        case 0:
            gw_libvirt_list_running_async(lv, NULL, test_async_cb, &ops[i]);
            break;
        case 1:
            gw_libvirt_attach_redirdev_async(lv, TEST_UUID, "/run/x.sock", "ua-x", NULL,
                                             test_async_cb, &ops[i]);
            break;
        default:
            gw_libvirt_detach_redirdev_async(lv, TEST_UUID, "/run/x.sock", NULL, test_async_cb,
                                             &ops[i]);
            break;
        }
    }
    gw_libvirt_free(lv);
    /* every operation completes exactly once, after free, on this thread */
    for (guint i = 0; i < N_OPS; i++)
        g_assert_cmpuint(ops[i].calls, ==, 0);
    TEST_WAIT_UNTIL(ops[N_OPS - 1].calls == 1, TEST_TIMEOUT_MS);
    test_drain(100);
    for (guint i = 0; i < N_OPS; i++) {
        g_autoptr(GError) error = NULL;
        gboolean ok;
        g_autoptr(GPtrArray) list = NULL;

        g_assert_cmpuint(ops[i].calls, ==, 1);
        /* _finish does not touch the freed GwLibvirt */
        if (i % 3 == 0) {
            list = gw_libvirt_list_running_finish(lv, ops[i].result, &error);
            ok = list != NULL;
        } else if (i % 3 == 1) {
            ok = gw_libvirt_attach_redirdev_finish(lv, ops[i].result, &error);
        } else {
            ok = gw_libvirt_detach_redirdev_finish(lv, ops[i].result, &error);
        }
        if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            cancelled++;
        else
            completed++;
        /* attach fails on test:///; the others succeed */
        if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            g_assert_true(ok == (i % 3 != 1));
        test_async_clear(&ops[i]);
    }
    g_test_message("%u completed, %u cancelled by free", completed, cancelled);
    g_assert_cmpuint(completed + cancelled, ==, N_OPS);

    /* free while the first connect is still queued or running */
    lv = gw_libvirt_new(TEST_URI, NULL);
    gw_libvirt_set_handlers(lv, &test_handlers, &rec);
    gw_libvirt_start(lv);
    gw_libvirt_free(lv);
    test_drain(200);
    g_assert_cmpuint(rec.up, ==, 1);
    test_recorder_clear(&rec);
}

/* test:///FIFO: the test driver's open() of the file blocks until someone
 * writes the FIFO, which gives the worker a libvirt call that stays in
 * flight as long as the test wants. */
typedef struct {
    gchar *dir;
    gchar *fifo;
    gchar *uri;
} TestFifo;

static void
test_fifo_init(TestFifo *fifo)
{
    g_autoptr(GError) error = NULL;

    fifo->dir = g_dir_make_tmp("usbgw-libvirt-XXXXXX", &error);
    g_assert_no_error(error);
    fifo->fifo = g_build_filename(fifo->dir, "node.xml", NULL);
    fifo->uri = g_strdup_printf("test://%s", fifo->fifo);
    g_assert_cmpint(mkfifo(fifo->fifo, 0600), ==, 0);
}

static void
test_fifo_clear(TestFifo *fifo)
{
    g_assert_cmpint(g_unlink(fifo->fifo), ==, 0);
    g_assert_cmpint(g_rmdir(fifo->dir), ==, 0);
    g_free(fifo->dir);
    g_free(fifo->fifo);
    g_free(fifo->uri);
}

#define TEST_FIFO_HOLD_MS 300

/* Thread: after TEST_FIFO_HOLD_MS, feeds the node XML into the FIFO. */
static gpointer
test_fifo_writer(gpointer data)
{
    const gchar *path = data;

    g_usleep(TEST_FIFO_HOLD_MS * G_TIME_SPAN_MILLISECOND);
    /* g_file_set_contents would replace the FIFO with a file */
    {
        FILE *out = fopen(path, "w");
        g_assert_nonnull(out);
        g_assert_cmpint(fputs(test_node_xml, out), >=, 0);
        g_assert_cmpint(fclose(out), ==, 0);
    }
    return NULL;
}

static void
test_free_while_connecting(void)
{
    TestRecorder rec;
    TestFifo fifo;
    TestAsync list = {0}, attach = {0};
    g_autoptr(GError) error = NULL;
    GThread *writer;
    GwLibvirt *lv;
    gint64 start, took;

    test_recorder_init(&rec);
    test_fifo_init(&fifo);
    lv = gw_libvirt_new(fifo.uri, NULL);
    gw_libvirt_set_handlers(lv, &test_handlers, &rec);
    gw_libvirt_start(lv);
    gw_libvirt_list_running_async(lv, NULL, test_async_cb, &list);
    gw_libvirt_attach_redirdev_async(lv, TEST_UUID, "/run/a.sock", "ua-a", NULL, test_async_cb,
                                     &attach);
    writer = g_thread_new("fifo-writer", test_fifo_writer, fifo.fifo);
    /* the worker is now blocked inside virConnectOpen() */
    g_usleep(TEST_FIFO_HOLD_MS / 3 * G_TIME_SPAN_MILLISECOND);
    start = g_get_monotonic_time();
    gw_libvirt_free(lv);
    took = g_get_monotonic_time() - start;
    g_thread_join(writer);
    g_test_message("free waited %.3f s for the connect in flight", took / 1e6);
    /* it waited for the call, not for the stop timeout */
    g_assert_cmpint(took, >=, TEST_FIFO_HOLD_MS / 3 * G_TIME_SPAN_MILLISECOND);
    g_assert_cmpint(took, <, GW_LIBVIRT_STOP_TIMEOUT_MS / 2 * G_TIME_SPAN_MILLISECOND);

    /* the queued operations were cancelled, not run; no handler ran */
    TEST_WAIT_UNTIL(list.calls == 1 && attach.calls == 1, TEST_TIMEOUT_MS);
    g_assert_null(gw_libvirt_list_running_finish(lv, list.result, &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    g_clear_error(&error);
    g_assert_false(gw_libvirt_attach_redirdev_finish(lv, attach.result, &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    test_drain(100);
    g_assert_cmpuint(list.calls + attach.calls, ==, 2);
    g_assert_cmpuint(rec.up + rec.down + rec.events->len, ==, 0);
    test_async_clear(&list);
    test_async_clear(&attach);
    test_fifo_clear(&fifo);
    test_recorder_clear(&rec);
}

static void
test_free_stuck_worker(void)
{
    TestRecorder rec;
    TestFifo fifo;
    GwLibvirt *lv;
    gint64 start, took;

    if (!g_test_slow()) {
        g_test_skip("waits GW_LIBVIRT_STOP_TIMEOUT_MS; run with -m slow");
        return;
    }
    test_recorder_init(&rec);
    test_fifo_init(&fifo);
    lv = gw_libvirt_new(fifo.uri, NULL);
    gw_libvirt_set_handlers(lv, &test_handlers, &rec);
    gw_libvirt_start(lv);
    g_usleep(TEST_FIFO_HOLD_MS * G_TIME_SPAN_MILLISECOND);
    start = g_get_monotonic_time();
    gw_libvirt_free(lv); /* gives up on the worker after the stop timeout */
    took = g_get_monotonic_time() - start;
    g_assert_cmpint(took, >=, GW_LIBVIRT_STOP_TIMEOUT_MS * G_TIME_SPAN_MILLISECOND);
    g_assert_cmpint(took, <, (GW_LIBVIRT_STOP_TIMEOUT_MS + 1000) * G_TIME_SPAN_MILLISECOND);
    /* release the worker: it connects, sees it was stopped, closes, exits */
    g_thread_join(g_thread_new("fifo-writer", test_fifo_writer, fifo.fifo));
    test_drain(500);
    g_assert_cmpuint(rec.up + rec.down + rec.events->len, ==, 0);
    test_fifo_clear(&fifo);
    test_recorder_clear(&rec);
}

static void
test_cancelled(void)
{
    TestRecorder rec;
    g_autoptr(GwLibvirt) lv = NULL;
    g_autoptr(GCancellable) cancellable = g_cancellable_new();
    g_autoptr(GError) error = NULL;
    TestAsync async = {0};

    test_recorder_init(&rec);
    lv = test_connect(TEST_URI, &rec);
    g_cancellable_cancel(cancellable);
    gw_libvirt_list_running_async(lv, cancellable, test_async_cb, &async);
    TEST_WAIT_UNTIL(async.calls == 1, TEST_TIMEOUT_MS);
    g_assert_null(gw_libvirt_list_running_finish(lv, async.result, &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    test_async_clear(&async);
    g_clear_pointer(&lv, gw_libvirt_free);
    test_recorder_clear(&rec);
}

static void
test_two_instances(void)
{
    static const gchar *uuid = "2b3c4d5e-6f70-4182-9304-a5b6c7d8e9f0";
    TestRecorder rec_a, rec_b, rec_c;
    GwLibvirt *a, *b, *c;
    g_autoptr(virDomain) dom = test_define("usbgw-two", uuid, NULL);
    g_autofree gchar *started = g_strdup_printf("started usbgw-two %s", uuid);
    g_autofree gchar *stopped = g_strdup_printf("stopped usbgw-two %s", uuid);

    test_recorder_init(&rec_a);
    test_recorder_init(&rec_b);
    test_recorder_init(&rec_c);
    a = test_connect(TEST_URI, &rec_a);
    b = test_connect(TEST_URI, &rec_b);
    g_assert_cmpint(virDomainCreate(dom), ==, 0);
    TEST_WAIT_UNTIL(test_recorder_has(&rec_a, started) && test_recorder_has(&rec_b, started),
                    TEST_TIMEOUT_MS);
    /* the survivor keeps its events */
    gw_libvirt_free(a);
    g_assert_cmpint(virDomainDestroy(dom), ==, 0);
    TEST_WAIT_UNTIL(test_recorder_has(&rec_b, stopped), TEST_TIMEOUT_MS);
    g_assert_false(test_recorder_has(&rec_a, stopped));
    gw_libvirt_free(b);
    /* and a new one after both were freed gets them too */
    c = test_connect(TEST_URI, &rec_c);
    g_assert_cmpint(virDomainCreate(dom), ==, 0);
    TEST_WAIT_UNTIL(test_recorder_has(&rec_c, started), TEST_TIMEOUT_MS);
    gw_libvirt_free(c);
    test_undefine(dom);
    test_recorder_clear(&rec_a);
    test_recorder_clear(&rec_b);
    test_recorder_clear(&rec_c);
}

static void
test_quiet_error(void *user_data, virErrorPtr error)
{
}

int
main(int argc, char **argv)
{
    int rc;

    g_test_init(&argc, &argv, NULL);
    /* warnings of this domain go to test_warning_handler, not abort() */
    g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
    g_log_set_handler(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, test_warning_handler, NULL);
    test_main_thread = g_thread_self();
    virSetErrorFunc(NULL, test_quiet_error);
    test_conn = virConnectOpen(TEST_URI);
    g_assert_nonnull(test_conn);

    g_test_add_func("/libvirt/parse", test_parse);
    g_test_add_func("/libvirt/parse-metadata", test_parse_metadata);
    g_test_add_func("/libvirt/parse-metadata-bounds", test_parse_metadata_bounds);
    g_test_add_func("/libvirt/usb-bus", test_usb_bus);
    g_test_add_func("/libvirt/add-usb-controller", test_add_usb_controller);
    g_test_add_func("/libvirt/metadata-test-driver", test_metadata_test_driver);
    g_test_add_func("/libvirt/usb-bus-test-driver", test_usb_bus_test_driver);
    g_test_add_func("/libvirt/connect-list", test_connect_list);
    g_test_add_func("/libvirt/list-redirdevs", test_list_redirdevs);
    g_test_add_func("/libvirt/lifecycle", test_lifecycle);
    g_test_add_func("/libvirt/attach-test-driver", test_attach_test_driver);
    g_test_add_func("/libvirt/attach-arguments", test_attach_arguments);
    g_test_add_func("/libvirt/detach-test-driver", test_detach_test_driver);
    g_test_add_func("/libvirt/not-connected", test_not_connected);
    g_test_add_func("/libvirt/backoff", test_backoff);
    g_test_add_func("/libvirt/reconnect-after-failure", test_reconnect_after_failure);
    g_test_add_func("/libvirt/free-queued", test_free_in_flight);
    g_test_add_func("/libvirt/free-while-connecting", test_free_while_connecting);
    g_test_add_func("/libvirt/free-stuck-worker", test_free_stuck_worker);
    g_test_add_func("/libvirt/cancelled", test_cancelled);
    g_test_add_func("/libvirt/two-instances", test_two_instances);
    rc = g_test_run();
    virConnectClose(test_conn);
    return rc;
}
