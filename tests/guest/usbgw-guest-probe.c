/* usbgw-guest-probe: the test guest's only real program, run by /init.
 *
 * Reads its orders from /proc/cmdline (the guest has no other input):
 *   usbgw.dev=VID:PID[,VID:PID…]  keys to probe (repeatable; the same VID:PID
 *                                 twice means two distinct devices)
 *   usbgw.challenge=<32 hex>      challenge sent to every key
 *   usbgw.wait=SECONDS            how long to wait for the keys (default 30)
 *   usbgw.list=1                  list every USB device once enumeration settles
 *   usbgw.settle=SECONDS          quiet period before listing (default 2)
 *   usbgw.loop=SECONDS            loop mode: repeat the whole round (listing and
 *                                 key probes) every SECONDS (0: one round, the
 *                                 default)
 *   usbgw.loop_ms=MS              the same in milliseconds (a 200 ms loop; up to 1000000)
 *   usbgw.rounds=N                in loop mode, stop after N rounds (default 0:
 *                                 until the VM is shut down)
 *
 * and prints grep-friendly lines on the console:
 *   USBGW-GUEST-READY
 *   USBGW-ROUND n                    (loop mode only: round n, from 1, begins)
 *   USBGW-DEVICE vid:pid class=XX ifaces=XX[,XX…] port=<devpath> serial=<s|->
 *   USBGW-ANSWER vid:pid serial=<s|-> port=<devpath> busnum=N devnum=N response=<32 hex>
 *   USBGW-ERROR vid:pid <reason>     (vid:pid is "-" when no device is concerned)
 *   USBGW-ROUND-END n                (loop mode only: round n is complete)
 *   USBGW-PROBE-DONE
 * Every requested key gets exactly one ANSWER or ERROR line per round, in
 * request order.
 *
 * vid:pid is lower-case hex; <devpath> is the sysfs devpath, the port chain on
 * its bus ("1", "1.2"), which matches QEMU's port= property on xhci.0;
 * busnum and devnum are the guest's numbers for the device (a device that
 * enumerated again gets a new devnum). The
 * listing follows the key probes' wait, so a test asserting that a device is
 * absent should also name one that is present (or raise usbgw.settle).
 *
 * Without usbgw.loop there is one round and the probe exits after
 * USBGW-PROBE-DONE (/init then powers the guest off). In loop mode the first
 * round waits for the keys as above (usbgw.wait, usbgw.settle); every later
 * round is a snapshot taken when it starts: a key absent then gets
 * "USBGW-ERROR vid:pid not found" (or "present but not configured" while it
 * re-enumerates), and each round matches the keys afresh, so a key that left
 * and came back (usbredir device_disconnect, device_connect) answers again.
 * Each round starts SECONDS after the one before started, or at once when
 * that one took longer (round 1 may wait up to usbgw.wait). In loop mode the
 * probe does not exit (unless the guest has no USB host controller): after
 * usbgw.rounds rounds it prints USBGW-PROBE-DONE and waits for the VM's
 * shutdown (the ACPI power button, which /init leaves to acpid, or a hard
 * stop).
 *
 * It talks to the keys through usbdevfs only: the guest has no usbhid or
 * usb-storage, so no kernel driver competes for the interfaces.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>
#include <linux/usbdevice_fs.h>

#include "../sim/key-protocol.h"

#define SYSFS_USB      "/sys/bus/usb/devices"
#define MAX_WANT       16
#define MAX_DEVS       64
#define XFER_TIMEOUT   5000 /* ms; TCG is slow, but a key answers in well under that */
#define POLL_NS        50000000L
#define HC_WAIT_S      5 /* root hubs register during insmod: 5 s means "no controller" */
#define HID_CLASS      0x03
#define VENDOR_CLASS   0xff
#define HID_SET_REPORT 0x09

struct want {
    unsigned vid, pid;
    char name[64]; /* sysfs name of the matched device, "" until found */
    bool seen_unconfigured;
};

