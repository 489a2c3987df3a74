/* sw-confine: the worker's sandbox (sw-confine.h, spice/README.md). */
#include "sw-confine.h"

#include <errno.h>
#include <gio/gio.h>
#include <grp.h>
#include <linux/sched.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <termios.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define SW_CONFINE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SW_CONFINE_ASAN 1
#endif
#endif
#ifndef SW_CONFINE_ASAN
#define SW_CONFINE_ASAN 0
#endif

/* What a system call of the table gets. */
typedef enum {
    SW_RULE_ALLOW,  /* always */
    SW_RULE_ERRNO,  /* fails with .errno_value: library code tries it and copes */
    SW_RULE_NO_EXEC /* allowed unless argument 2 (prot) has PROT_EXEC */
} SwRuleKind;

typedef struct {
    const char *name; /* resolved for the running architecture; absent ones are skipped */
    SwRuleKind kind;
    int errno_value;
} SwRule;

/* Everything else kills the whole worker (SCMP_ACT_KILL_PROCESS, SIGSYS):
 * a system call the worker never makes while serving is either an
 * untested path or an attacker's, and usbgwd reports the death and ends
 * the share. The list comes from strace -f of the spice and share tests
 * (plain, TLS, remote-viewer), after the setup. */
static const SwRule sw_rules[] = {
    /* I/O on the fds it has: socketpair to usbgwd, SPICE clients, wakeups */
    {"read", SW_RULE_ALLOW, 0},
    {"readv", SW_RULE_ALLOW, 0},
    {"write", SW_RULE_ALLOW, 0},
    {"writev", SW_RULE_ALLOW, 0},
    {"recvfrom", SW_RULE_ALLOW, 0},
    {"recvmsg", SW_RULE_ALLOW, 0},
    {"sendto", SW_RULE_ALLOW, 0},
    {"sendmsg", SW_RULE_ALLOW, 0},
    {"poll", SW_RULE_ALLOW, 0},
    {"ppoll", SW_RULE_ALLOW, 0},
    {"epoll_create1", SW_RULE_ALLOW, 0},
    {"epoll_ctl", SW_RULE_ALLOW, 0},
    {"epoll_wait", SW_RULE_ALLOW, 0},
    {"epoll_pwait", SW_RULE_ALLOW, 0},
    {"eventfd2", SW_RULE_ALLOW, 0},
    {"pipe2", SW_RULE_ALLOW, 0},
    {"close", SW_RULE_ALLOW, 0},
    {"fcntl", SW_RULE_ALLOW, 0},
    {"fstat", SW_RULE_ALLOW, 0},
    {"newfstatat", SW_RULE_ALLOW, 0},
    {"lseek", SW_RULE_ALLOW, 0},
    /* the listening sockets, bound before: accept and tune what comes */
    {"accept", SW_RULE_ALLOW, 0},
    {"accept4", SW_RULE_ALLOW, 0},
    {"shutdown", SW_RULE_ALLOW, 0},
    {"setsockopt", SW_RULE_ALLOW, 0},
    {"getsockopt", SW_RULE_ALLOW, 0},
    {"getsockname", SW_RULE_ALLOW, 0},
    {"getpeername", SW_RULE_ALLOW, 0},
    /* no new sockets, no outgoing connections, no files: EACCES, as a
     * refused permission (GLib's journald writer falls back to stderr,
     * OpenSSL goes without its config file) */
    {"socket", SW_RULE_ERRNO, EACCES},
    {"connect", SW_RULE_ERRNO, EACCES},
    {"open", SW_RULE_ERRNO, EACCES},
    {"openat", SW_RULE_ERRNO, EACCES},
    {"openat2", SW_RULE_ERRNO, EACCES},
    {"creat", SW_RULE_ERRNO, EACCES},
    /* signals: its own handlers, and none to other processes */
    {"kill", SW_RULE_ERRNO, EPERM},
    {"rt_sigaction", SW_RULE_ALLOW, 0},
    {"rt_sigprocmask", SW_RULE_ALLOW, 0},
    {"rt_sigreturn", SW_RULE_ALLOW, 0},
    {"sigaltstack", SW_RULE_ALLOW, 0},
    {"restart_syscall", SW_RULE_ALLOW, 0},
    /* memory, never executable */
    {"mmap", SW_RULE_NO_EXEC, 0},
    {"mprotect", SW_RULE_NO_EXEC, 0},
    {"munmap", SW_RULE_ALLOW, 0},
    {"mremap", SW_RULE_ALLOW, 0},
    {"brk", SW_RULE_ALLOW, 0},
    {"madvise", SW_RULE_ALLOW, 0},
    /* threads that exist already, time, randomness, identity */
    {"futex", SW_RULE_ALLOW, 0},
    {"set_robust_list", SW_RULE_ALLOW, 0},
    {"rseq", SW_RULE_ALLOW, 0},
    {"sched_yield", SW_RULE_ALLOW, 0},
    {"sched_getaffinity", SW_RULE_ALLOW, 0},
    {"clock_gettime", SW_RULE_ALLOW, 0},
    {"clock_getres", SW_RULE_ALLOW, 0},
    {"clock_nanosleep", SW_RULE_ALLOW, 0},
    {"nanosleep", SW_RULE_ALLOW, 0},
    {"gettimeofday", SW_RULE_ALLOW, 0},
    {"time", SW_RULE_ALLOW, 0},
    {"getrandom", SW_RULE_ALLOW, 0},
    {"getpid", SW_RULE_ALLOW, 0},
    {"gettid", SW_RULE_ALLOW, 0},
    {"getuid", SW_RULE_ALLOW, 0},
    {"geteuid", SW_RULE_ALLOW, 0},
    {"getgid", SW_RULE_ALLOW, 0},
    {"getegid", SW_RULE_ALLOW, 0},
    {"exit", SW_RULE_ALLOW, 0},
    {"exit_group", SW_RULE_ALLOW, 0},
};

