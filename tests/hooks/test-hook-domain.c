/* hook_domain_parse() and hook_domain_read_fd(): what every domain XML gives
 * (name, UUID, usb-redir socket paths or the socket problem) or which
 * one-line error it gets, and the size and time bounds on stdin. */
#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "hook-domain.h"

#define UUID       "8c1f0a2e-5d2b-4c1e-9a57-3f6b1e2d4c5a"
#define UUID_UPPER "8C1F0A2E-5D2B-4C1E-9A57-3F6B1E2D4C5A"
#define FIELDS     "<name>vm1</name><uuid>" UUID "</uuid>"
#define SOCK0      "/run/usbgw/vm/" UUID "/0.sock"
#define SOCK1      "/run/usbgw/vm/" UUID "/1.sock"
#define SOCK2      "/run/usbgw/vm/" UUID "/2.sock"

/* A usb-redir device whose QEMU connects to the unix socket @path. */
#define UNIX_REDIRDEV(path)                                                                        \
    "<redirdev bus='usb' type='unix'><source mode='connect' path='" path "'/></redirdev>"
/* A domain with @devices as the children of its <devices>. */
#define WITH_DEVICES(devices) "<domain>" FIELDS "<devices>" devices "</devices></domain>"

/* What `virsh dumpxml` gives for a small VM, with the elements that carry
 * a <name> of their own. */
#define LIBVIRT_DOMAIN                                                                             \
    "<domain type='kvm' id='3'>\n"                                                                 \
    "  <name>cad-01</name>\n"                                                                      \
    "  <uuid>" UUID "</uuid>\n"                                                                    \
    "  <title>CAD &amp; CAM</title>\n"                                                             \
    "  <metadata>\n"                                                                               \
    "    <app:vm xmlns:app='http://example.com/app'><app:name>other</app:name></app:vm>\n"         \
    "  </metadata>\n"                                                                              \
    "  <memory unit='KiB'>524288</memory>\n"                                                       \
    "  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>\n"                             \
    "  <devices>\n"                                                                                \
    "    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"                                       \
    "    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\n"                     \
    "      <source file='/var/lib/libvirt/images/cad-01.qcow2'/><target dev='vda'/></disk>\n"      \
    "    <redirdev bus='usb' type='unix'><source mode='connect' path='" SOCK0 "'>\n"               \
    "      <reconnect enabled='yes' timeout='2'/></source></redirdev>\n"                           \
    "    <redirfilter><usbdev vendor='0x0529' allow='yes'/><usbdev allow='no'/></redirfilter>\n"   \
    "  </devices>\n"                                                                               \
    "  <seclabel type='dynamic' model='apparmor' relabel='yes'/>\n"                                \
    "</domain>\n"

typedef struct {
    const gchar *name;
    const gchar *input;
    gsize len;              /* 0: strlen(input) */
    const gchar *argv_name; /* NULL: not checked */
    const gchar *want_name; /* NULL: an error is expected */
    const gchar *want_uuid; /* when want_name is set */
    /* when want_name is set: the socket paths, NULL-terminated (none: empty) */
    const gchar *want_sockets[4];
    /* when want_name is set, a part of the sockets_error's message (NULL:
     * no sockets_error); its code is want_code */
    const gchar *want_sockets_text;
    HookDomainError want_code;
    const gchar *want_text; /* a part of the error message */
} ParseCase;

