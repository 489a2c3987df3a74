/* gateway/serve/gw-vm-socket.c: the pid file of a VM's QEMU read
 * strictly (table of contents, then files that must not be trusted), the
 * pid file pattern, and the directories and stale links a listen meets. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <glib/gstdio.h>

#include "gw-vm-socket.h"

/* nobody on Debian; only used when the test runs as root */
#define TEST_OTHER_UID 65534

typedef struct {
    const gchar *name;
    const gchar *contents;
    pid_t want; /* 0: refused */
} PidCase;

static const PidCase pid_cases[] = {
    {.name = "newline", .contents = "1234\n", .want = 1234},
    {.name = "no-newline", .contents = "1234", .want = 1234},
    {.name = "largest", .contents = "2147483647\n", .want = G_MAXINT32},
    {.name = "empty", .contents = "", .want = 0},
    {.name = "only-newline", .contents = "\n", .want = 0},
    {.name = "trailing-junk", .contents = "12a\n", .want = 0},
    {.name = "leading-space", .contents = " 12\n", .want = 0},
    {.name = "plus", .contents = "+12\n", .want = 0},
    {.name = "minus", .contents = "-12\n", .want = 0},
    {.name = "two-newlines", .contents = "12\n\n", .want = 0},
    {.name = "two-lines", .contents = "12\n34\n", .want = 0},
    {.name = "init", .contents = "1\n", .want = 0},
    {.name = "zero", .contents = "0\n", .want = 0},
    {.name = "above-int", .contents = "2147483648\n", .want = 0},
    {.name = "overflow", .contents = "99999999999999999999999\n", .want = 0},
    {.name = "too-long", .contents = "0000000000000000000000000000000000000012\n", .want = 0},
    {.name = "nul", .contents = "12\0", .want = 0},
};

static gchar *
make_tmp_dir(void)
{
    g_autoptr(GError) error = NULL;
    gchar *dir = g_dir_make_tmp("test-gw-vm-socket-XXXXXX", &error);
    g_assert_no_error(error);
    return dir;
}

static void
write_file(const gchar *path, const gchar *contents, gssize len, mode_t mode)
{
    g_autoptr(GError) error = NULL;
    g_file_set_contents(path, contents, len, &error);
    g_assert_no_error(error);
    g_assert_cmpint(g_chmod(path, mode), ==, 0);
}

static void
test_no_incoming(GSocketConnection *connection, gpointer user_data)
{
    g_assert_not_reached();
}

static void
test_pid_contents(gconstpointer data)
{
    const PidCase *c = data;
    g_autofree gchar *dir = make_tmp_dir();
    g_autofree gchar *path = g_build_filename(dir, "vm.pid", NULL);
    g_autoptr(GError) error = NULL;
    pid_t pid = 0;
    /* "nul" has a byte after the digits that strlen would not count */
    gssize len = strcmp(c->name, "nul") == 0 ? 3 : -1;

    write_file(path, c->contents, len, 0644);
    if (c->want != 0) {
        g_assert_true(gw_vm_socket_read_pid(path, &pid, &error));
        g_assert_no_error(error);
        g_assert_cmpint(pid, ==, c->want);
    } else {
        g_assert_false(gw_vm_socket_read_pid(path, &pid, &error));
        g_assert_nonnull(error);
        /* the message names the file */
        g_assert_nonnull(strstr(error->message, path));
    }
    g_unlink(path);
    g_rmdir(dir);
}

/* Files with a good pid that must not be believed. */
static void
test_pid_untrusted(void)
{
    g_autofree gchar *dir = make_tmp_dir();
    g_autofree gchar *good = g_build_filename(dir, "good.pid", NULL);
    g_autofree gchar *link = g_build_filename(dir, "link.pid", NULL);
    g_autofree gchar *writable = g_build_filename(dir, "writable.pid", NULL);
    g_autofree gchar *sub = g_build_filename(dir, "sub", NULL);
    g_autofree gchar *via = g_build_filename(dir, "via", NULL);
    g_autofree gchar *through = g_build_filename(via, "good.pid", NULL);
    g_autoptr(GError) error = NULL;
    pid_t pid = 0;

    write_file(good, "4321\n", -1, 0644);
    g_assert_true(gw_vm_socket_read_pid(good, &pid, &error));
    g_assert_cmpint(pid, ==, 4321);
    /* the last component a symbolic link */
    g_assert_cmpint(symlink(good, link), ==, 0);
    g_assert_false(gw_vm_socket_read_pid(link, &pid, &error));
    g_assert_nonnull(strstr(error->message, "no symbolic links"));
    g_clear_error(&error);
    /* a directory on the way a symbolic link */
    g_assert_cmpint(symlink(dir, via), ==, 0);
    g_assert_false(gw_vm_socket_read_pid(through, &pid, &error));
    g_assert_nonnull(error);
    g_clear_error(&error);
    /* writable by the group */
    write_file(writable, "4321\n", -1, 0664);
    g_assert_false(gw_vm_socket_read_pid(writable, &pid, &error));
    g_assert_nonnull(strstr(error->message, "not a pid file to trust"));
    g_clear_error(&error);
    /* a directory */
    g_assert_cmpint(g_mkdir(sub, 0755), ==, 0);
    g_assert_false(gw_vm_socket_read_pid(sub, &pid, &error));
    g_assert_nonnull(error);
    g_clear_error(&error);
    /* written by another user (QEMU's, say) */
    if (geteuid() == 0) {
        g_assert_cmpint(chown(good, TEST_OTHER_UID, TEST_OTHER_UID), ==, 0);
        g_assert_false(gw_vm_socket_read_pid(good, &pid, &error));
        g_assert_nonnull(strstr(error->message, "not a pid file to trust"));
        g_clear_error(&error);
    }
    g_unlink(via);
    g_unlink(link);
    g_unlink(good);
    g_unlink(writable);
    g_rmdir(sub);
    g_rmdir(dir);
}