/* ioctls: pending output (spice-server's TIOCOUTQ), pending input,
 * non-blocking mode, isatty() (GLib's log writer asks). */
static const unsigned long sw_ioctls[] = {TIOCOUTQ, FIONREAD, FIONBIO, TCGETS};

/* AddressSanitizer's runtime, in sanitizer builds only: it names threads
 * and asks for limits and mappings when it reports; its symbolizer and
 * LeakSanitizer start processes, which get EPERM instead of death so
 * that a report still comes out (unsymbolized). Files stay closed: a
 * report may lack module names. */
static const SwRule sw_asan_rules[] = {
    {"prctl", SW_RULE_ALLOW, 0},      {"getrlimit", SW_RULE_ALLOW, 0},
    {"prlimit64", SW_RULE_ALLOW, 0},  {"mincore", SW_RULE_ALLOW, 0},
    {"clone", SW_RULE_ERRNO, EPERM},  {"clone3", SW_RULE_ERRNO, EPERM},
    {"fork", SW_RULE_ERRNO, EPERM},   {"vfork", SW_RULE_ERRNO, EPERM},
    {"execve", SW_RULE_ERRNO, EPERM}, {"ptrace", SW_RULE_ERRNO, EPERM},
};

gboolean
sw_confine_is_sanitizer_build(void)
{
    return SW_CONFINE_ASAN;
}

gboolean
sw_confine_network(GError **error)
{
    if (unshare(CLONE_NEWNET) != 0) {
        int saved = errno;

        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved),
                    "new network namespace (unshare CLONE_NEWNET): %s", g_strerror(saved));
        return FALSE;
    }
    return TRUE;
}

static gboolean
sw_confine_ids(const SwConfineIds *ids, GError **error)
{
    if (setgroups(0, NULL) != 0 || setgid(ids->gid) != 0 || setuid(ids->uid) != 0) {
        int saved = errno;

        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved),
                    "cannot switch to %s (uid %u gid %u): %s", ids->name, (unsigned)ids->uid,
                    (unsigned)ids->gid, g_strerror(saved));
        return FALSE;
    }
    if (ids->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "could regain root after switching to %s",
                    ids->name);
        return FALSE;
    }
    return TRUE;
}

static gboolean
sw_confine_limit(int resource, const char *name, rlim_t value, GError **error)
{
    struct rlimit limit = {value, value};

    if (setrlimit(resource, &limit) != 0) {
        int saved = errno;

        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved), "setrlimit %s %lu: %s", name,
                    (unsigned long)value, g_strerror(saved));
        return FALSE;
    }
    return TRUE;
}