struct params {
    struct want want[MAX_WANT];
    int nwant;
    uint8_t challenge[USBGW_KEY_LEN];
    const char *challenge_err; /* NULL when the challenge is valid */
    int wait_s, settle_s;
    double start; /* when the probe started: usbgw.wait counts from there */
    int loop_ms;  /* 0: a single round */
    long rounds;  /* loop mode: last round, 0: unbounded */
    bool list;
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* Truncating copy (sysfs names are short; a longer one just never matches). */
static void
copy_str(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Error texts are built with vsnprintf: truncation is acceptable there. */
static void set_err(char *err, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
}

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
nap(void)
{
    struct timespec ts = {0, POLL_NS};
    nanosleep(&ts, NULL);
}

/* Read a sysfs attribute of device NAME into BUF, without the trailing newline.
 * Returns false when it does not exist or is empty. */
static bool
read_attr(const char *name, const char *attr, char *buf, size_t size)
{
    char path[600];
    if (snprintf(path, sizeof(path), SYSFS_USB "/%s/%s", name, attr) >= (int)sizeof(path))
        return false; /* no such sysfs path */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return buf[0] != '\0';
}

static bool
read_hex_attr(const char *name, const char *attr, unsigned *out)
{
    char buf[32], *end;
    if (!read_attr(name, attr, buf, sizeof(buf)))
        return false;
    unsigned long v = strtoul(buf, &end, 16);
    if (*end != '\0' || v > 0xffff)
        return false;
    *out = (unsigned)v;
    return true;
}

/* Serials go into space-separated lines: keep them a single printable word. */
static void
read_serial(const char *name, char *buf, size_t size)
{
    if (!read_attr(name, "serial", buf, size)) {
        snprintf(buf, size, "-");
        return;
    }
    for (char *p = buf; *p; p++)
        if (!isgraph((unsigned char)*p))
            *p = '_';
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Parse "VID:PID", 1 to 4 hex digits each. */
static bool
parse_vidpid(const char *s, size_t len, unsigned *vid, unsigned *pid)
{
    unsigned v[2] = {0, 0};
    int part = 0, digits = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ':' && part == 0 && digits > 0) {
            part = 1;
            digits = 0;
            continue;
        }
        int h = hexval((unsigned char)s[i]);
        if (h < 0 || ++digits > 4)
            return false;
        v[part] = v[part] << 4 | (unsigned)h;
    }
    if (part != 1 || digits == 0)
        return false;
    *vid = v[0];
    *pid = v[1];
    return true;
}

static int
parse_seconds(const char *key, const char *val, int dflt)
{
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end != '\0' || v < 0 || v > 3600) {
        say("USBGW-ERROR - bad %s=%s (want 0..3600 seconds), using %d", key, val, dflt);
        return dflt;
    }
    return (int)v;
}

static long
parse_count(const char *key, const char *val)
{
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end != '\0' || v < 0 || v > 1000000) {
        say("USBGW-ERROR - bad %s=%s (want 0..1000000), using 0", key, val);
        return 0;
    }
    return v;
}

static void
parse_dev_list(struct params *p, const char *val)
{
    for (const char *s = val;; s++) {
        size_t len = strcspn(s, ",");
        unsigned vid, pid;
        if (!parse_vidpid(s, len, &vid, &pid))
            say("USBGW-ERROR %.*s bad usbgw.dev entry (want VID:PID in hex)", len ? (int)len : 1,
                len ? s : "-");
        else if (p->nwant == MAX_WANT)
            say("USBGW-ERROR %04x:%04x too many usbgw.dev entries (max %d)", vid, pid, MAX_WANT);
        else
            p->want[p->nwant++] = (struct want){.vid = vid, .pid = pid};
        s += len;
        if (*s == '\0')
            break;
    }
}