static const ParseCase parse_cases[] = {
    /* ---- good ---- */
    {.name = "libvirt-dumpxml",
     .input = LIBVIRT_DOMAIN,
     .argv_name = "cad-01",
     .want_name = "cad-01",
     .want_uuid = UUID,
     .want_sockets = {SOCK0, NULL}},
    {.name = "no-argv-name",
     .input = "<domain>" FIELDS "</domain>",
     .want_name = "vm1",
     .want_uuid = UUID},
    {.name = "declaration-doctype-comment-pi",
     .input = "<?xml version='1.0' encoding='UTF-8'?>\n<!DOCTYPE domain>\n<!-- made by hand -->\n"
              "<?usbgw x?><domain><!-- c -->" FIELDS "</domain>",
     .argv_name = "vm1",
     .want_name = "vm1",
     .want_uuid = UUID},
    {.name = "uuid-upper-case-lowered",
     .input = "<domain><name>vm1</name><uuid>" UUID_UPPER "</uuid></domain>",
     .argv_name = "vm1",
     .want_name = "vm1",
     .want_uuid = UUID},
    {.name = "uuid-surrounding-whitespace",
     .input = "<domain><name>vm1</name><uuid>\n  " UUID "\t\n</uuid></domain>",
     .argv_name = "vm1",
     .want_name = "vm1",
     .want_uuid = UUID},
    {.name = "uuid-before-name",
     .input = "<domain><uuid>" UUID "</uuid><name>vm1</name></domain>",
     .argv_name = "vm1",
     .want_name = "vm1",
     .want_uuid = UUID},
    {.name = "name-predefined-entities",
     .input = "<domain><name>a&amp;b&lt;c&gt;d&quot;e&apos;f</name><uuid>" UUID "</uuid></domain>",
     .argv_name = "a&b<c>d\"e'f",
     .want_name = "a&b<c>d\"e'f",
     .want_uuid = UUID},
    {.name = "name-character-references",
     .input = "<domain><name>&#x76;&#109;1</name><uuid>" UUID "</uuid></domain>",
     .argv_name = "vm1",
     .want_name = "vm1",
     .want_uuid = UUID},
    {.name = "name-cdata",
     .input = "<domain><name><![CDATA[x&y<z]]></name><uuid>" UUID "</uuid></domain>",
     .argv_name = "x&y<z",
     .want_name = "x&y<z",
     .want_uuid = UUID},
    {.name = "name-utf8",
     .input = "<domain><name>caf\xc3\xa9-\xe6\x9c\xba</name><uuid>" UUID "</uuid></domain>",
     .argv_name = "caf\xc3\xa9-\xe6\x9c\xba",
     .want_name = "caf\xc3\xa9-\xe6\x9c\xba",
     .want_uuid = UUID},
    {.name = "name-whitespace-kept",
     .input = "<domain><name> vm1 </name><uuid>" UUID "</uuid></domain>",
     .argv_name = " vm1 ",
     .want_name = " vm1 ",
     .want_uuid = UUID},
    {.name = "nested-names-are-not-the-domain-name",
     .input = "<domain><metadata><app><name>evil</name></app></metadata>"
              "<devices><disk><name>disk</name></disk><hostdev><uuid>" UUID_UPPER "</uuid>"
              "</hostdev></devices><name>vm1</name><uuid>" UUID "</uuid></domain>",
     .argv_name = "vm1",
     .want_name = "vm1",
     .want_uuid = UUID},
    {.name = "nested-domain-element-ignored",
     .input = "<domain><devices><domain><name>inner</name><uuid>" UUID_UPPER
              "</uuid></domain></devices>" FIELDS "</domain>",
     .argv_name = "vm1",
     .want_name = "vm1",
     .want_uuid = UUID},
    /* parsing stops once both fields and <devices> are read: what follows
     * cannot fail the hook */
    {.name = "nul-after-devices",
     .input = "<domain>" FIELDS "<devices>" UNIX_REDIRDEV(SOCK0) "</devices>\000</domain>",
     .len =
         sizeof("<domain>" FIELDS "<devices>" UNIX_REDIRDEV(SOCK0) "</devices>\000</domain>") - 1,
     .argv_name = "vm1",
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_sockets = {SOCK0, NULL}},
    {.name = "junk-after-devices",
     .input = "<domain>" FIELDS "<devices/><description>&nbsp;</description>\xff\xfe</oops>",
     .argv_name = "vm1",
     .want_name = "vm1",
     .want_uuid = UUID},
    {.name = "redirdev-after-devices-not-read",
     .input = "<domain>" FIELDS "<devices/>" UNIX_REDIRDEV("relative") "</domain>",
     .argv_name = "vm1",
     .want_name = "vm1",
     .want_uuid = UUID},
    {.name = "devices-after-the-root",
     .input = "<domain>" FIELDS "</domain><devices>" UNIX_REDIRDEV("x.sock") "</devices>\xff",
     .argv_name = "vm1",
     .want_name = "vm1",
     .want_uuid = UUID},
    {.name = "fields-after-devices",
     .input = "<domain><devices>" UNIX_REDIRDEV(SOCK0) "</devices>" FIELDS "</domain>",
     .argv_name = "vm1",
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_sockets = {SOCK0, NULL}},

    /* ---- usb-redir sockets ---- */
    {.name = "sockets-no-devices",
     .input = "<domain>" FIELDS "</domain>",
     .want_name = "vm1",
     .want_uuid = UUID},
    {.name = "sockets-no-redirdevs",
     .input = WITH_DEVICES("<disk type='file'><source file='/var/lib/a.qcow2'/></disk>"
                           "<serial type='unix'><source mode='connect' path='/run/s.sock'/>"
                           "</serial>"),
     .want_name = "vm1",
     .want_uuid = UUID},
    {.name = "sockets-three-in-order",
     .input = WITH_DEVICES(
         UNIX_REDIRDEV(SOCK2) "<controller type='usb' model='qemu-xhci'/>"
                              "<redirdev type='unix' bus='usb'><alias name='redir1'/>"
                              "<source path='" SOCK0 "' mode='connect'><reconnect enabled='yes'/>"
                              "</source><address type='usb' bus='0' port='2'/></redirdev>"
                              "<redirdev type='unix'><source path='" SOCK1 "'/></redirdev>"),
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_sockets = {SOCK2, SOCK0, SOCK1, NULL}},
    {.name = "sockets-other-types-ignored",
     .input = WITH_DEVICES("<redirdev bus='usb' type='spicevmc'/>" UNIX_REDIRDEV(
         SOCK0) "<redirdev bus='usb' type='tcp'><source mode='connect' "
                "host='localhost' service='4000'/></redirdev>"
                "<redirdev bus='other' type='unix'><source mode='connect' "
                "path='/run/other.sock'/></redirdev>"),
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_sockets = {SOCK0, NULL}},
    {.name = "sockets-without-path-ignored",
     .input = WITH_DEVICES("<redirdev bus='usb' type='unix'/>"
                           "<redirdev bus='usb' type='unix'><source mode='connect'/></redirdev>"
                           "<redirdev bus='usb' type='unix'><alias name='x'/></redirdev>"),
     .want_name = "vm1",
     .want_uuid = UUID},
    {.name = "sockets-bind-mode-ignored",
     .input = WITH_DEVICES("<redirdev bus='usb' type='unix'><source mode='bind' "
                           "path='/run/qemu-listens.sock'/></redirdev>"),
     .want_name = "vm1",
     .want_uuid = UUID},
    {.name = "sockets-first-source-counts",
     .input = WITH_DEVICES("<redirdev bus='usb' type='unix'><source mode='connect' path='" SOCK0
                           "'/><source mode='connect' path='relative'/></redirdev>"),
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_sockets = {SOCK0, NULL}},
    {.name = "sockets-nested-redirdevs-ignored",
     .input = "<domain>" FIELDS UNIX_REDIRDEV("/run/top.sock") "<metadata><devices>" UNIX_REDIRDEV(
         "/run/meta.sock") "</devices></metadata>"
                           "<devices><hub>" UNIX_REDIRDEV(
                               "/run/hub.sock") "</hub>"
                                                "<devices>" UNIX_REDIRDEV(
                                                    "/run/inner.sock") "</devices>"
                                                                       "<redirdev bus='usb' "
                                                                       "type='unix'><x><source "
                                                                       "mode='connect' "
                                                                       "path='/run/deep.sock'/>"
                                                                       "</x></"
                                                                       "redirdev>" UNIX_REDIRDEV(
                                                                           SOCK1) "</devices></"
                                                                                  "domain>",
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_sockets = {SOCK1, NULL}},
    {.name = "sockets-entities-and-dots",
     .input = WITH_DEVICES(UNIX_REDIRDEV("/run/a&amp;b/..x/x../.&#x2e;./.sock")),
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_sockets = {"/run/a&b/..x/x../.../.sock", NULL}},

    /* ---- socket problems: the domain parses, sockets_error says why ---- */
    {.name = "socket-relative-path",
     .input = WITH_DEVICES(UNIX_REDIRDEV(SOCK0) UNIX_REDIRDEV("run/usbgw/1.sock")),
     .argv_name = "vm1",
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_code = HOOK_DOMAIN_ERROR_BAD_SOCKET,
     .want_sockets_text = "domain XML: line 1 char 294: <redirdev type='unix'> socket path "
                          "\"run/usbgw/1.sock\" is not absolute"},
    {.name = "socket-empty-path",
     .input = WITH_DEVICES(UNIX_REDIRDEV("")),
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_code = HOOK_DOMAIN_ERROR_BAD_SOCKET,
     .want_sockets_text = "socket path \"\" is not absolute"},
    {.name = "socket-dot-dot",
     .input = WITH_DEVICES(UNIX_REDIRDEV("/run/usbgw/vm/../../etc/x.sock")),
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_code = HOOK_DOMAIN_ERROR_BAD_SOCKET,
     .want_sockets_text = "socket path \"/run/usbgw/vm/../../etc/x.sock\" has a \"..\" component"},
    {.name = "socket-dot-dot-last",
     .input = WITH_DEVICES(UNIX_REDIRDEV("/run/usbgw/&#x2e;.")),
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_code = HOOK_DOMAIN_ERROR_BAD_SOCKET,
     .want_sockets_text = "has a \"..\" component"},
    {.name = "socket-bad-path-before-the-fields",
     .input = "<domain><devices>" UNIX_REDIRDEV(SOCK0) UNIX_REDIRDEV("x.sock") "</devices>" FIELDS
                                                                               "</domain>",
     .argv_name = "vm1",
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_code = HOOK_DOMAIN_ERROR_BAD_SOCKET,
     .want_sockets_text = "\"x.sock\" is not absolute"},
    /* only the first problem is kept, and parsing stops there */
    {.name = "socket-first-problem-stops",
     .input = "<domain>" FIELDS "<devices>" UNIX_REDIRDEV("a.sock")
         UNIX_REDIRDEV("/run/../b.sock") "&nbsp;</devices><name>x</name></domain>",
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_code = HOOK_DOMAIN_ERROR_BAD_SOCKET,
     .want_sockets_text = "\"a.sock\" is not absolute"},
    {.name = "socket-invalid-utf8",
     .input = WITH_DEVICES(UNIX_REDIRDEV("/run/\xc3\x28.sock")),
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_sockets_text = "UTF-8"},
    {.name = "duplicate-devices",
     .input = "<domain><devices/><devices>" UNIX_REDIRDEV(SOCK0) "</devices>" FIELDS "</domain>",
     .argv_name = "vm1",
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_code = HOOK_DOMAIN_ERROR_DUPLICATE,
     .want_sockets_text = "<domain> has a second <devices>"},
    /* once the name and the UUID are read, bad XML costs only the sockets,
     * as the hook read nothing further before it knew of sockets */
    {.name = "junk-before-devices",
     .input = "<domain>" FIELDS "<description>&nbsp;</description><devices/></domain>",
     .argv_name = "vm1",
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_sockets_text = "domain XML is not well-formed"},
    {.name = "junk-inside-devices",
     .input = WITH_DEVICES(UNIX_REDIRDEV(SOCK0) "<x a=b/>"),
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_sockets_text = "domain XML is not well-formed"},
    {.name = "truncated-inside-devices",
     .input = "<domain>" FIELDS "<devices>" UNIX_REDIRDEV(SOCK0) "<redirdev bus='usb'",
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_sockets_text = "domain XML is not well-formed"},
    {.name = "nul-before-devices",
     .input = "<domain>" FIELDS "\000<devices/></domain>",
     .len = sizeof("<domain>" FIELDS "\000<devices/></domain>") - 1,
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_sockets_text = "a NUL byte at offset 73"},
    {.name = "cdata-invalid-utf8-inside-devices",
     .input = "<domain>" FIELDS
              "<devices><![CDATA[\xff]]>" UNIX_REDIRDEV("x.sock") "</devices><devices/><x",
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_sockets_text = "UTF-8"},
    {.name = "second-name-before-devices",
     .input = "<domain>" FIELDS "<name>vm2</name><devices/></domain>",
     .argv_name = "vm1",
     .want_name = "vm1",
     .want_uuid = UUID,
     .want_code = HOOK_DOMAIN_ERROR_DUPLICATE,
     .want_sockets_text = "<domain> has a second <name>"},

    /* ---- bad ---- */
    {.name = "empty",
     .input = "",
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_text = "not well-formed"},
    {.name = "whitespace-only",
     .input = " \n\t\n",
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_text = "not well-formed"},
    {.name = "binary-junk",
     .input = "\x7f"
              "ELF\x02\x01\x01\x00\x00\x00\x00\x00\xff\xfe\x80\x01",
     .len = 16,
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_text = "not well-formed"},
    {.name = "nul-inside-name",
     .input = "<domain><name>vm\0001</name><uuid>" UUID "</uuid></domain>",
     .len = sizeof("<domain><name>vm\0001</name><uuid>" UUID "</uuid></domain>") - 1,
     .argv_name = "vm",
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_text = "a NUL byte at offset 16"},
    {.name = "nul-inside-uuid",
     .input = "<domain><name>vm</name><uuid>" UUID "\000</uuid></domain>",
     .len = sizeof("<domain><name>vm</name><uuid>" UUID "\000</uuid></domain>") - 1,
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_text = "a NUL byte at offset 65"},
    {.name = "invalid-utf8-name",
     .input = "<domain><name>vm\xc3\x28</name><uuid>" UUID "</uuid></domain>",
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_text = "UTF-8"},
    {.name = "not-a-domain",
     .input = "<network><name>default</name><uuid>" UUID "</uuid></network>",
     .want_code = HOOK_DOMAIN_ERROR_NOT_DOMAIN,
     .want_text = "root element is <network>, expected <domain>"},
    {.name = "missing-uuid",
     .input = "<domain><name>vm1</name><devices/></domain>",
     .argv_name = "vm1",
     .want_code = HOOK_DOMAIN_ERROR_NO_UUID,
     .want_text = "domain XML of \"vm1\" has no <domain><uuid>"},
    {.name = "uuid-only-nested",
     .input = "<domain><name>vm1</name><devices><uuid>" UUID "</uuid></devices></domain>",
     .argv_name = "vm1",
     .want_code = HOOK_DOMAIN_ERROR_NO_UUID,
     .want_text = "has no <domain><uuid>"},
    {.name = "missing-name",
     .input = "<domain><uuid>" UUID "</uuid></domain>",
     .want_code = HOOK_DOMAIN_ERROR_NO_NAME,
     .want_text = "has no <domain><name>"},
    {.name = "name-only-nested",
     .input =
         "<domain><devices><disk><name>vm1</name></disk></devices><uuid>" UUID "</uuid></domain>",
     .argv_name = "vm1",
     .want_code = HOOK_DOMAIN_ERROR_NO_NAME,
     .want_text = "has no <domain><name>"},
    {.name = "empty-name",
     .input = "<domain><name></name><uuid>" UUID "</uuid></domain>",
     .want_code = HOOK_DOMAIN_ERROR_BAD_NAME,
     .want_text = "<domain><name> is empty"},
    {.name = "name-holds-an-element",
     .input = "<domain><name>vm<b/>1</name><uuid>" UUID "</uuid></domain>",
     .want_code = HOOK_DOMAIN_ERROR_BAD_NAME,
     .want_text = "<domain><name> holds an element <b>"},
    {.name = "uuid-holds-an-element",
     .input = "<domain><name>vm1</name><uuid><x>" UUID "</x></uuid></domain>",
     .want_code = HOOK_DOMAIN_ERROR_BAD_UUID,
     .want_text = "<domain><uuid> holds an element <x>"},
    {.name = "bad-uuid",
     .input = "<domain><name>vm1</name><uuid>not-a-uuid</uuid></domain>",
     .want_code = HOOK_DOMAIN_ERROR_BAD_UUID,
     .want_text = "<domain><uuid> \"not-a-uuid\" is not a UUID"},
    {.name = "uuid-without-dashes",
     .input = "<domain><name>vm1</name><uuid>8c1f0a2e5d2b4c1e9a573f6b1e2d4c5a</uuid></domain>",
     .want_code = HOOK_DOMAIN_ERROR_BAD_UUID,
     .want_text = "is not a UUID"},
    {.name = "uuid-trailing-junk",
     .input = "<domain><name>vm1</name><uuid>" UUID "-00</uuid></domain>",
     .want_code = HOOK_DOMAIN_ERROR_BAD_UUID,
     .want_text = "is not a UUID"},
    {.name = "uuid-non-hex",
     .input = "<domain><name>vm1</name><uuid>8c1f0a2e-5d2b-4c1e-9a57-3f6b1e2d4c5g</uuid></domain>",
     .want_code = HOOK_DOMAIN_ERROR_BAD_UUID,
     .want_text = "is not a UUID"},
    {.name = "empty-uuid",
     .input = "<domain><name>vm1</name><uuid></uuid></domain>",
     .want_code = HOOK_DOMAIN_ERROR_BAD_UUID,
     .want_text = "<domain><uuid> \"\" is not a UUID"},
    {.name = "duplicate-name",
     .input = "<domain><name>a</name><name>b</name><uuid>" UUID "</uuid></domain>",
     .want_code = HOOK_DOMAIN_ERROR_DUPLICATE,
     .want_text = "<domain> has a second <name>"},
    {.name = "duplicate-uuid",
     .input = "<domain><uuid>" UUID "</uuid><uuid>" UUID "</uuid><name>a</name></domain>",
     .want_code = HOOK_DOMAIN_ERROR_DUPLICATE,
     .want_text = "<domain> has a second <uuid>"},
    {.name = "name-mismatch",
     .input = "<domain>" FIELDS "</domain>",
     .argv_name = "vm2",
     .want_code = HOOK_DOMAIN_ERROR_NAME_MISMATCH,
     .want_text = "domain XML names the VM \"vm1\" but libvirt called the hook for \"vm2\""},
    {.name = "name-mismatch-newline-in-name",
     .input = "<domain><name>a&#10;b</name><uuid>" UUID "</uuid></domain>",
     .argv_name = "a",
     .want_code = HOOK_DOMAIN_ERROR_NAME_MISMATCH,
     .want_text = "names the VM \"a b\""},
    {.name = "name-mismatch-invalid-utf8-argv",
     .input = "<domain>" FIELDS "</domain>",
     .argv_name = "vm\xff",
     .want_code = HOOK_DOMAIN_ERROR_NAME_MISMATCH,
     .want_text = "but libvirt called the hook for \"vm\xef\xbf\xbd\""},
    {.name = "unknown-entity",
     .input = "<domain><name>&nbsp;</name><uuid>" UUID "</uuid></domain>",
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_text = "not well-formed"},
    /* GMarkup expands no declared entity, so this cannot blow up */
    {.name = "billion-laughs",
     .input = "<?xml version='1.0'?><!DOCTYPE domain [<!ENTITY a 'aaaaaaaaaa'>"
              "<!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'><!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;'>]>"
              "<domain><name>&c;</name><uuid>" UUID "</uuid></domain>",
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_text = "not well-formed"},
    {.name = "external-entity",
     .input = "<!DOCTYPE domain [<!ENTITY x SYSTEM 'file:///etc/shadow'>]>"
              "<domain><name>&x;</name><uuid>" UUID "</uuid></domain>",
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_text = "not well-formed"},
    {.name = "truncated-before-uuid",
     .input = "<domain type='kvm'><name>vm1</name>",
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_text = "not well-formed"},
    {.name = "truncated-in-name",
     .input = "<domain><name>vm",
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_text = "not well-formed"},
    {.name = "mismatched-tags",
     .input = "<domain><name>vm1</uuid></domain>",
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_text = "not well-formed"},
    {.name = "text-before-root",
     .input = "junk<domain>" FIELDS "</domain>",
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_text = "not well-formed"},
    /* GMarkup goes on after invalid UTF-8 in CDATA: its first error counts,
     * and the later ones cause no GLib warning (fatal here) */
    {.name = "cdata-invalid-utf8-in-name",
     .input = "<domain><name><![CDATA[\x8a]]></name><uuid>" UUID "</uuid><devices/><x",
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_text = "UTF-8"},
    /* before the name and the UUID are read, bad XML is bad as it always was */
    {.name = "junk-inside-devices-before-the-fields",
     .input = "<domain><devices>" UNIX_REDIRDEV(SOCK0) "&nbsp;</devices>" FIELDS "</domain>",
     .want_code = HOOK_DOMAIN_ERROR_SYNTAX,
     .want_text = "not well-formed"},
    /* a socket problem does not excuse a bad name or UUID */
    {.name = "socket-problem-and-bad-uuid",
     .input = "<domain><devices>" UNIX_REDIRDEV(
         "x.sock") "</devices><name>vm1</name><uuid>nope</uuid></domain>",
     .want_code = HOOK_DOMAIN_ERROR_BAD_UUID,
     .want_text = "<domain><uuid> \"nope\" is not a UUID"},
    {.name = "socket-problem-and-name-mismatch",
     .input = WITH_DEVICES(UNIX_REDIRDEV("x.sock")),
     .argv_name = "vm2",
     .want_code = HOOK_DOMAIN_ERROR_NAME_MISMATCH,
     .want_text = "names the VM \"vm1\" but libvirt called the hook for \"vm2\""},
};

