"""Stock SPICE clients for tests: remote-viewer (Debian virt-viewer) on a
private Xvfb, lending USB devices with --spice-usbredir-redirect-on-connect.

    viewer = start_remote_viewer(sim, ["--plug", "hasp"], "127.0.0.1", port,
                                 ticket, "-1,0x0529,0x0001,-1,1|-1,-1,-1,-1,0",
                                 env, workdir)
    viewer.output.wait(r"main channel: opened")
    viewer.stop()

The viewer runs as the COMMAND of the simulator (tests/sim usbgw-sim ARGS
-- remote-viewer ...), so its libusb sees the simulated keys; pass sim=None
to run it on the real bus. The ticket goes in a mode-0600 .vv file, never
on a command line. env is the viewer's environment; as a user who cannot
ask polkit it needs SPICE_USB_ACL_BINARY (tests/spice/fake-acl-helper.sh).
Works as root and as a normal user. missing_programs() names what is not
installed, for the caller to SKIP.

stop() (also run at interpreter exit) ends the viewer with SIGTERM, which
usbgw-sim passes on, then SIGKILL, and then stops Xvfb; a viewer that
survived its simulator dies with its X server.
"""
import atexit
import os
import re
import secrets
import select
import shutil
import struct
import subprocess
import threading
import time

XVFB = "Xvfb"
REMOTE_VIEWER = "remote-viewer"
XVFB_START_TIMEOUT_S = 10
STOP_TIMEOUT_S = 10
WAIT_TIMEOUT_S = 25


class ClientError(Exception):
    pass


def missing_programs():
    """Why the client cannot run here ("... not installed"), or None."""
    missing = [p for p in (XVFB, REMOTE_VIEWER) if shutil.which(p) is None]
    if not missing:
        return None
    return f"{' and '.join(missing)} not installed (apt-get install xvfb virt-viewer)"


def descendants_named(pid, name):
    """Pids of pid's descendants whose command name is name (cut to 15
    characters, as the kernel keeps it)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append((int(entry), comm))
    found, todo = [], [pid]
    while todo:
        for child, comm in children.get(todo.pop(), []):
            if comm == name[:15]:
                found.append(child)
            todo.append(child)
    return found


class LineReader:
    """Collects a stream's lines and their arrival times (monotonic);
    wait() finds one matching a pattern."""

    def __init__(self, name, stream, echo=True):
        self.name, self.echo = name, echo
        self.lines = []
        self.times = []
        self.eof = False
        self.cond = threading.Condition()
        threading.Thread(target=self._run, args=(stream,), daemon=True).start()

    def _run(self, stream):
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            if self.echo:
                print(f"[{self.name}] {line}", flush=True)
            with self.cond:
                self.lines.append(line)
                self.times.append(time.monotonic())
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait(self, pattern, start=0, timeout=WAIT_TIMEOUT_S):
        """(index, match) of the first line from start on matching pattern;
        raises ClientError at EOF or after timeout seconds."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(start, len(self.lines)):
                    m = regex.search(self.lines[i])
                    if m:
                        return i, m
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    raise ClientError(f"{self.name}: no line matching /{pattern}/ "
                                      f"{'before EOF' if self.eof else f'within {timeout} s'}")
                self.cond.wait(left)

    def matching(self, pattern):
        """The lines so far that match pattern."""
        regex = re.compile(pattern)
        with self.cond:
            return [line for line in self.lines if regex.search(line)]

    def times_of(self, pattern):
        """When the lines so far that match pattern arrived."""
        regex = re.compile(pattern)
        with self.cond:
            return [t for t, line in zip(self.times, self.lines) if regex.search(line)]

    def count(self):
        with self.cond:
            return len(self.lines)


def _xauth_entry(cookie):
    """One Xauthority record for any host and display (FamilyWild, empty
    address and display number): the server loads every cookie in its
    -auth file, and libXau matches an empty number to any display."""
    def field(data):
        return struct.pack(">H", len(data)) + data
    return (struct.pack(">H", 0xFFFF) + field(b"") + field(b"")
            + field(b"MIT-MAGIC-COOKIE-1") + field(cookie))