static void
parse_challenge(struct params *p, const char *val)
{
    if (strlen(val) != 2 * USBGW_KEY_LEN) {
        p->challenge_err = "bad usbgw.challenge (want 32 hex chars)";
        return;
    }
    for (int i = 0; i < USBGW_KEY_LEN; i++) {
        int hi = hexval((unsigned char)val[2 * i]), lo = hexval((unsigned char)val[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            p->challenge_err = "bad usbgw.challenge (want 32 hex chars)";
            return;
        }
        p->challenge[i] = (uint8_t)(hi << 4 | lo);
    }
    p->challenge_err = NULL;
}

static void
parse_cmdline(struct params *p)
{
    static char buf[4096];
    *p = (struct params){.wait_s = 30, .settle_s = 2, .challenge_err = "missing usbgw.challenge"};
    FILE *f = fopen("/proc/cmdline", "re");
    if (!f || !fgets(buf, sizeof(buf), f)) {
        say("USBGW-ERROR - cannot read /proc/cmdline: %s", strerror(errno));
        if (f)
            fclose(f);
        return;
    }
    fclose(f);
    for (char *save = NULL, *tok = strtok_r(buf, " \t\n", &save); tok;
         tok = strtok_r(NULL, " \t\n", &save)) {
        if (strncmp(tok, "usbgw.", 6) != 0)
            continue;
        char *val = strchr(tok, '=');
        if (val)
            *val++ = '\0';
        else
            val = "";
        if (strcmp(tok, "usbgw.dev") == 0)
            parse_dev_list(p, val);
        else if (strcmp(tok, "usbgw.challenge") == 0)
            parse_challenge(p, val);
        else if (strcmp(tok, "usbgw.wait") == 0)
            p->wait_s = parse_seconds(tok, val, 30);
        else if (strcmp(tok, "usbgw.settle") == 0)
            p->settle_s = parse_seconds(tok, val, 2);
        else if (strcmp(tok, "usbgw.loop") == 0)
            p->loop_ms = parse_seconds(tok, val, 0) * 1000;
        else if (strcmp(tok, "usbgw.loop_ms") == 0)
            p->loop_ms = (int)parse_count(tok, val);
        else if (strcmp(tok, "usbgw.rounds") == 0)
            p->rounds = parse_count(tok, val);
        else if (strcmp(tok, "usbgw.list") == 0)
            p->list = strcmp(val, "0") != 0;
        else if (strcmp(tok, "usbgw.debug") != 0) /* usbgw.debug is /init's */
            say("USBGW-ERROR - unknown parameter %s", tok);
    }
}

/* USB device directories (not interfaces "1-1:1.0"), sorted by name. */
static int
is_device_entry(const struct dirent *d)
{
    return d->d_name[0] != '.' && !strchr(d->d_name, ':');
}

static int
list_devices(char names[][64], int max)
{
    struct dirent **ents;
    int n = scandir(SYSFS_USB, &ents, is_device_entry, versionsort);
    if (n < 0)
        return 0;
    int count = 0;
    for (int i = 0; i < n; i++) {
        if (count < max)
            copy_str(names[count++], 64, ents[i]->d_name);
        free(ents[i]);
    }
    free(ents);
    return count;
}

static bool
have_root_hub(void)
{
    char names[MAX_DEVS][64];
    int n = list_devices(names, MAX_DEVS);
    for (int i = 0; i < n; i++)
        if (strncmp(names[i], "usb", 3) == 0)
            return true;
    return false;
}

static bool
taken(const struct params *p, const char *name)
{
    for (int i = 0; i < p->nwant; i++)
        if (strcmp(p->want[i].name, name) == 0)
            return true;
    return false;
}

/* One pass over sysfs: give each unmatched want a configured device of its
 * VID:PID that no other want holds. Returns true when all are matched. */
static bool
match_wants(struct params *p)
{
    char names[MAX_DEVS][64], buf[16];
    int n = list_devices(names, MAX_DEVS);
    bool all = true;
    for (int w = 0; w < p->nwant; w++) {
        struct want *want = &p->want[w];
        if (want->name[0])
            continue;
        for (int i = 0; i < n && !want->name[0]; i++) {
            unsigned vid, pid;
            if (taken(p, names[i]) || !read_hex_attr(names[i], "idVendor", &vid) ||
                !read_hex_attr(names[i], "idProduct", &pid) || vid != want->vid || pid != want->pid)
                continue;
            /* Usable only once the generic driver picked a configuration. */
            if (read_attr(names[i], "bConfigurationValue", buf, sizeof(buf)))
                copy_str(want->name, sizeof(want->name), names[i]);
            else
                want->seen_unconfigured = true;
        }
        all = all && want->name[0];
    }
    return all;
}

static int
is_iface_entry(const struct dirent *d)
{
    return strchr(d->d_name, ':') != NULL;
}

/* Comma-separated interface classes of device NAME, from the interface
 * directories below it ("1-1/1-1:1.0"; a root hub "usb1" has "1-0:1.0"). */
static void
iface_classes(const char *name, char *out, size_t size)
{
    char dir[128], attr[512], cls[8];
    struct dirent **ents;
    size_t used = 0;
    out[0] = '\0';
    /* A name too long for the buffers is no sysfs name: it has no classes. */
    int n = snprintf(dir, sizeof(dir), SYSFS_USB "/%s", name) < (int)sizeof(dir)
                ? scandir(dir, &ents, is_iface_entry, versionsort)
                : -1;
    for (int i = 0; i < n; i++) {
        bool fits =
            snprintf(attr, sizeof(attr), "%s/%s", name, ents[i]->d_name) < (int)sizeof(attr);
        if (fits && used + 4 < size && read_attr(attr, "bInterfaceClass", cls, sizeof(cls)))
            used += (size_t)snprintf(out + used, size - used, "%s%s", used ? "," : "", cls);
        free(ents[i]);
    }
    if (n >= 0)
        free(ents);
    if (!out[0])
        snprintf(out, size, "-");
}

/* Wait until the set of devices stops changing for SETTLE seconds (bounded by
 * DEADLINE), then print one USBGW-DEVICE line per device. */
static void
list_settled(int settle_s, double deadline)
{
    char names[MAX_DEVS][64], prev[MAX_DEVS][64];
    int n = list_devices(prev, MAX_DEVS);
    double stable_since = now();
    while (now() - stable_since < settle_s && now() < deadline) {
        nap();
        int m = list_devices(names, MAX_DEVS);
        bool same = m == n;
        for (int i = 0; same && i < m; i++)
            same = strcmp(names[i], prev[i]) == 0;
        if (!same) {
            memcpy(prev, names, sizeof(names[0]) * (size_t)m);
            n = m;
            stable_since = now();
        }
    }
    n = list_devices(names, MAX_DEVS);
    for (int i = 0; i < n; i++) {
        unsigned vid = 0, pid = 0;
        char cls[8] = "??", ifaces[128], port[64] = "-", serial[128];
        read_hex_attr(names[i], "idVendor", &vid);
        read_hex_attr(names[i], "idProduct", &pid);
        read_attr(names[i], "bDeviceClass", cls, sizeof(cls));
        read_attr(names[i], "devpath", port, sizeof(port));
        iface_classes(names[i], ifaces, sizeof(ifaces));
        read_serial(names[i], serial, sizeof(serial));
        say("USBGW-DEVICE %04x:%04x class=%s ifaces=%s port=%s serial=%s", vid, pid, cls, ifaces,
            port, serial);
    }
}

/* Open the usbdevfs node; devtmpfs normally provides it, mknod covers a
 * guest where it did not (yet). */
static int
open_usbdev(const char *name, char *err, size_t errsize)
{
    char buf[32], path[64];
    unsigned bus, dev, maj, min;
    if (!read_attr(name, "busnum", buf, sizeof(buf)) || sscanf(buf, "%u", &bus) != 1 ||
        !read_attr(name, "devnum", buf, sizeof(buf)) || sscanf(buf, "%u", &dev) != 1) {
        set_err(err, errsize, "no busnum/devnum in sysfs for %s (unplugged?)", name);
        return -1;
    }
    snprintf(path, sizeof(path), "/dev/bus/usb/%03u/%03u", bus, dev);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && read_attr(name, "dev", buf, sizeof(buf)) &&
        sscanf(buf, "%u:%u", &maj, &min) == 2) {
        char dir[64];
        snprintf(dir, sizeof(dir), "/dev/bus/usb/%03u", bus);
        mkdir("/dev/bus", 0755);
        mkdir("/dev/bus/usb", 0755);
        mkdir(dir, 0755);
        mknod(path, S_IFCHR | 0600, makedev(maj, min));
        fd = open(path, O_RDWR | O_CLOEXEC);
    }
    if (fd < 0)
        set_err(err, errsize, "cannot open %s: %s", path, strerror(errno));
    return fd;
}

