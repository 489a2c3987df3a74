/* The SPICE worker's confinement (spice/sw-confine.c) attacked from inside.
 *
 * Each case forks a child that prepares what the worker would have before
 * confining (a bound, listening TCP socket, a socketpair, a TCP socket not
 * yet connected), confines itself with the worker's own code
 * (sw_confine_network() when root, then sw_confine_process() with a uid of
 * its own when root) and then tries one thing. The parent checks how that
 * ended: the errno the child reports in its exit status, or the signal
 * that killed it (SIGSYS: the seccomp filter's SCMP_ACT_KILL_PROCESS).
 * Cases that must keep working (the socketpair, accept on the bound
 * socket) are checked the same way, as are the child's /proc status
 * (Seccomp: 2, NoNewPrivs: 1, its uid) and its network namespace. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sw-confine.h"

/* A child's exit status for "it worked" (errno values are below 128). */
#define T_EXIT_OK 0
/* "the attack did something unexpected" */
#define T_EXIT_ODD 200
/* Above the default range's end: a uid no test and no worker uses. */
#define T_UID_BASE 1879050000U
#define T_UID_SPAN 10000U
/* The victim process's lifetime at most. */
#define T_VICTIM_MAX_S 60

typedef struct {
    int listener;     /* bound and listening on 127.0.0.1, before confining */
    guint16 port;     /* its port */
    int pair;         /* the child's end of a socketpair to the parent */
    int tcp;          /* an AF_INET socket made before confining, not connected */
    pid_t victim;     /* another process, the parent's uid */
    const char *file; /* a world-readable file */
} TChild;

typedef int (*TAttack)(TChild *child);

/* The attacks; each returns the child's exit status. */

static int
t_errno_of(int rc)
{
    return rc >= 0 ? T_EXIT_OK : errno;
}

static int
t_connect_tcp(TChild *child)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(child->port)};

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return t_errno_of(connect(child->tcp, (struct sockaddr *)&addr, sizeof(addr)));
}

static int
t_connect_unix(TChild *child)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    if (fd < 0)
        return errno; /* refused already */
    g_strlcpy(addr.sun_path, "/run/systemd/journal/stdout", sizeof(addr.sun_path));
    return t_errno_of(connect(fd, (struct sockaddr *)&addr, sizeof(addr)));
}

static int
t_socket_inet(TChild *child)
{
    return t_errno_of(socket(AF_INET, SOCK_STREAM, 0));
}

static int
t_open_file(TChild *child)
{
    return t_errno_of(open(child->file, O_RDONLY));
}

static int
t_kill_other(TChild *child)
{
    return t_errno_of(kill(child->victim, 0));
}

static int
t_fork(TChild *child)
{
    pid_t pid = fork();

    if (pid == 0)
        _exit(0);
    if (pid > 0) {
        waitpid(pid, NULL, 0);
        return T_EXIT_OK;
    }
    return errno;
}

static int
t_exec(TChild *child)
{
    char *const argv[] = {(char *)"/bin/true", NULL};
    char *const envp[] = {NULL};

    execve(argv[0], argv, envp);
    return errno;
}

static int
t_mmap_exec(TChild *child)
{
    void *p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    return p == MAP_FAILED ? errno : T_EXIT_OK;
}

static int
t_regain_root(TChild *child)
{
    return t_errno_of(setuid(0));
}

/* What must keep working. */

static int
t_socketpair_works(TChild *child)
{
    char byte = 'x';

    if (write(child->pair, &byte, 1) != 1 || read(child->pair, &byte, 1) != 1)
        return errno;
    return byte == 'y' ? T_EXIT_OK : T_EXIT_ODD;
}

static int
t_accept_works(TChild *child)
{
    char byte = 'x';
    int fd;

    if (write(child->pair, &byte, 1) != 1) /* "connect now" */
        return errno;
    fd = accept(child->listener, NULL, NULL);
    if (fd < 0)
        return errno;
    if (read(fd, &byte, 1) != 1)
        return errno;
    return byte == 'z' ? T_EXIT_OK : T_EXIT_ODD;
}

/* The child sleeps confined until the parent has looked at it. */
static int
t_wait_for_parent(TChild *child)
{
    char byte = 'r';

    if (write(child->pair, &byte, 1) != 1 || read(child->pair, &byte, 1) != 1)
        return errno;
    return T_EXIT_OK;
}

typedef enum { T_WANT_EXIT, T_WANT_SIGNAL } TWant;

typedef struct {
    const char *name;
    TAttack attack;
    TWant want;
    int value;      /* exit status or signal */
    int asan_value; /* errno in sanitizer builds (0: same as value) */
} TCase;