static void
assert_one_line(const gchar *message)
{
    g_assert_nonnull(message);
    g_assert_cmpstr(message, !=, "");
    g_assert_null(strchr(message, '\n'));
}

static void
test_parse_case(gconstpointer data)
{
    const ParseCase *c = data;
    g_autoptr(GError) error = NULL;
    g_autoptr(HookDomain) domain = NULL;
    gsize len = c->len != 0 ? c->len : strlen(c->input);

    domain = hook_domain_parse(c->input, len, c->argv_name, &error);
    if (c->want_name != NULL) {
        g_assert_no_error(error);
        g_assert_nonnull(domain);
        g_assert_cmpstr(domain->name, ==, c->want_name);
        g_assert_cmpstr(domain->uuid, ==, c->want_uuid);
        g_assert_cmpstrv(domain->sockets, c->want_sockets);
        if (c->want_sockets_text == NULL) {
            g_assert_no_error(domain->sockets_error);
            return;
        }
        g_assert_error(domain->sockets_error, HOOK_DOMAIN_ERROR, (gint)c->want_code);
        assert_one_line(domain->sockets_error->message);
        if (strstr(domain->sockets_error->message, c->want_sockets_text) == NULL)
            g_error("%s: sockets_error \"%s\" lacks \"%s\"", c->name,
                    domain->sockets_error->message, c->want_sockets_text);
        return;
    }
    g_assert_null(domain);
    g_assert_error(error, HOOK_DOMAIN_ERROR, (gint)c->want_code);
    assert_one_line(error->message);
    if (strstr(error->message, c->want_text) == NULL)
        g_error("%s: message \"%s\" lacks \"%s\"", c->name, error->message, c->want_text);
}

