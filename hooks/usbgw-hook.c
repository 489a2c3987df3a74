/* usbgw-hook: libvirt's qemu hook for usbgw, installed as
 * /etc/libvirt/hooks/qemu.d/50-usbgw (hooks/README.md).
 *
 *   50-usbgw DOMAIN OP SUB-OP EXTRA < domain.xml
 *
 * libvirt runs it as root with a stripped environment, in its own start
 * path: it must return fast and never call libvirt back. For the ops usbgwd
 * cares about it reads the domain XML, sends usbgwd one "hook" request on
 * the control socket and reads the reply, all within [hook] timeout-ms.
 *
 * Exit status: 0, except for OP=prepare when a device the policy marks
 * `required` is not confirmed for the VM: usbgwd vetoes the start, or
 * usbgwd cannot be asked and the policy itself has a required rule for the
 * VM. Then 1, and the reason on stderr is what `virsh start` shows. Also 1
 * for OP=migrate when the domain's QEMU expects usbgwd's sockets
 * (<rundir>/vm/<vm>/FILE.sock) and usbgwd here cannot prepare them: libvirt
 * then refuses the incoming migration and the VM keeps its devices where it
 * runs. Every other problem is one line on stderr (libvirt logs it) and
 * exit 0: the VM must start without usbgw. Nothing is ever written to stdout: for migrate
 * and restore libvirt would take it as a replacement domain XML. */
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "hook-config.h"
#include "hook-control.h"
#include "hook-domain.h"
#include "policy.h"

#define HOOK_PROGRAM "usbgw-hook"

#define HOOK_EXIT_OK     0 /* libvirt goes on */
#define HOOK_EXIT_REFUSE 1 /* prepare: libvirt does not start the VM */
#define HOOK_EXIT_USAGE  2 /* not called the way libvirt calls hooks */

/* libvirt passes exactly DOMAIN OP SUB-OP EXTRA. */
#define HOOK_LIBVIRT_ARGC 4
/* For tests only: "--config FILE" before the four libvirt arguments. */
#define HOOK_CONFIG_OPTION "--config"

#define HOOK_OP_PREPARE "prepare"
/* The one op that needs the VM's usb-redir sockets (hook-control.c sends
 * them) and so the one that refuses domain XML whose sockets are unusable. */
#define HOOK_OP_MIGRATE "migrate"

/* The ops usbgwd acts on; for any other the hook exits 0 at once. */
static const gchar *const hook_handled_ops[] = {
    HOOK_OP_PREPARE, "started", "stopped", "release", HOOK_OP_MIGRATE, "restore", "reconnect", NULL,
};

typedef struct {
    const gchar *config_path; /* borrowed */
    const gchar *vm_name;     /* borrowed: argv, what libvirt calls the VM */
    const gchar *op;          /* borrowed */
    const gchar *sub_op;      /* borrowed */
} HookArgs;

/* One line on stderr, which libvirt keeps in its log (and, when the hook
 * fails a start, shows to the user): control characters, newlines
 * included, become spaces so that a message is always exactly one line. */