struct layout {
    unsigned dev_class;
    bool vendor_iface;
    int hid_iface;     /* -1: none */
    unsigned hid_ep;   /* interrupt IN endpoint address of hid_iface, 0: none */
    unsigned hid_mps;  /* its wMaxPacketSize */
    char classes[128]; /* interface classes of the active configuration, for errors */
};

/* Walk the raw descriptors sysfs keeps (device descriptor, then every
 * configuration) and pick out the active configuration's interfaces, alt 0. */
static bool
read_layout(const char *name, struct layout *l, char *err, size_t errsize)
{
    static uint8_t d[65536];
    char path[256], buf[16];
    unsigned active = 0;
    bool fits = snprintf(path, sizeof(path), SYSFS_USB "/%s/descriptors", name) < (int)sizeof(path);
    int fd = fits ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    ssize_t n = fd < 0 ? -1 : read(fd, d, sizeof(d));
    if (fd >= 0)
        close(fd);
    if (n < 18 || d[1] != 1) {
        set_err(err, errsize, "cannot read device descriptor from %s", path);
        return false;
    }
    if (read_attr(name, "bConfigurationValue", buf, sizeof(buf)))
        active = (unsigned)atoi(buf);
    *l = (struct layout){.dev_class = d[4], .hid_iface = -1};
    bool in_active = false, in_hid = false;
    size_t used = 0;
    for (ssize_t off = d[0]; off + 2 <= n && d[off] >= 2 && off + d[off] <= n; off += d[off]) {
        const uint8_t *p = d + off;
        if (p[1] == 2 && p[0] >= 9) { /* configuration */
            in_active = p[5] == active;
        } else if (p[1] == 4 && p[0] >= 9 && in_active) { /* interface */
            in_hid = false;
            if (p[3] != 0) /* alternate settings: the key protocol uses alt 0 only */
                continue;
            if (used + 4 < sizeof(l->classes))
                used += (size_t)snprintf(l->classes + used, sizeof(l->classes) - used, "%s%02x",
                                         used ? "," : "", p[5]);
            if (p[5] == VENDOR_CLASS)
                l->vendor_iface = true;
            if (p[5] == HID_CLASS && l->hid_iface < 0) {
                l->hid_iface = p[2];
                in_hid = true;
            }
        } else if (p[1] == 5 && p[0] >= 7 && in_hid && !l->hid_ep) { /* endpoint */
            if ((p[2] & 0x80) && (p[3] & 3) == 3) {
                l->hid_ep = p[2];
                l->hid_mps = (unsigned)(p[4] | (p[5] & 0x07) << 8);
            }
        }
    }
    if (!l->classes[0])
        snprintf(l->classes, sizeof(l->classes), "-");
    return true;
}