/* A <name> nested 100,000 levels deep costs memory, not stack. */
static void
test_parse_deep_nesting(void)
{
    const guint depth = 100 * 1000;
    g_autoptr(GString) xml = g_string_new("<domain>");
    g_autoptr(GError) error = NULL;
    g_autoptr(HookDomain) domain = NULL;

    for (guint i = 0; i < depth; i++)
        g_string_append(xml, "<a>");
    g_string_append(xml, "<name>deep</name>");
    for (guint i = 0; i < depth; i++)
        g_string_append(xml, "</a>");
    g_string_append(xml, FIELDS "</domain>");
    domain = hook_domain_parse(xml->str, xml->len, "vm1", &error);
    g_assert_no_error(error);
    g_assert_cmpstr(domain->name, ==, "vm1");
}

/* A long name is cut in messages, not printed whole. */
static void
test_parse_long_name_quoted_short(void)
{
    g_autofree gchar *name = g_strnfill(100 * 1000, 'x');
    g_autofree gchar *xml =
        g_strdup_printf("<domain><name>%s</name><uuid>" UUID "</uuid></domain>", name);
    g_autoptr(GError) error = NULL;
    g_autoptr(HookDomain) domain = hook_domain_parse(xml, strlen(xml), "other", &error);

    g_assert_null(domain);
    g_assert_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_NAME_MISMATCH);
    g_assert_cmpuint(strlen(error->message), <, 300);
    g_assert_nonnull(strstr(error->message, "xxx...\""));
}