static void
test_pid_file_path(void)
{
    static const struct {
        const gchar *vm;
        const gchar *want; /* NULL: refused */
    } cases[] = {
        {"cad-01", "/run/libvirt/qemu/cad-01.pid"},
        {"with space", "/run/libvirt/qemu/with space.pid"},
        {"a/b", NULL},
        {"../x", NULL},
        {"..", NULL},
        {".", NULL},
        {"", NULL},
    };

    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GError) error = NULL;
        g_autofree gchar *path =
            gw_vm_socket_pid_file_path("/run/libvirt/qemu/{vm}.pid", cases[i].vm, &error);
        g_assert_cmpstr(path, ==, cases[i].want);
        if (cases[i].want == NULL)
            g_assert_nonnull(error);
    }
}

/* A VM directory that an older usbgwd gave to QEMU's user, holding a link
 * where the socket goes: the directory is taken back, the link removed,
 * its target untouched, and the socket is usbgwd's. */
static void
test_listen_takes_back(void)
{
    static const GwVmSocketAccess access = {
        .uid = (uid_t)-1,
        .gid = (gid_t)-1,
        .check = GW_VM_PEER_CHECK_UID,
    };
    g_autofree gchar *dir = make_tmp_dir();
    g_autofree gchar *root = g_build_filename(dir, "vm", NULL);
    g_autofree gchar *vm_dir = g_build_filename(root, "test-vm", NULL);
    g_autofree gchar *sock = g_build_filename(vm_dir, "key.sock", NULL);
    g_autofree gchar *target = g_build_filename(dir, "target", NULL);
    g_autoptr(GwVmListener) service = NULL;
    g_autoptr(GError) error = NULL;
    struct stat st;

    if (geteuid() != 0) {
        g_test_skip("needs root (a directory of another user)");
        g_rmdir(dir);
        return;
    }
    write_file(target, "secret", -1, 0640);
    g_assert_cmpint(g_mkdir(root, 0711), ==, 0);
    g_assert_cmpint(g_mkdir(vm_dir, 0700), ==, 0);
    g_assert_cmpint(chown(vm_dir, TEST_OTHER_UID, TEST_OTHER_UID), ==, 0);
    g_assert_cmpint(symlink(target, sock), ==, 0);

    service = gw_vm_socket_listen(&access, sock, test_no_incoming, NULL, &error);
    g_assert_no_error(error);
    g_assert_nonnull(service);
    g_assert_cmpint(lstat(vm_dir, &st), ==, 0);
    g_assert_cmpint(st.st_uid, ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0700);
    g_assert_cmpint(lstat(sock, &st), ==, 0);
    g_assert_true(S_ISSOCK(st.st_mode));
    g_assert_cmpint(st.st_mode & 07777, ==, 0600);
    g_assert_cmpint(stat(target, &st), ==, 0);
    g_assert_cmpint(st.st_uid, ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0640);
    g_clear_pointer(&service, gw_vm_listener_free);

    /* a VM directory that is a symbolic link is refused */
    g_unlink(sock);
    g_rmdir(vm_dir);
    g_assert_cmpint(symlink(dir, vm_dir), ==, 0);
    service = gw_vm_socket_listen(&access, sock, test_no_incoming, NULL, &error);
    g_assert_null(service);
    g_assert_nonnull(strstr(error->message, "not a symbolic link"));
    g_clear_error(&error);
    g_unlink(vm_dir);

    /* so is a <rundir>/vm others may write in */
    g_assert_cmpint(g_chmod(root, 0777), ==, 0);
    service = gw_vm_socket_listen(&access, sock, test_no_incoming, NULL, &error);
    g_assert_null(service);
    g_assert_nonnull(strstr(error->message, "writable by nobody else"));
    g_rmdir(root);
    g_unlink(target);
    g_rmdir(dir);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (guint i = 0; i < G_N_ELEMENTS(pid_cases); i++) {
        g_autofree gchar *name = g_strdup_printf("/vm-socket/pid/%s", pid_cases[i].name);
        g_test_add_data_func(name, &pid_cases[i], test_pid_contents);
    }
    g_test_add_func("/vm-socket/pid/untrusted", test_pid_untrusted);
    g_test_add_func("/vm-socket/pid-file-path", test_pid_file_path);
    g_test_add_func("/vm-socket/listen/takes-back", test_listen_takes_back);
    return g_test_run();
}