static const char *
xfer_error(int e)
{
    switch (e) {
    case EPIPE:
        return "stalled";
    case ETIMEDOUT:
        return "timed out";
    case ENODEV:
        return "device gone";
    default:
        return strerror(e);
    }
}

static bool
vendor_exchange(int fd, const uint8_t *challenge, uint8_t *response, char *err, size_t errsize)
{
    uint8_t out[USBGW_KEY_LEN];
    memcpy(out, challenge, sizeof(out));
    struct usbdevfs_ctrltransfer ct = {
        .bRequestType = 0x40,
        .bRequest = USBGW_KEY_REQ_CHALLENGE,
        .wLength = USBGW_KEY_LEN,
        .timeout = XFER_TIMEOUT,
        .data = out,
    };
    int r = ioctl(fd, USBDEVFS_CONTROL, &ct);
    if (r < 0) {
        set_err(err, errsize, "challenge (vendor OUT 0x%02x) %s", ct.bRequest, xfer_error(errno));
        return false;
    }
    ct.bRequestType = 0xc0;
    ct.bRequest = USBGW_KEY_REQ_RESPONSE;
    ct.data = response;
    r = ioctl(fd, USBDEVFS_CONTROL, &ct);
    if (r < 0) {
        set_err(err, errsize, "response (vendor IN 0x%02x) %s", ct.bRequest, xfer_error(errno));
        return false;
    }
    if (r != USBGW_KEY_LEN) {
        set_err(err, errsize, "response (vendor IN 0x%02x) has %d bytes, want %d", ct.bRequest, r,
                USBGW_KEY_LEN);
        return false;
    }
    return true;
}