/* A domain with @count unix redirdevs, socket i at /run/usbgw/vm/UUID/i.sock. */
static GString *
domain_with_sockets(guint count)
{
    GString *xml = g_string_new("<domain>" FIELDS "<devices>");

    for (guint i = 0; i < count; i++)
        g_string_append_printf(xml, UNIX_REDIRDEV("/run/usbgw/vm/" UUID "/%u.sock"), i);
    g_string_append(xml, "</devices></domain>");
    return xml;
}

/* HOOK_DOMAIN_MAX_SOCKETS are read, in order; one more is refused. */
static void
test_parse_sockets_limit(void)
{
    g_autoptr(GString) most = domain_with_sockets(HOOK_DOMAIN_MAX_SOCKETS);
    g_autoptr(GString) over = domain_with_sockets(HOOK_DOMAIN_MAX_SOCKETS + 1);
    g_autoptr(GError) error = NULL;
    g_autoptr(HookDomain) domain = hook_domain_parse(most->str, most->len, "vm1", &error);

    g_assert_no_error(error);
    g_assert_cmpuint(g_strv_length(domain->sockets), ==, HOOK_DOMAIN_MAX_SOCKETS);
    for (guint i = 0; i < HOOK_DOMAIN_MAX_SOCKETS; i++) {
        g_autofree gchar *want = g_strdup_printf("/run/usbgw/vm/" UUID "/%u.sock", i);
        g_assert_cmpstr(domain->sockets[i], ==, want);
    }
    g_clear_pointer(&domain, hook_domain_free);

    domain = hook_domain_parse(over->str, over->len, "vm1", &error);
    g_assert_no_error(error);
    g_assert_cmpstr(domain->name, ==, "vm1");
    g_assert_cmpstr(domain->uuid, ==, UUID);
    g_assert_cmpuint(g_strv_length(domain->sockets), ==, 0);
    g_assert_error(domain->sockets_error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_TOO_MANY_SOCKETS);
    assert_one_line(domain->sockets_error->message);
    g_assert_nonnull(strstr(domain->sockets_error->message,
                            "<domain><devices> has more than 64 usb-redir unix "
                            "sockets (<redirdev type='unix'>)"));
}