static const TCase t_cases[] = {
    {"connect-tcp", t_connect_tcp, T_WANT_EXIT, EACCES, 0},
    {"connect-unix", t_connect_unix, T_WANT_EXIT, EACCES, 0},
    {"socket-inet", t_socket_inet, T_WANT_EXIT, EACCES, 0},
    {"open-file", t_open_file, T_WANT_EXIT, EACCES, 0},
    {"kill-other", t_kill_other, T_WANT_EXIT, EPERM, 0},
    {"fork", t_fork, T_WANT_SIGNAL, SIGSYS, EPERM},
    {"exec", t_exec, T_WANT_SIGNAL, SIGSYS, EPERM},
    {"mmap-exec", t_mmap_exec, T_WANT_SIGNAL, SIGSYS, 0},
    {"regain-root", t_regain_root, T_WANT_SIGNAL, SIGSYS, 0},
    {"socketpair-works", t_socketpair_works, T_WANT_EXIT, T_EXIT_OK, 0},
    {"accept-works", t_accept_works, T_WANT_EXIT, T_EXIT_OK, 0},
};

static uid_t
t_child_uid(void)
{
    return T_UID_BASE + (uid_t)getpid() % T_UID_SPAN;
}

/* In the child: prepare as the worker does, confine, attack. */
static G_GNUC_NORETURN void
t_child_run(TChild *child, TAttack attack)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GError) net_error = NULL;
    SwConfineIds ids = {0};
    g_autofree char *name = NULL;

    if (geteuid() == 0) {
        ids.switch_ids = TRUE;
        ids.uid = t_child_uid();
        ids.gid = ids.uid;
        name = g_strdup_printf("uid %u", (unsigned)ids.uid);
        ids.name = name;
        if (!sw_confine_network(&net_error))
            g_printerr("child: %s\n", net_error->message);
    }
    if (!sw_confine_process(&ids, &error)) {
        g_printerr("child: %s\n", error->message);
        _exit(T_EXIT_ODD + 1);
    }
    _exit(attack(child));
}

static void
t_listen(TChild *child)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t length = sizeof(addr);

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    child->listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert_cmpint(child->listener, >=, 0);
    g_assert_cmpint(bind(child->listener, (struct sockaddr *)&addr, sizeof(addr)), ==, 0);
    g_assert_cmpint(listen(child->listener, 4), ==, 0);
    g_assert_cmpint(getsockname(child->listener, (struct sockaddr *)&addr, &length), ==, 0);
    child->port = ntohs(addr.sin_port);
}

static gchar *
t_proc_field(pid_t pid, const char *field)
{
    g_autofree gchar *path = g_strdup_printf("/proc/%d/status", (int)pid);
    g_autofree gchar *status = NULL;
    g_auto(GStrv) lines = NULL;
    g_autofree gchar *prefix = g_strdup_printf("%s:", field);

    g_assert_true(g_file_get_contents(path, &status, NULL, NULL));
    lines = g_strsplit(status, "\n", -1);
    for (guint i = 0; lines[i] != NULL; i++) {
        if (g_str_has_prefix(lines[i], prefix))
            return g_strdup(g_strstrip(lines[i] + strlen(prefix)));
    }
    return NULL;
}

/* Forks a child for @attack; returns its wait status. With @inspect the
 * parent looks at the confined child first (t_wait_for_parent). */
static int
t_run(TAttack attack, pid_t victim, const char *file, void (*inspect)(pid_t pid))
{
    TChild child = {.victim = victim, .file = file};
    int pair[2];
    pid_t pid;
    int status = 0;

    t_listen(&child);
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), ==, 0);
    child.pair = pair[1];
    child.tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert_cmpint(child.tcp, >=, 0);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        close(pair[0]);
        t_child_run(&child, attack);
    }
    close(pair[1]);
    close(child.tcp);
    if (attack == t_socketpair_works) {
        char byte;

        g_assert_cmpint(read(pair[0], &byte, 1), ==, 1);
        byte = 'y';
        g_assert_cmpint(write(pair[0], &byte, 1), ==, 1);
    } else if (attack == t_accept_works) {
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(child.port)};
        char byte;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        g_assert_cmpint(read(pair[0], &byte, 1), ==, 1);
        g_assert_cmpint(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), ==, 0);
        byte = 'z';
        g_assert_cmpint(write(fd, &byte, 1), ==, 1);
        close(fd);
    } else if (inspect != NULL) {
        char byte;

        g_assert_cmpint(read(pair[0], &byte, 1), ==, 1);
        inspect(pid);
        g_assert_cmpint(write(pair[0], &byte, 1), ==, 1);
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    close(pair[0]);
    close(child.listener);
    return status;
}