static bool
hid_exchange(int fd, const struct layout *l, const uint8_t *challenge, uint8_t *response, char *err,
             size_t errsize)
{
    unsigned ifn = (unsigned)l->hid_iface;
    if (!l->hid_ep) {
        set_err(err, errsize, "HID interface %u has no interrupt IN endpoint", ifn);
        return false;
    }
    if (ioctl(fd, USBDEVFS_CLAIMINTERFACE, &ifn) < 0) {
        struct usbdevfs_getdriver gd = {.interface = ifn};
        if (errno == EBUSY && ioctl(fd, USBDEVFS_GETDRIVER, &gd) == 0)
            set_err(err, errsize, "interface %u is bound to kernel driver %s", ifn, gd.driver);
        else
            set_err(err, errsize, "cannot claim interface %u: %s", ifn, strerror(errno));
        return false;
    }
    uint8_t out[USBGW_KEY_LEN];
    memcpy(out, challenge, sizeof(out));
    struct usbdevfs_ctrltransfer ct = {
        .bRequestType = 0x21,
        .bRequest = HID_SET_REPORT,
        .wValue = 0x0200, /* output report, ID 0 */
        .wIndex = (uint16_t)ifn,
        .wLength = USBGW_KEY_LEN,
        .timeout = XFER_TIMEOUT,
        .data = out,
    };
    bool ok = false;
    if (ioctl(fd, USBDEVFS_CONTROL, &ct) < 0) {
        set_err(err, errsize, "challenge (HID SET_REPORT) %s", xfer_error(errno));
        goto out;
    }
    /* Read a whole packet: a buffer shorter than what the device sends would
     * turn a wrong-sized report into an overflow error instead of a clear one. */
    uint8_t in[1024];
    struct usbdevfs_bulktransfer bt = {
        .ep = l->hid_ep,
        .len = l->hid_mps > USBGW_KEY_LEN && l->hid_mps <= sizeof(in) ? l->hid_mps : sizeof(in),
        .timeout = XFER_TIMEOUT,
        .data = in,
    };
    int r = ioctl(fd, USBDEVFS_BULK, &bt);
    if (r < 0) {
        set_err(err, errsize, "response (interrupt IN 0x%02x) %s", bt.ep, xfer_error(errno));
        goto out;
    }
    if (r != USBGW_KEY_LEN) {
        set_err(err, errsize, "response (interrupt IN 0x%02x) has %d bytes, want %d", bt.ep, r,
                USBGW_KEY_LEN);
        goto out;
    }
    memcpy(response, in, USBGW_KEY_LEN);
    ok = true;
out:
    ioctl(fd, USBDEVFS_RELEASEINTERFACE, &ifn);
    return ok;
}