static gboolean
sw_confine_limits(GError **error)
{
    /* NPROC 0 after the uid switch: the worker's uid owns only the worker,
     * so no fork and no further thread (root would ignore the limit) */
    if (!sw_confine_limit(RLIMIT_NPROC, "NPROC", 0, error) ||
        !sw_confine_limit(RLIMIT_CORE, "CORE", 0, error) ||
        !sw_confine_limit(RLIMIT_NOFILE, "NOFILE", SW_CONFINE_MAX_FDS, error) ||
        !sw_confine_limit(RLIMIT_MEMLOCK, "MEMLOCK", 0, error))
        return FALSE;
    if (SW_CONFINE_ASAN)
        return TRUE;
    return sw_confine_limit(RLIMIT_AS, "AS", SW_CONFINE_MAX_AS, error) &&
           sw_confine_limit(RLIMIT_DATA, "DATA", SW_CONFINE_MAX_DATA, error);
}

static gboolean
sw_confine_add(scmp_filter_ctx ctx, const SwRule *rule, GError **error)
{
    int nr = seccomp_syscall_resolve_name(rule->name);
    int rc;

    if (nr == __NR_SCMP_ERROR)
        return TRUE; /* not on this architecture */
    switch (rule->kind) {
    case SW_RULE_ERRNO:
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO((uint32_t)rule->errno_value), nr, 0);
        break;
    case SW_RULE_NO_EXEC:
        rc =
            seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
        break;
    default:
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
        break;
    }
    if (rc != 0) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(-rc), "seccomp rule for %s: %s",
                    rule->name, g_strerror(-rc));
        return FALSE;
    }
    return TRUE;
}

static gboolean
sw_confine_fill(scmp_filter_ctx ctx, GError **error)
{
    int rc = 0;

    for (gsize i = 0; i < G_N_ELEMENTS(sw_rules); i++) {
        /* the sanitizer's table overrides a few entries */
        gboolean overridden = FALSE;

        for (gsize j = 0; SW_CONFINE_ASAN && j < G_N_ELEMENTS(sw_asan_rules); j++)
            overridden |= g_str_equal(sw_rules[i].name, sw_asan_rules[j].name);
        if (!overridden && !sw_confine_add(ctx, &sw_rules[i], error))
            return FALSE;
    }
    for (gsize j = 0; SW_CONFINE_ASAN && j < G_N_ELEMENTS(sw_asan_rules); j++) {
        if (!sw_confine_add(ctx, &sw_asan_rules[j], error))
            return FALSE;
    }
    for (gsize i = 0; i < G_N_ELEMENTS(sw_ioctls) && rc == 0; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                              SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)sw_ioctls[i]));
    /* abort() and GLib raise signals at their own threads only */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                              SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
    /* GLib names its threads */
    if (rc == 0 && !SW_CONFINE_ASAN)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                              SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME));
    if (rc == 0 && !SW_CONFINE_ASAN)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                              SCMP_A0(SCMP_CMP_EQ, PR_GET_NAME));
    if (rc != 0) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(-rc), "seccomp rule: %s",
                    g_strerror(-rc));
        return FALSE;
    }
    return TRUE;
}

static gboolean
sw_confine_seccomp(GError **error)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    int rc;

    if (ctx == NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "seccomp_init failed");
        return FALSE;
    }
    /* every thread, GLib's too, gets the filter */
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    if (rc != 0) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(-rc), "seccomp TSYNC: %s",
                    g_strerror(-rc));
        seccomp_release(ctx);
        return FALSE;
    }
    if (!sw_confine_fill(ctx, error)) {
        seccomp_release(ctx);
        return FALSE;
    }
    rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc != 0) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(-rc), "loading the seccomp filter: %s",
                    g_strerror(-rc));
        return FALSE;
    }
    return TRUE;
}

gboolean
sw_confine_process(const SwConfineIds *ids, GError **error)
{
    if (ids->switch_ids && !sw_confine_ids(ids, error))
        return FALSE;
    if (!sw_confine_limits(error))
        return FALSE;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        int saved = errno;

        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved),
                    "prctl NO_NEW_PRIVS/DUMPABLE: %s", g_strerror(saved));
        return FALSE;
    }
    return sw_confine_seccomp(error);
}