static pid_t t_victim;
static gchar *t_file;

static void
t_case(gconstpointer data)
{
    const TCase *tc = data;
    int status = t_run(tc->attack, t_victim, t_file, NULL);
    gboolean asan = sw_confine_is_sanitizer_build() && tc->asan_value != 0;

    if (asan) {
        /* the sanitizer's runtime needs these to fail, not to kill */
        g_assert_true(WIFEXITED(status));
        g_assert_cmpint(WEXITSTATUS(status), ==, tc->asan_value);
    } else if (tc->want == T_WANT_SIGNAL) {
        if (!WIFSIGNALED(status))
            g_test_message("%s: exited %d", tc->name, WEXITSTATUS(status));
        g_assert_true(WIFSIGNALED(status));
        g_assert_cmpint(WTERMSIG(status), ==, tc->value);
    } else {
        if (!WIFEXITED(status))
            g_test_message("%s: killed by signal %d", tc->name, WTERMSIG(status));
        g_assert_true(WIFEXITED(status));
        g_assert_cmpint(WEXITSTATUS(status), ==, tc->value);
    }
}

static void
t_inspect(pid_t pid)
{
    g_autofree gchar *seccomp = t_proc_field(pid, "Seccomp");
    g_autofree gchar *nnp = t_proc_field(pid, "NoNewPrivs");
    g_autofree gchar *uids = t_proc_field(pid, "Uid");
    g_autofree gchar *groups = t_proc_field(pid, "Groups");
    g_autofree gchar *limits_path = g_strdup_printf("/proc/%d/limits", (int)pid);
    g_autofree gchar *limits = NULL;

    g_assert_cmpstr(seccomp, ==, "2");
    g_assert_cmpstr(nnp, ==, "1");
    g_assert_true(g_file_get_contents(limits_path, &limits, NULL, NULL));
    g_assert_true(g_regex_match_simple("^Max processes +0 +0 ", limits, G_REGEX_MULTILINE, 0));
    g_assert_true(g_regex_match_simple("^Max core file size +0 +0 ", limits, G_REGEX_MULTILINE, 0));
    g_assert_true(g_regex_match_simple("^Max open files +128 +128 ", limits, G_REGEX_MULTILINE, 0));
    if (geteuid() == 0) {
        g_autofree gchar *want = NULL;
        g_autofree gchar *mine = g_file_read_link("/proc/self/ns/net", NULL);
        g_autofree gchar *ns_path = g_strdup_printf("/proc/%d/ns/net", (int)pid);
        g_autofree gchar *theirs = g_file_read_link(ns_path, NULL);
        /* t_child_uid() as the child computed it, from its pid */
        guint u = T_UID_BASE + (guint)pid % T_UID_SPAN;
        want = g_strdup_printf("%u\t%u\t%u\t%u", u, u, u, u);
        g_assert_cmpstr(uids, ==, want);
        g_assert_cmpstr(groups, ==, "");
        g_assert_nonnull(theirs);
        g_assert_cmpstr(theirs, !=, mine);
    }
}

static void
t_status(void)
{
    int status = t_run(t_wait_for_parent, t_victim, t_file, t_inspect);

    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, T_EXIT_OK);
}

int
main(int argc, char **argv)
{
    g_autoptr(GError) error = NULL;
    int fd;
    int rc;

    g_test_init(&argc, &argv, NULL);
    fd = g_file_open_tmp("test-sw-confine-XXXXXX", &t_file, &error);
    g_assert_no_error(error);
    close(fd);
    g_assert_cmpint(g_chmod(t_file, 0644), ==, 0);
    t_victim = fork();
    g_assert_cmpint(t_victim, >=, 0);
    if (t_victim == 0) {
        /* an assertion may end the parent early: do not outlive it */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(T_VICTIM_MAX_S);
        pause();
        _exit(0);
    }
    for (gsize i = 0; i < G_N_ELEMENTS(t_cases); i++) {
        g_autofree gchar *path = g_strdup_printf("/sw-confine/%s", t_cases[i].name);

        g_test_add_data_func(path, &t_cases[i], t_case);
    }
    g_test_add_func("/sw-confine/proc-status", t_status);
    rc = g_test_run();
    kill(t_victim, SIGKILL);
    waitpid(t_victim, NULL, 0);
    g_unlink(t_file);
    g_free(t_file);
    return rc;
}