/* A path of HOOK_DOMAIN_MAX_SOCKET_PATH bytes fits sun_path with its NUL;
 * one byte more does not. */
static void
test_parse_socket_path_length(void)
{
    g_autofree gchar *fill = g_strnfill(HOOK_DOMAIN_MAX_SOCKET_PATH - strlen("/run/"), 'p');
    g_autofree gchar *longest = g_strconcat("/run/", fill, NULL);
    g_autofree gchar *too_long = g_strconcat(longest, "p", NULL);
    g_autofree gchar *good = g_strdup_printf(WITH_DEVICES(UNIX_REDIRDEV("%s")), longest);
    g_autofree gchar *bad = g_strdup_printf(WITH_DEVICES(UNIX_REDIRDEV("%s")), too_long);
    g_autoptr(GError) error = NULL;
    g_autoptr(HookDomain) domain = hook_domain_parse(good, strlen(good), "vm1", &error);

    g_assert_no_error(error);
    g_assert_no_error(domain->sockets_error);
    g_assert_cmpuint(strlen(longest), ==, HOOK_DOMAIN_MAX_SOCKET_PATH);
    g_assert_cmpuint(g_strv_length(domain->sockets), ==, 1);
    g_assert_cmpstr(domain->sockets[0], ==, longest);
    g_clear_pointer(&domain, hook_domain_free);

    domain = hook_domain_parse(bad, strlen(bad), "vm1", &error);
    g_assert_no_error(error);
    g_assert_cmpstr(domain->name, ==, "vm1");
    g_assert_cmpstr(domain->uuid, ==, UUID);
    g_assert_cmpuint(g_strv_length(domain->sockets), ==, 0);
    g_assert_error(domain->sockets_error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_BAD_SOCKET);
    assert_one_line(domain->sockets_error->message);
    g_assert_nonnull(strstr(domain->sockets_error->message,
                            "is 108 bytes long, more than the 107 a unix socket path can hold"));
}