static void
probe_key(const struct params *p, const struct want *w)
{
    char err[256], serial[128], port[64] = "-", busnum[16] = "-", devnum[16] = "-";
    uint8_t response[USBGW_KEY_LEN];
    struct layout l;
    bool ok = false;
    int fd = open_usbdev(w->name, err, sizeof(err));
    if (fd < 0)
        goto out;
    if (!read_layout(w->name, &l, err, sizeof(err)))
        goto out;
    if (l.dev_class == VENDOR_CLASS || l.vendor_iface)
        ok = vendor_exchange(fd, p->challenge, response, err, sizeof(err));
    else if (l.hid_iface >= 0)
        ok = hid_exchange(fd, &l, p->challenge, response, err, sizeof(err));
    else
        set_err(err, sizeof(err), "not a key: device class %02x, interface classes %s", l.dev_class,
                l.classes);
out:
    if (fd >= 0)
        close(fd);
    if (!ok) {
        say("USBGW-ERROR %04x:%04x %s", w->vid, w->pid, err);
        return;
    }
    char hex[2 * USBGW_KEY_LEN + 1];
    for (int i = 0; i < USBGW_KEY_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", response[i]);
    read_serial(w->name, serial, sizeof(serial));
    read_attr(w->name, "devpath", port, sizeof(port));
    read_attr(w->name, "busnum", busnum, sizeof(busnum));
    read_attr(w->name, "devnum", devnum, sizeof(devnum));
    say("USBGW-ANSWER %04x:%04x serial=%s port=%s busnum=%s devnum=%s response=%s", w->vid, w->pid,
        serial, port, busnum, devnum, hex);
}

/* One round: match the keys afresh (waiting until DEADLINE for missing ones),
 * list the devices when asked (after SETTLE_S quiet seconds), then probe each
 * key. A SNAPSHOT round (loop mode, after round 1) waits for nothing. */
static void
run_round(struct params *p, bool snapshot)
{
    double deadline = snapshot ? now() : p->start + p->wait_s;
    int settle_s = snapshot ? 0 : p->settle_s;

    for (int i = 0; i < p->nwant; i++) {
        p->want[i].name[0] = '\0';
        p->want[i].seen_unconfigured = false;
    }
    if (p->nwant && !p->challenge_err)
        while (!match_wants(p) && now() < deadline)
            nap();
    if (p->list)
        list_settled(settle_s, deadline + settle_s);

    for (int i = 0; i < p->nwant; i++) {
        const struct want *w = &p->want[i];
        const char *missing = w->seen_unconfigured ? "present but not configured" : "not found";
        if (p->challenge_err)
            say("USBGW-ERROR %04x:%04x %s", w->vid, w->pid, p->challenge_err);
        else if (!w->name[0] && snapshot)
            say("USBGW-ERROR %04x:%04x %s", w->vid, w->pid, missing);
        else if (!w->name[0])
            say("USBGW-ERROR %04x:%04x %s within %d s", w->vid, w->pid, missing, p->wait_s);
        else
            probe_key(p, w);
    }
}

static void
sleep_until(double t)
{
    struct timespec ts = {.tv_sec = (time_t)t};
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

int
main(void)
{
    struct params p;
    setvbuf(stdout, NULL, _IOLBF, 0);
    double start = now();

    /* /init loaded the modules before starting us; check rather than trust. */
    if (access("/sys/module/usbcore", F_OK) != 0 || access("/sys/module/xhci_pci", F_OK) != 0) {
        say("USBGW-ERROR - usbcore/xhci_pci not loaded (see insmod errors above)");
        say("USBGW-PROBE-DONE");
        return 1;
    }
    say("USBGW-GUEST-READY");
    parse_cmdline(&p);
    p.start = start;

    bool have_hc = false;
    while (!(have_hc = have_root_hub()) && now() - start < HC_WAIT_S)
        nap();
    if (!have_hc) {
        for (int i = 0; i < p.nwant; i++)
            say("USBGW-ERROR %04x:%04x no USB host controller (no -device qemu-xhci?)",
                p.want[i].vid, p.want[i].pid);
        if (!p.nwant)
            say("USBGW-ERROR - no USB host controller (no -device qemu-xhci?)");
        say("USBGW-PROBE-DONE");
        return 1;
    }

    if (!p.nwant && !p.list)
        say("USBGW-ERROR - nothing to do: no usbgw.dev= or usbgw.list=1 on the kernel command "
            "line");
    if (!p.loop_ms) {
        run_round(&p, false);
        say("USBGW-PROBE-DONE");
        return 0;
    }

    /* Loop mode: round 1 waits like the single round, later ones are
     * snapshots; each starts loop_ms after the one before, or at once. */
    for (long n = 1;; n++) {
        double round_start = now();
        say("USBGW-ROUND %ld", n);
        run_round(&p, n > 1);
        say("USBGW-ROUND-END %ld", n);
        if (n == p.rounds)
            break;
        sleep_until(round_start + p.loop_ms / 1000.0);
    }
    say("USBGW-PROBE-DONE");
    for (;;) /* until the VM is shut down */
        pause();
}