def _write_private(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _start_xvfb(workdir):
    """Starts Xvfb on a display number it picks itself (-displayfd) with a
    fresh cookie; returns (Popen, DISPLAY, XAUTHORITY path)."""
    xauthority = os.path.join(workdir, "Xauthority")
    _write_private(xauthority, _xauth_entry(secrets.token_bytes(16)))
    log_path = os.path.join(workdir, "xvfb.log")
    read_fd, write_fd = os.pipe()
    try:
        with open(log_path, "wb") as log:
            xvfb = subprocess.Popen(
                [XVFB, "-displayfd", str(write_fd), "-auth", xauthority,
                 "-nolisten", "tcp", "-screen", "0", "800x600x24"],
                pass_fds=(write_fd,), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT)
        os.close(write_fd)
        write_fd = -1
        # Xvfb writes the number once it accepts connections.
        number = b""
        deadline = time.monotonic() + XVFB_START_TIMEOUT_S
        while not number.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                break
            chunk = os.read(read_fd, 16)
            if not chunk:
                break
            number += chunk
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    if not number.strip().isdigit():
        xvfb.kill()
        xvfb.wait()
        with open(log_path, errors="replace") as log:
            raise ClientError(f"Xvfb did not start: {log.read().strip()}")
    return xvfb, f":{number.strip().decode()}", xauthority


def _vv_file(path, host, port, ticket):
    if any(c in ticket for c in "\r\n") or ticket != ticket.strip():
        raise ClientError("the ticket does not fit in a .vv file")
    password = ticket.replace("\\", "\\\\")  # GKeyFile escapes
    text = f"[virt-viewer]\ntype=spice\nhost={host}\nport={port}\npassword={password}\n"
    _write_private(path, text.encode())


class RemoteViewer:
    """A running remote-viewer. proc is the simulator's (or, without one,
    the viewer's) Popen; output reads its stdout and stderr."""

    def __init__(self, proc, output, xvfb):
        self.proc, self.output, self.xvfb = proc, output, xvfb
        atexit.register(self.stop)

    def stop(self):
        """Ends the viewer and Xvfb; returns proc's exit status. Idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.xvfb.poll() is None:
            self.xvfb.terminate()
            try:
                self.xvfb.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.xvfb.kill()
                self.xvfb.wait()
        atexit.unregister(self.stop)
        return self.proc.returncode


def start_remote_viewer(sim, sim_args, host, port, ticket, usb_filter, env, workdir,
                        reader=None, vv=None):
    """Starts remote-viewer connecting to spice://host:port with ticket and
    redirecting the devices usb_filter (usbredirfilter syntax) selects.
    sim: simulator path or None; sim_args: its options. workdir: private,
    existing, kept until stop(). reader(stream) makes output (default: a
    LineReader echoing "[remote-viewer] LINE"). vv: a connection file
    made elsewhere (usbgwctl share --vv); host, port and ticket are then
    not used."""
    reason = missing_programs()
    if reason:
        raise ClientError(reason)
    if vv is None:
        vv = os.path.join(workdir, "remote-viewer.vv")
        _vv_file(vv, host, port, ticket)
    home = os.path.join(workdir, "remote-viewer-home")
    os.makedirs(home, mode=0o700, exist_ok=True)
    xvfb, display, xauthority = _start_xvfb(workdir)
    env = dict(env, DISPLAY=display, XAUTHORITY=xauthority,
               # settings, caches and buses of no user session
               HOME=home, XDG_CONFIG_HOME=home, XDG_CACHE_HOME=home,
               XDG_DATA_HOME=home, XDG_RUNTIME_DIR=home,
               GSETTINGS_BACKEND="memory", NO_AT_BRIDGE="1",
               DBUS_SESSION_BUS_ADDRESS=f"unix:path={home}/no-session-bus")
    args = [REMOTE_VIEWER, "--debug", f"--spice-usbredir-redirect-on-connect={usb_filter}", vv]
    if sim is not None:
        args = [sim, *sim_args, "--", *args]
    try:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env)
    except OSError:
        xvfb.kill()
        xvfb.wait()
        raise
    output = reader(proc.stdout) if reader else LineReader("remote-viewer", proc.stdout)
    return RemoteViewer(proc, output, xvfb)