/* ---- hook_domain_read_fd ------------------------------------------------ */

#define READ_DEADLINE_US (5 * G_TIME_SPAN_SECOND)

/* A file holding @len bytes of 'x', opened for reading at its start. */
static gint
make_input_file(gsize len)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *path = NULL;
    g_autofree gchar *data = g_malloc(len + 1);
    gint fd = g_file_open_tmp("hook-domain-XXXXXX", &path, &error);

    g_assert_no_error(error);
    memset(data, 'x', len);
    g_assert_cmpint(write(fd, data, len), ==, (gssize)len);
    g_assert_cmpint(lseek(fd, 0, SEEK_SET), ==, 0);
    g_unlink(path);
    return fd;
}

static void
test_read_exactly_the_limit(void)
{
    const gsize max = 100 * 1000;
    g_autoptr(GError) error = NULL;
    gint fd = make_input_file(max);
    g_autoptr(GBytes) data =
        hook_domain_read_fd(fd, max, g_get_monotonic_time() + READ_DEADLINE_US, &error);

    g_assert_no_error(error);
    g_assert_cmpuint(g_bytes_get_size(data), ==, max);
    close(fd);
}

static void
test_read_over_the_limit(void)
{
    const gsize max = 100 * 1000;
    g_autoptr(GError) error = NULL;
    gint fd = make_input_file(max + 1);
    g_autoptr(GBytes) data =
        hook_domain_read_fd(fd, max, g_get_monotonic_time() + READ_DEADLINE_US, &error);

    g_assert_null(data);
    g_assert_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_TOO_LARGE);
    g_assert_nonnull(strstr(error->message, "larger than 100000 bytes"));
    assert_one_line(error->message);
    close(fd);
}