static void
hook_print_line(const gchar *prefix, gchar *text)
{
    for (gchar *p = text; *p != '\0'; p++) {
        if ((guchar)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    }
    g_printerr("%s%s\n", prefix, text);
}

static void hook_log(const gchar *format, ...) G_GNUC_PRINTF(1, 2);

/* A line of the hook's own, prefixed with its name. */
static void
hook_log(const gchar *format, ...)
{
    g_autofree gchar *text = NULL;
    va_list args;

    va_start(args, format);
    text = g_strdup_vprintf(format, args);
    va_end(args);
    hook_print_line(HOOK_PROGRAM ": ", text);
}

/* A VM named "--config" still works: libvirt always passes four
 * arguments, the test option makes six. */
static gboolean
hook_parse_args(gint argc, gchar **argv, HookArgs *args)
{
    gchar **rest = argv + 1;
    gint count = argc - 1;

    args->config_path = HOOK_CONFIG_DEFAULT_PATH;
    if (count == HOOK_LIBVIRT_ARGC + 2 && strcmp(rest[0], HOOK_CONFIG_OPTION) == 0) {
        args->config_path = rest[1];
        rest += 2;
        count -= 2;
    }
    if (count != HOOK_LIBVIRT_ARGC) {
        hook_log("usage: 50-usbgw [" HOOK_CONFIG_OPTION
                 " FILE] DOMAIN OP SUB-OP EXTRA < DOMAIN-XML (libvirt's qemu hook; got %d "
                 "arguments)",
                 MAX(count, 0));
        return FALSE;
    }
    if (rest[0][0] == '\0') {
        hook_log("the domain name (first argument) is empty");
        return FALSE;
    }
    args->vm_name = rest[0];
    args->op = rest[1];
    args->sub_op = rest[2];
    return TRUE;
}

/* How many of @domain's usb-redir sockets are laid out as usbgwd lays its
 * own (<rundir>/vm/<vm>/FILE.sock): sockets the VM's QEMU expects usbgwd to
 * serve on whatever host it runs. */
static guint
hook_usbgw_sockets(const HookDomain *domain)
{
    guint count = 0;

    for (gchar **path = domain != NULL ? domain->sockets : NULL; path != NULL && *path != NULL;
         path++) {
        g_autofree gchar *vm_dir = g_path_get_dirname(*path);
        g_autofree gchar *vms_dir = g_path_get_dirname(vm_dir);
        g_autofree gchar *vms_name = g_path_get_basename(vms_dir);
        if (g_str_has_suffix(*path, ".sock") && strcmp(vms_name, "vm") == 0)
            count++;
    }
    return count;
}

/* usbgwd did not confirm the call (@cause, @detail). For prepare the policy
 * decides whether the VM may start without usbgwd. An incoming migration
 * whose QEMU expects usbgwd's sockets is refused: without them its devices
 * would be lost on the way, while a refused migration leaves the VM running
 * where it is, with them. For any other op there is nothing to refuse:
 * usbgwd catches up from libvirt's events. */
static gint
hook_not_confirmed(const HookConfig *config, const HookArgs *args, const HookDomain *domain,
                   const gchar *cause, const gchar *detail)
{
    const gchar *vm_uuid = domain != NULL ? domain->uuid : NULL;
    g_autoptr(Policy) policy = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(GArray) requirements = NULL;
    const PolicyRequirement *first;
    guint sockets = hook_usbgw_sockets(domain);

    if (strcmp(args->op, HOOK_OP_MIGRATE) == 0 && sockets > 0) {
        hook_log("%s (%s): VM %s's %u USB device socket%s cannot be prepared on this host, so "
                 "its migration here is refused (it keeps its devices where it runs)",
                 cause, detail, args->vm_name, sockets, sockets == 1 ? "" : "s");
        return HOOK_EXIT_REFUSE;
    }
    if (strcmp(args->op, HOOK_OP_PREPARE) != 0) {
        hook_log("%s (%s): usbgwd was not told of VM %s %s %s", cause, detail, args->vm_name,
                 args->op, args->sub_op);
        return HOOK_EXIT_OK;
    }
    policy = policy_load_file(config->policy_path, NULL, &error);
    if (policy == NULL) {
        hook_log("%s (%s); cannot check the policy for required devices, so VM %s starts: %s",
                 cause, detail, args->vm_name, error->message);
        return HOOK_EXIT_OK;
    }
    requirements = policy_get_requirements(policy, args->vm_name, vm_uuid);
    if (requirements->len == 0) {
        hook_log("%s (%s); no rule of %s requires a device for VM %s, so it starts", cause, detail,
                 config->policy_path, args->vm_name);
        return HOOK_EXIT_OK;
    }
    first = &g_array_index(requirements, PolicyRequirement, 0);
    hook_log("%s and policy %s:%u requires a device for VM %s (%s)", cause, first->file,
             first->line, args->vm_name, detail);
    return HOOK_EXIT_REFUSE;
}

static gint
hook_run(const HookConfig *config, const HookArgs *args, gint64 deadline)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) xml = NULL;
    g_autoptr(HookDomain) domain = NULL;
    g_autofree gchar *request = NULL;
    g_autofree gchar *detail = NULL;
    g_auto(HookReply) reply = {0};

    xml = hook_domain_read_fd(STDIN_FILENO, HOOK_DOMAIN_MAX_XML_SIZE, deadline, &error);
    if (xml != NULL) {
        gsize len = 0;
        const gchar *data = g_bytes_get_data(xml, &len);
        domain = hook_domain_parse(data, len, args->vm_name, &error);
    }
    if (domain == NULL)
        return hook_not_confirmed(config, args, NULL, "the domain XML is unusable", error->message);
    /* without its sockets a migrate request would have the destination's
     * usbgwd bind the wrong ones; every other op goes on without them */
    if (domain->sockets_error != NULL && strcmp(args->op, HOOK_OP_MIGRATE) == 0)
        return hook_not_confirmed(config, args, domain,
                                  "the domain XML's usb-redir sockets are unusable",
                                  domain->sockets_error->message);

    request = hook_control_build_request(domain, args->op, args->sub_op);
    if (!hook_control_call(config->control_socket, request, deadline, &reply, &error)) {
        g_autofree gchar *cause = NULL;
        if (g_error_matches(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_UNREACHABLE))
            cause = g_strdup("usbgwd is not running");
        else if (g_error_matches(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_TIMEOUT))
            cause = g_strdup_printf("usbgwd did not answer within %u ms", config->timeout_ms);
        else
            cause = g_strdup("usbgwd did not take the hook call");
        return hook_not_confirmed(config, args, domain, cause, error->message);
    }
    if (reply.ok)
        return HOOK_EXIT_OK;
    if (strcmp(args->op, HOOK_OP_PREPARE) == 0 && g_strcmp0(reply.code, "veto") == 0) {
        /* usbgwd's words, as they are: virsh shows them to the user */
        if (reply.message[0] == '\0')
            hook_log("usbgwd refuses to start VM %s", args->vm_name);
        else
            hook_print_line("", reply.message);
        return HOOK_EXIT_REFUSE;
    }
    detail = g_strdup_printf("%s: %s", reply.code, reply.message);
    return hook_not_confirmed(config, args, domain, "usbgwd refused the hook call", detail);
}

int
main(int argc, char **argv)
{
    gint64 started = g_get_monotonic_time();
    g_auto(HookConfig) config = {0};
    g_autoptr(GError) error = NULL;
    HookArgs args;

    /* libvirt always passes four arguments, so this cannot be a hook call */
    if (argc == 2 && g_strcmp0(argv[1], "--version") == 0) {
        g_print("%s %s\n", HOOK_PROGRAM, PACKAGE_VERSION);
        return HOOK_EXIT_OK;
    }
    if (!hook_parse_args(argc, argv, &args))
        return HOOK_EXIT_USAGE;
    if (!g_strv_contains(hook_handled_ops, args.op))
        return HOOK_EXIT_OK;

    /* a peer that closes early must give an error, not kill the hook */
    signal(SIGPIPE, SIG_IGN);
    if (!hook_config_load(&config, args.config_path, &error))
        hook_log("%s", error->message);
    return hook_run(&config, &args, started + config.timeout_ms * G_TIME_SPAN_MILLISECOND);
}
