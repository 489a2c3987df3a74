/* An LD_PRELOAD shim for usbgwd that plays QEMU's user racing usbgwd:
 * right after bind() has created a unix socket whose path contains
 * USBGW_SWAP_MATCH, it replaces that path with a symbolic link to
 * USBGW_SWAP_TARGET (a new link renamed over the socket), the way a
 * process of QEMU's user would between usbgwd's bind and its chmod/chown.
 *
 *   USBGW_SWAP_MATCH   substring of the socket paths to attack (required)
 *   USBGW_SWAP_TARGET  what the link points to (required)
 *   USBGW_SWAP_UID/GID when set, the swap runs in a child process with
 *                      these ids (QEMU's user: what a real attacker has);
 *                      unset, it runs as usbgwd (root), as if a directory
 *                      on the way had been replaced
 *   USBGW_SWAP_LOG     a line per attempt: "swapped PATH" or
 *                      "not swapped PATH: ERROR"
 *
 * The child only calls async-signal-safe functions (usbgwd has threads). */
#include <dlfcn.h>
#include <errno.h>
#include <grp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

typedef int (*BindFn)(int, const struct sockaddr *, socklen_t);

/* Errno of the swap; 0 when the link replaced the socket. */
static int
swap_now(const char *path, const char *target, const char *tmp)
{
    if (symlink(target, tmp) != 0)
        return errno;
    if (rename(tmp, path) != 0) {
        int saved = errno;
        unlink(tmp);
        return saved;
    }
    return 0;
}

static int
swap_as(const char *path, const char *target, const char *tmp, const char *uid, const char *gid)
{
    uid_t u = (uid_t)strtoul(uid, NULL, 10);
    gid_t g = gid != NULL ? (gid_t)strtoul(gid, NULL, 10) : (gid_t)u;
    int status = 0;
    pid_t child = fork();

    if (child < 0)
        return errno;
    if (child == 0) {
        if (setgroups(0, NULL) != 0 || setgid(g) != 0 || setuid(u) != 0)
            _exit(EPERM);
        _exit(swap_now(path, target, tmp));
    }
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : EINTR;
}

int
bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    static BindFn next;
    const char *match = getenv("USBGW_SWAP_MATCH");
    const char *target = getenv("USBGW_SWAP_TARGET");
    const char *log = getenv("USBGW_SWAP_LOG");
    const char *uid = getenv("USBGW_SWAP_UID");
    char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
    char tmp[sizeof(path) + 16];
    int rc, err;

    if (next == NULL)
        next = (BindFn)dlsym(RTLD_NEXT, "bind");
    rc = next(fd, addr, len);
    if (rc != 0 || addr == NULL || addr->sa_family != AF_UNIX || match == NULL || target == NULL ||
        len <= offsetof(struct sockaddr_un, sun_path))
        return rc;
    memset(path, 0, sizeof(path));
    memcpy(path, ((const struct sockaddr_un *)addr)->sun_path,
           len - offsetof(struct sockaddr_un, sun_path) < sizeof(path) - 1
               ? len - offsetof(struct sockaddr_un, sun_path)
               : sizeof(path) - 1);
    if (path[0] == '\0' || strstr(path, match) == NULL)
        return rc;
    snprintf(tmp, sizeof(tmp), "%s.swap", path);
    err = uid != NULL ? swap_as(path, target, tmp, uid, getenv("USBGW_SWAP_GID"))
                      : swap_now(path, target, tmp);
    if (log != NULL) {
        FILE *f = fopen(log, "a");
        if (f != NULL) {
            if (err == 0)
                fprintf(f, "swapped %s\n", path);
            else
                fprintf(f, "not swapped %s: %s\n", path, strerror(err));
            fclose(f);
        }
    }
    errno = 0;
    return rc;
}