static void
test_read_the_real_limit(void)
{
    g_autoptr(GError) error = NULL;
    gint fd = make_input_file(HOOK_DOMAIN_MAX_XML_SIZE + 4096);
    g_autoptr(GBytes) data = hook_domain_read_fd(fd, HOOK_DOMAIN_MAX_XML_SIZE,
                                                 g_get_monotonic_time() + READ_DEADLINE_US, &error);

    g_assert_null(data);
    g_assert_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_TOO_LARGE);
    close(fd);
}

static void
test_read_empty(void)
{
    g_autoptr(GError) error = NULL;
    gint fd = make_input_file(0);
    g_autoptr(GBytes) data =
        hook_domain_read_fd(fd, 10, g_get_monotonic_time() + READ_DEADLINE_US, &error);

    g_assert_no_error(error);
    g_assert_cmpuint(g_bytes_get_size(data), ==, 0);
    close(fd);
}

/* A pipe whose writer never closes: the deadline ends the read. */
static void
test_read_deadline(void)
{
    const gint64 wait_us = 200 * G_TIME_SPAN_MILLISECOND;
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) data = NULL;
    gint fds[2];
    gint64 start;
    gint64 elapsed;

    g_assert_cmpint(pipe(fds), ==, 0);
    g_assert_cmpint(write(fds[1], "<domain>", 8), ==, 8);
    start = g_get_monotonic_time();
    data = hook_domain_read_fd(fds[0], 1000, start + wait_us, &error);
    elapsed = g_get_monotonic_time() - start;
    g_assert_null(data);
    g_assert_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_TIMEOUT);
    g_assert_nonnull(strstr(error->message, "did not end in time (8 bytes read)"));
    g_assert_cmpint(elapsed, >=, wait_us);
    g_assert_cmpint(elapsed, <, wait_us + G_TIME_SPAN_SECOND);
    close(fds[0]);
    close(fds[1]);
}

static void
test_read_closed_fd(void)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) data = NULL;
    gint fds[2];

    g_assert_cmpint(pipe(fds), ==, 0);
    close(fds[0]);
    close(fds[1]);
    data = hook_domain_read_fd(fds[0], 1000, g_get_monotonic_time() + READ_DEADLINE_US, &error);
    g_assert_null(data);
    g_assert_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_READ);
    assert_one_line(error->message);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (guint i = 0; i < G_N_ELEMENTS(parse_cases); i++) {
        g_autofree gchar *path = g_strdup_printf("/hook/domain/parse/%s", parse_cases[i].name);
        g_test_add_data_func(path, &parse_cases[i], test_parse_case);
    }
    g_test_add_func("/hook/domain/parse/deep-nesting", test_parse_deep_nesting);
    g_test_add_func("/hook/domain/parse/long-name-quoted-short", test_parse_long_name_quoted_short);
    g_test_add_func("/hook/domain/parse/sockets-limit", test_parse_sockets_limit);
    g_test_add_func("/hook/domain/parse/socket-path-length", test_parse_socket_path_length);
    g_test_add_func("/hook/domain/read/exactly-the-limit", test_read_exactly_the_limit);
    g_test_add_func("/hook/domain/read/over-the-limit", test_read_over_the_limit);
    g_test_add_func("/hook/domain/read/the-real-limit", test_read_the_real_limit);
    g_test_add_func("/hook/domain/read/empty", test_read_empty);
    g_test_add_func("/hook/domain/read/deadline", test_read_deadline);
    g_test_add_func("/hook/domain/read/closed-fd", test_read_closed_fd);
    return g_test_run();
}
