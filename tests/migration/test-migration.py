#!/usr/bin/env python3
"""Live migration on one host (or between two, USBGW_MIGRATION_PATH=hosts):
a VM keeps its key, no re-enumeration, no lost transfer.

    test-migration.py USBGWD USBGW_SIM TEST_PEER USBGWCTL GUEST_DIR

usbgwd (vm-peer-check=uid) serves the simulated vendor key to "test-vm" on
usbgw-sim's keys. The tiny guest runs in a plain QEMU whose probe answers
the key's challenge every 200 ms (usbgw.loop_ms=200). Each migration starts
a destination QEMU with the same options plus -incoming (its usb-redir
chardev connects to the same socket at start-up: usbgwd holds it as the
migration destination), runs "migrate -d" on the source's monitor, waits
for "completed" and quits the source; ten migrations back and forth. Then a
migration cancelled (migrate_cancel on a slowed migration) and one that
fails (the destination killed): the source keeps the key.

Asserted from the guests' consoles (host time stamps on every line): every
round's answer is the one computed from the key's secret, no round reports
an error, the key keeps its bus number, device number and port in every
round (it never enumerated again), QEMU never warns that the usb-redir
connection broke; from usbgwd: ten handovers logged and audited
("migrate", with the bytes drained and re-sent), two "migrate-failed", the
VM and its key shown "migrating" while a destination waits. Prints the
rounds, the migrations, and the longest gap between two answers next to
QEMU's own downtime (info migrate).

USBGW_MIGRATION_PATH=hosts migrates between two hosts: two network
namespaces joined by a veth pair, each with its own usbgwd and its own
QEMUs. usbgwd "hv-a" holds the key and serves the VM (its anchor); usbgwd
"hv-b" has a gateway link (TLS) to it and relays the socket of a QEMU on
its host to hv-a. Before each destination QEMU starts, usbgw-hook runs on
the destination host as libvirt would ("migrate begin" with the source's
domain XML), and that host's usbgwd binds the VM's socket under its own
run dir; the migration stream goes over TCP between the namespaces.
Asserted as well: hv-a hands over every time, each host audits its
"migrate-out" and "migrate-in" records naming both gateways. Before the
migrations, hv-a refuses two relays of a fake QEMU (RelayAttacks): from a
gateway of the same CA that is not its migration peer, and for a socket it
does not serve; the VM keeps answering.

USBGW_MIGRATION_PATH=hosts-imported: the same two hosts, without the
relay attacks, but hv-a imports the key from a dongle server, usbgwd
"dongles1" beside it in namespace a (HostsImportedRig): the anchor's
socket belongs to hv-a's import proxy, and the bytes of a QEMU on hv-b go
hv-b -> hv-a -> dongles1.

Env: USBGW_MIGRATION_KEY_DELAY_MS (the key holds each answer this long,
default 0), USBGW_MIGRATION_DEBUG=N (usb-redir debug=N on every QEMU,
usbgwd's serve debug log), USBGW_TEST_KEEP=1 (keep the work folder with
every console and usbgwd's log).

Exit 77 (skip) only when QEMU or the guest image is missing, and for
USBGW_MIGRATION_PATH=hosts (or hosts-imported) without root or iproute2's
`ip netns`.
"""
import glob
import itertools
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

HASP_SECRET = "000102030405060708090a0b0c0d0e0f"
CHALLENGE = "00112233445566778899aabbccddeeff"
VM = "test-vm"
MIGRATIONS = 10
GUEST_MEM_MB = 128
LOOP_MS = 200
# answers the guest gives on each new source before the next migration
ANSWERS_BETWEEN = 3
BOOT_TIMEOUT_S = 90
MIGRATE_TIMEOUT_S = 60
# USBGW_MIGRATION_KEY_DELAY_MS: the simulated key holds every transfer's
# answer this long (usbgw-sim, USBGW_SIM_REAP_DELAY_MS), so a migration
# often stops the source with an answer on its way, which usbgwd must
# re-send to the destination. Off by default (docs/migration.md, "Known
# failure")
KEY_DELAY_MS = int(os.environ.get("USBGW_MIGRATION_KEY_DELAY_MS", "0"))
# how long the source stays after the migration in odd rounds
SOURCE_LINGER_S = 0.3
# a migration slowed enough to be cancelled or failed mid-way
SLOW_BANDWIDTH = "1M"
FAST_BANDWIDTH = "1G"

# USBGW_MIGRATION_PATH: "host" (the key on the VM's own usbgwd),
# "imported" (from another usbgwd over a gateway link, through the
# importer's validating proxy), "lent" (usbgw-share lends it over SPICE:
# the worker and the same proxy; USBGW_MIGRATION_WORKER,
# USBGW_MIGRATION_SHARE and USBGW_MIGRATION_ACL_HELPER name the programs)
# "hosts" (between two hosts, see HostsRig; USBGW_MIGRATION_HOOK names
# usbgw-hook) or "hosts-imported" (the same with the key imported from a
# dongle server, see HostsImportedRig)
PATH = os.environ.get("USBGW_MIGRATION_PATH", "host")
HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_CERTS = os.environ.get("USBGW_MIGRATION_MAKE_CERTS",
                            os.path.join(HERE, "..", "link", "make-certs.sh"))
GUEST = os.path.join(HERE, "..", "guest")
PROCS = []

# USBGW_MIGRATION_PATH=hosts: the hosts' namespaces are named and
# addressed by a run number claimed under HOSTS_CLAIMS (see Namespaces;
# USBGW_MIGRATION_CLAIMS puts the claims elsewhere); the outer run passes
# them to the inner one in the variable HOSTS_ENV names
HOSTS_PATHS = ("hosts", "hosts-imported")
HOSTS_CLAIMS = os.environ.get("USBGW_MIGRATION_CLAIMS", "/run/usbgw-migration-hosts")
HOSTS_ENV = "USBGW_MIGRATION_NETNS"
HOOK = os.environ.get("USBGW_MIGRATION_HOOK", "")
# the VM's UUID in the domain XML the hook reads
VM_UUID = "5c0b7d4e-3f2a-4e61-9b8d-0a1c2e3f4a5b"
# in the hosts' own namespaces, so fixed ports are free
LINK_PORT = 7576
MIGRATION_PORT_BASE = 5600
# how long a destination's usbgwd may take to bind the VM's socket after
# the hook returned
BIND_TIMEOUT_S = 10


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def skip(msg):
    print(f"SKIP: {msg}", flush=True)
    sys.exit(77)


class Console:
    """A QEMU's output, one (host monotonic time, line) per line; the last
    unfinished line (QEMU quit mid-line) is kept with the time it came."""

    def __init__(self, name, stream):
        self.name = name
        self.lines = []
        self.partial = ("", 0.0)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream):
        buf = b""
        fd = stream.fileno()
        while True:
            chunk = os.read(fd, 4096)
            t = time.monotonic()
            if not chunk:
                break
            buf += chunk
            *done, buf = buf.split(b"\n")
            with self.lock:
                for line in done:
                    self.lines.append((t, line.decode(errors="replace").replace("\r", "")))
                self.partial = (buf.decode(errors="replace").replace("\r", ""), t)

    def count(self, pattern):
        with self.lock:
            return sum(1 for _, line in self.lines if re.search(pattern, line))

    def text(self):
        with self.lock:
            return "\n".join(line for _, line in self.lines)


class Qemu:
    """The VM's QEMU on HOST (a LocalHost or a NetnsHost), its usb-redir
    chardev on that host's VM socket; with incoming, a migration
    destination listening on the URI in self.incoming."""

    def __init__(self, rig, name, host, incoming=False):
        self.name = name
        self.host = host
        self.monitor = os.path.join(rig.work, f"{name}.mon")
        self.incoming = host.incoming(name) if incoming else None
        args = [*host.exec_prefix, "bash", os.path.join(GUEST, "run-guest.sh"), rig.guest_dir,
                "-chardev", f"socket,id=ur0,path={host.sock},reconnect=1",
                "-device", "usb-redir,chardev=ur0,bus=xhci.0,id=key"
                + (f",debug={os.environ['USBGW_MIGRATION_DEBUG']}"
                   if os.environ.get("USBGW_MIGRATION_DEBUG") else ""),
                "-monitor", f"unix:{self.monitor},server=on,wait=off"]
        if self.incoming:
            args += ["-incoming", self.incoming]
        env = dict(os.environ,
                   USBGW_GUEST_APPEND=f"usbgw.dev=0529:0001 usbgw.challenge={CHALLENGE} "
                                      f"usbgw.loop_ms={LOOP_MS}",
                   USBGW_GUEST_MEM=str(GUEST_MEM_MB), USBGW_GUEST_TIMEOUT="900")
        # QEMU's own messages (usb-redir debug output above all) on their
        # own stream, so they never split a guest's console line
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, start_new_session=True)
        PROCS.append(self.proc)
        self.console = Console(name, self.proc.stdout)
        self.messages = Console(name, self.proc.stderr)

    def hmp(self, *commands, check=True):
        out = subprocess.run([sys.executable, os.path.join(GUEST, "qemu-hmp.py"), self.monitor,
                              *commands], capture_output=True, text=True)
        if check and out.returncode != 0:
            fail(f"{self.name}: HMP {commands}: {out.stderr.strip()} {out.stdout.strip()}")
        return out.stdout

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.console.thread.join(5)
        self.messages.thread.join(5)

    def listening(self):
        """Whether the destination listens on its incoming URI yet."""
        kind, _, where = self.incoming.partition(":")
        if kind == "unix":
            return os.path.exists(where)
        # tcp:ADDR:PORT: a listening socket (state 0A) in the QEMU's own
        # network namespace, which its /proc/PID/net/tcp shows
        port = f":{int(where.rsplit(':', 1)[1]):04X}"
        try:
            with open(f"/proc/{self.proc.pid}/net/tcp") as f:
                rows = [row.split() for row in f.read().splitlines()[1:]]
        except OSError:
            return False
        return any(row[1].endswith(port) and row[3] == "0A" for row in rows)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_usbgwd(usbgwd, work, name, policy, conf, exec_prefix=()):
    """usbgwd NAME with its own folder: policy, config, run dir, log; run
    by exec_prefix (a host's namespace) when given."""
    home = os.path.join(work, name)
    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, "policy"), "w") as f:
        f.write(policy)
    with open(os.path.join(home, "usbgwd.conf"), "w") as f:
        f.write(f"[usbgwd]\ncontrol-socket={home}/control.sock\nstate={home}/state.json\n"
                f"audit-log={home}/audit.log\nlibvirt-uri=\nvm-peer-check=uid\n" +
                "".join(f"{line}\n" for line in conf))
    log = open(os.path.join(home, "usbgwd.log"), "wb")
    env = dict(os.environ)
    if os.environ.get("USBGW_MIGRATION_DEBUG"):
        env["G_MESSAGES_DEBUG"] = "usbgw-serve usbgw-migration usbgw-proxy"
    proc = subprocess.Popen([*exec_prefix, usbgwd, "--foreground",
                             "--policy", os.path.join(home, "policy"),
                             "--rundir", os.path.join(home, "run"),
                             "--config", os.path.join(home, "usbgwd.conf")],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    PROCS.append(proc)
    return home, proc


def wait_file(path, pattern, proc, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        with open(path, errors="replace") as f:
            if re.search(pattern, f.read()):
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            with open(path, errors="replace") as f:
                fail(f"no {what}:\n{f.read()[-3000:]}")
        time.sleep(0.05)


def make_certs(work, *names):
    """The link CA and a certificate for each gateway NAME in work/certs."""
    certs = os.path.join(work, "certs")
    made = subprocess.run(["bash", MAKE_CERTS, certs, *names], capture_output=True, text=True)
    if made.returncode != 0:
        fail(f"make-certs.sh: {made.stderr}")
    return certs


def link_credentials(certs, name):
    """usbgwd's configuration lines for gateway NAME's link TLS."""
    return [f"link-cert={certs}/{name}-cert.pem", f"link-key={certs}/{name}-key.pem",
            f"link-ca={certs}/ca-cert.pem"]


def wait_vm_socket(home, gw, timeout, who):
    """The VM's usb-redir socket under the run dir of the usbgwd in HOME,
    once it is bound."""
    vm_dir = os.path.join(home, "run", "vm", VM)
    deadline = time.monotonic() + timeout
    while True:
        socks = sorted(glob.glob(os.path.join(vm_dir, "*.sock")))
        if socks:
            return socks[0]
        if gw.poll() is not None or time.monotonic() > deadline:
            with open(os.path.join(home, "usbgwd.log"), errors="replace") as f:
                fail(f"{who} does not serve the key in {vm_dir}:\n{f.read()[-3000:]}")
        time.sleep(0.05)


class LocalHost:
    """The one host of the single-host modes: QEMU in the test's own
    network namespace, the migration stream on a unix socket in the work
    folder."""

    exec_prefix = []

    def __init__(self, work, sock):
        self.name = "this host"
        self.work = work
        self.sock = sock

    def incoming(self, qemu_name):
        return f"unix:{os.path.join(self.work, qemu_name + '.mig')}"

    def prepare(self, source_sock):
        """Nothing to do: the destination connects to the source's socket."""


class Rig:
    """usbgwd serving the key to the VM: from the host (the key on this
    usbgwd) or imported (another usbgwd, "dongles1", exports it over a
    gateway link on loopback; this one, "hv1", serves it through its
    validating proxy)."""

    # every "migrate" audit record carries the handover's figures
    FIGURES_REQUIRED = True

    def __init__(self, work, usbgwd, peer, usbgwctl, guest_dir):
        self.work = work
        self.usbgwctl = usbgwctl
        self.guest_dir = guest_dir
        self.home, self.gw = self.start(usbgwd)
        self.control = os.path.join(self.home, "control.sock")
        self.audit = os.path.join(self.home, "audit.log")
        self.log_path = os.path.join(self.home, "usbgwd.log")
        self.answer = subprocess.check_output([peer, "--key-answer", HASP_SECRET, CHALLENGE],
                                              text=True).strip()
        if PATH == "lent":
            self.lend()
        self.sock = wait_vm_socket(self.home, self.gw, 30, "usbgwd")
        self.hosts = self.make_hosts()

    def make_hosts(self):
        return [LocalHost(self.work, self.sock)]

    def attack(self, qemu):
        """Attacks on the VM's usbgwd while QEMU runs on it (none here)."""

    def destination_host(self, source_host):
        """Where the destination of a QEMU on source_host runs."""
        return self.hosts[0]

    def start(self, usbgwd):
        """Starts this mode's usbgwd's; returns the home and process of
        the one the VM's QEMU connects to."""
        work = self.work
        if PATH == "imported":
            certs = make_certs(work, "dongles1", "hv1")
            port = free_port()
            self.exporter_home, self.exporter = start_usbgwd(
                usbgwd, work, "dongles1", 'export id 0529:* to gateway "hv1"\n',
                [f"link-listen=127.0.0.1:{port}", *link_credentials(certs, "dongles1")])
            # one at a time: both open libusb under the same simulator,
            # and the key is claimed before the second looks at it
            wait_file(os.path.join(self.exporter_home, "usbgwd.log"), r"kept claimed",
                      self.exporter, 30, "dongles1's usbgwd holding the key")
            return start_usbgwd(
                usbgwd, work, "hv1", f'assign id 0529:0001 on gateway "dongles1" to vm "{VM}"\n',
                [f"link-peers=dongles1@127.0.0.1:{port}", *link_credentials(certs, "hv1"),
                 "link-reattach-interval=0"])
        if PATH == "lent":
            return start_usbgwd(
                usbgwd, work, "gw", f'share id 0529:0001 user "alice" to vm "{VM}"\n',
                [f"spice-port-base={free_port()}", "spice-ports=1", "spice-channels=1",
                 "spice-host=127.0.0.1", f"spice-worker={os.environ['USBGW_MIGRATION_WORKER']}"])
        return start_usbgwd(usbgwd, work, "gw", f'assign id 0529:0001 to vm "{VM}"\n', [])

    def lend(self):
        """A share for the VM, and usbgw-share lending the key to it (the
        simulator this test runs in has the key plugged)."""
        wait_file(self.log_path, r"\bready\b", self.gw, 30, "usbgwd ready")
        reply = self.ctl_json("share", VM, "--user", "alice", "--ttl", "30m")
        ticket = os.path.join(self.home, "ticket")
        fd = os.open(ticket, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(reply["ticket"] + "\n")
        log = open(os.path.join(self.home, "usbgw-share.log"), "wb")
        self.lender = subprocess.Popen(
            [os.environ["USBGW_MIGRATION_SHARE"], reply["uri"], "--ticket-file", ticket,
             "--device", "0529:0001"], stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, SPICE_USB_ACL_BINARY=os.environ["USBGW_MIGRATION_ACL_HELPER"]))
        PROCS.append(self.lender)

    def transfer_errors(self):
        """usbredirhost's warnings (failed transfers and requests) in the
        log of the usbgwd that holds the key."""
        home = self.exporter_home if PATH == "imported" else self.home
        with open(os.path.join(home, "usbgwd.log"), errors="replace") as f:
            return len(re.findall(r"WARNING \*\*.*usbredir: ", f.read()))

    def gw_log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def gw_count(self, pattern):
        return len(re.findall(pattern, self.gw_log()))

    def wait_gw(self, pattern, count, timeout, what):
        deadline = time.monotonic() + timeout
        while self.gw_count(pattern) < count:
            if self.gw.poll() is not None:
                fail(f"usbgwd exited while waiting for {what}")
            if time.monotonic() > deadline:
                fail(f"no {what} within {timeout} s (usbgwd log: /{pattern}/ "
                     f"{self.gw_count(pattern)} times, want {count})")
            time.sleep(0.05)

    def sessions_ended(self):
        """The sessions of the key that ended: a host session, or an
        imported key's proxy session."""
        return self.gw_count(r"peer session ended|: session ends \(")

    def check_relay_shown(self, qemu):
        """Across hosts: usbgwctl vms on the host the VM left for shows it
        relayed to its anchor. Nothing to show on one host."""

    def ctl_json(self, *args):
        out = subprocess.run([self.usbgwctl, "--socket", self.control, "--json", *args],
                             capture_output=True, text=True)
        if out.returncode != 0:
            fail(f"usbgwctl {' '.join(args)}: {out.stderr.strip()}")
        return json.loads(out.stdout)

    def audit_events(self, kind):
        return [r for _, r in audit_lines(self.audit) if r.get("event") == kind]

    def handover_records(self):
        """The handovers' audit records: one "migrate" per migration."""
        migrate = self.audit_events("migrate")
        if len(migrate) != MIGRATIONS:
            fail(f"{len(migrate)} 'migrate' audit records, want {MIGRATIONS}")
        return migrate


def audit_lines(path):
    """Each record of the audit log at PATH: (its JSON text, the record)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [(line, json.loads(line)) for line in f.read().splitlines() if line]


# --- USBGW_MIGRATION_PATH=hosts ------------------------------------------

def netns_exec(ns):
    """The command prefix that runs a program in network namespace NS:
    nsenter into the network namespace alone where nsenter is installed
    (the mounts stay the test's, as umockdev's redirected /sys needs), else
    `ip netns exec`."""
    if shutil.which("nsenter"):
        return ["nsenter", f"--net=/run/netns/{ns}", "--"]
    return ["ip", "netns", "exec", ns]


def hosts_unavailable():
    """Why two hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return f"network namespaces need root (uid {os.geteuid()})"
    if shutil.which("ip") is None:
        return "no 'ip' (iproute2)"
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if out.returncode != 0:
        return f"'ip netns' does not work: {out.stderr.strip()}"
    return None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


class Namespaces:
    """The two hosts' network namespaces, sides "a" and "b", joined by one
    veth pair (eth0 in each) on 10.79.<run>.0/24, loopback up.

    The run number is claimed by creating HOSTS_CLAIMS/<run> (mkdir is
    atomic) with the owner's pid in it, so parallel runs get distinct
    namespaces (usbgwmig<run>a, usbgwmig<run>b) and subnets. A run whose
    owner died without cleaning up (SIGKILL) is swept by the next one:
    what it left running in its namespaces is killed, they are deleted."""

    SIDES = ("a", "b")

    def __init__(self):
        os.makedirs(HOSTS_CLAIMS, exist_ok=True)
        self.sweep_stale()
        self.run = self.claim()
        self.names = {side: self.ns_name(self.run, side) for side in self.SIDES}
        self.addrs = {side: f"10.79.{self.run}.{n}" for n, side in enumerate(self.SIDES, 1)}
        try:
            self.wire()
        except BaseException:
            self.remove()
            raise

    @staticmethod
    def ns_name(run, side):
        return f"usbgwmig{run}{side}"

    def claim(self):
        start = os.getpid() % 254
        for n in range(254):
            run = (start + n) % 254 + 1
            try:
                os.mkdir(os.path.join(HOSTS_CLAIMS, str(run)))
            except FileExistsError:
                continue
            with open(os.path.join(HOSTS_CLAIMS, str(run), "owner"), "w") as f:
                f.write(f"{os.getpid()}\n")
            return run
        fail(f"no free run number under {HOSTS_CLAIMS}")

    def sweep_stale(self):
        for claim in glob.glob(os.path.join(HOSTS_CLAIMS, "*")):
            try:
                with open(os.path.join(claim, "owner")) as f:
                    owner = int(f.read())
            except (OSError, ValueError):
                # being set up right now, or its owner died in the first
                # instant: only a minute-old claim without owner is stale
                try:
                    if time.time() - os.stat(claim).st_mtime < 60:
                        continue
                except OSError:
                    continue
                owner = None
            if owner is not None and pid_alive(owner):
                continue
            run = os.path.basename(claim)
            self.empty([self.ns_name(run, side) for side in self.SIDES])
            shutil.rmtree(claim, ignore_errors=True)

    def wire(self):
        def ip(*args):
            out = subprocess.run(["ip", *args], capture_output=True, text=True)
            if out.returncode != 0:
                fail(f"ip {' '.join(args)}: {out.stderr.strip()}")

        for side in self.SIDES:
            ip("netns", "add", self.names[side])
            ip("-n", self.names[side], "link", "set", "lo", "up")
        ip("-n", self.names["a"], "link", "add", "eth0", "type", "veth",
           "peer", "name", "eth0", "netns", self.names["b"])
        for side in self.SIDES:
            ip("-n", self.names[side], "addr", "add", f"{self.addrs[side]}/24", "dev", "eth0")
            ip("-n", self.names[side], "link", "set", "eth0", "up")

    @staticmethod
    def empty(names):
        """Kills what runs in the namespaces NAMES (TERM, a second later
        KILL) and deletes them."""
        def pids():
            found = []
            for ns in names:
                out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
                found += [int(pid) for pid in out.stdout.split()]
            return found

        def kill(sig):
            for pid in pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

        kill(signal.SIGTERM)
        deadline = time.monotonic() + 1
        while pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        kill(signal.SIGKILL)
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def remove(self):
        self.empty(list(self.names.values()))
        shutil.rmtree(os.path.join(HOSTS_CLAIMS, str(self.run)), ignore_errors=True)

    def describe(self):
        """HOSTS_ENV's value: NS=ADDR for side a, then for side b."""
        return " ".join(f"{self.names[side]}={self.addrs[side]}" for side in self.SIDES)


def is_socket(path):
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


class NetnsHost:
    """A host of USBGW_MIGRATION_PATH=hosts: a network namespace with its
    own usbgwd (its folder in home) and its own QEMUs, which take the
    migration stream on TCP at the host's address. sock is the VM's socket
    in this host's run dir, None until its usbgwd bound one."""

    ports = itertools.count(MIGRATION_PORT_BASE)

    def __init__(self, name, ns, addr):
        self.name = name
        self.ns = ns
        self.addr = addr
        self.exec_prefix = netns_exec(ns)
        self.home = self.gw = self.sock = self.hook_conf = None

    def start(self, usbgwd, work, policy, conf):
        self.home, self.gw = start_usbgwd(usbgwd, work, self.name, policy, conf, self.exec_prefix)
        # usbgw-hook's configuration (hooks/hook-config.h): this host's usbgwd
        self.hook_conf = os.path.join(self.home, "hook.conf")
        with open(self.hook_conf, "w") as f:
            f.write(f"[usbgwd]\ncontrol-socket={self.home}/control.sock\n"
                    f"policy={self.home}/policy\n[hook]\ntimeout-ms=5000\n")

    def log(self):
        with open(os.path.join(self.home, "usbgwd.log"), errors="replace") as f:
            return f.read()

    def audit_lines(self):
        return audit_lines(os.path.join(self.home, "audit.log"))

    def incoming(self, qemu_name):
        return f"tcp:{self.addr}:{next(self.ports)}"

    def hook(self, vm, uuid, op, sub, source_sock):
        """usbgw-hook VM OP SUB in this host's namespace, as libvirt runs
        it: the domain XML (its redirdev names SOURCE_SOCK) on stdin."""
        xml = (f"<domain type='qemu'><name>{vm}</name><uuid>{uuid}</uuid><devices>"
               f"<redirdev bus='usb' type='unix'><source mode='connect' path='{source_sock}'/>"
               f"</redirdev></devices></domain>")
        call = f"usbgw-hook {vm} {op} {sub} on {self.name}"
        try:
            out = subprocess.run([*self.exec_prefix, HOOK, "--config", self.hook_conf, vm,
                                  op, sub, "-"], input=xml, capture_output=True,
                                 text=True, timeout=30)
        except subprocess.TimeoutExpired:
            fail(f"{call} did not exit within 30 s")
        with open(os.path.join(self.home, "hook.log"), "a") as f:
            f.write(f"{vm} {op} {sub}, source {source_sock}: exit {out.returncode}\n"
                    f"{out.stderr}")
        if out.returncode != 0:
            fail(f"{call} exited {out.returncode}: {out.stderr.strip()}")
        if out.stdout:
            # libvirt would take it for a replacement domain XML
            fail(f"{call} wrote to stdout: {out.stdout[:200]!r}")
        return call

    def prepare(self, source_sock, vm=VM, uuid=VM_UUID):
        """What libvirt does on the destination host before it starts the
        destination QEMU: usbgw-hook "migrate begin" in this host's
        namespace, with the source's domain XML (its redirdev names the
        source's socket); then this host's usbgwd binds the socket of the
        same name under its own run dir, for the QEMU's chardev."""
        call = self.hook(vm, uuid, "migrate", "begin", source_sock)
        path = os.path.join(self.home, "run", "vm", vm, os.path.basename(source_sock))
        deadline = time.monotonic() + BIND_TIMEOUT_S
        while not is_socket(path):
            if self.gw.poll() is not None:
                fail(f"{self.name}'s usbgwd exited ({self.gw.returncode}) before it bound {path}:"
                     f"\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                folder = os.path.dirname(path)
                held = sorted(os.listdir(folder)) if os.path.isdir(folder) else None
                fail(f"{self.name}'s usbgwd bound no socket {path} for VM {vm} within "
                     f"{BIND_TIMEOUT_S} s after {call} exited 0 (the source's socket: "
                     f"{source_sock}); {folder} "
                     + (f"holds {held}" if held is not None else "does not exist")
                     + f"; {self.name}'s log (tail):\n{self.log()[-3000:]}")
            time.sleep(0.05)
        if vm == VM:
            self.sock = path
        return path


class HostsRig(Rig):
    """Two hosts: usbgwd "hv-a" (namespace a) holds the key, serves it to
    the VM and anchors the VM's session; usbgwd "hv-b" (namespace b) has a
    gateway link (TLS) to hv-a and relays the socket of a QEMU on its host
    to hv-a. Each lists the other in migration-peers (who may relay). The
    VM starts on hv-a. hv-a does every handover, so the Rig's log and
    audit are hv-a's."""

    # the handover's figures are printed where hv-a's records give them
    FIGURES_REQUIRED = False
    # certificates of the mode's other gateways
    EXTRA_CERTS = ()

    def anchor_key(self):
        """hv-a's policy and its configuration lines for the key: on hv-a
        itself."""
        return f'assign id 0529:0001 to vm "{VM}"\n', []

    def start(self, usbgwd):
        (ns_a, addr_a), (ns_b, addr_b) = [entry.split("=")
                                          for entry in os.environ[HOSTS_ENV].split()]
        self.a = NetnsHost("hv-a", ns_a, addr_a)
        self.b = NetnsHost("hv-b", ns_b, addr_b)
        # hv-c: a gateway of the same CA that is no migration peer
        # (RelayAttacks)
        self.certs = certs = make_certs(self.work, "hv-a", "hv-b", "hv-c", *self.EXTRA_CERTS)
        self.usbgwd = usbgwd
        policy, conf = self.anchor_key()
        self.a.start(usbgwd, self.work, policy,
                     [f"link-listen={addr_a}:{LINK_PORT}", *link_credentials(certs, "hv-a"),
                      "migration-peers=hv-b", *conf])
        # one at a time: both open libusb under the same simulator, and the
        # key is claimed before the second looks at it
        self.a.sock = wait_vm_socket(self.a.home, self.a.gw, 30, "hv-a's usbgwd")
        self.b.start(usbgwd, self.work, "# no rule: hv-b relays the VM's socket to hv-a\n",
                     [f"link-peers=hv-a@{addr_a}:{LINK_PORT}", *link_credentials(certs, "hv-b"),
                      "link-reattach-interval=0", "migration-peers=hv-a"])
        wait_file(os.path.join(self.b.home, "usbgwd.log"), r"link hv-a: up\b", self.b.gw, 30,
                  "link from hv-b to hv-a up")
        print(f"hosts: hv-a in {ns_a} at {addr_a}, hv-b in {ns_b} at {addr_b}, link up",
              flush=True)
        return self.a.home, self.a.gw

    def make_hosts(self):
        return [self.a, self.b]

    def check_relay_shown(self, qemu):
        """hv-b's usbgwctl vms lists the VM "relayed" (its key on hv-a)
        while it runs there, and not once it went back."""
        out = subprocess.run([self.usbgwctl, "--socket", os.path.join(self.b.home, "control.sock"),
                              "--json", "vms"], capture_output=True, text=True)
        if out.returncode != 0:
            fail(f"usbgwctl vms on hv-b: {out.stderr.strip()}")
        vm = next((v for v in json.loads(out.stdout)["vms"] if v["name"] == VM), None)
        if qemu.host is self.b:
            if vm is None or vm.get("state") != "relayed" or vm.get("anchor") != "hv-a":
                fail(f"usbgwctl vms on hv-b does not show {VM} relayed to hv-a: {vm}")
            print(f"usbgwctl vms on hv-b: {VM} {vm['state']}, anchor {vm['anchor']}", flush=True)
        elif vm is not None:
            fail(f"usbgwctl vms on hv-b still lists {VM} after it left: {vm}")

    def attack(self, qemu):
        RelayAttacks(self).run(qemu)

    def destination_host(self, source_host):
        return self.b if source_host is self.a else self.a

    def handover_records(self):
        """Each host audits its side of every migration: hv-a "migrate-out"
        when the VM leaves it and "migrate-in" when it comes back, hv-b the
        same; every record names both gateways. Returns hv-a's."""
        for host in (self.a, self.b):
            for event in ("migrate-out", "migrate-in"):
                records = [line for line, r in host.audit_lines() if r.get("event") == event]
                if len(records) != MIGRATIONS // 2:
                    fail(f"{host.name}: {len(records)} '{event}' audit records, want "
                         f"{MIGRATIONS // 2}: {records}")
                for line in records:
                    if "hv-a" not in line or "hv-b" not in line:
                        fail(f"{host.name}: a '{event}' audit record that does not name both "
                             f"hv-a and hv-b: {line}")
        return [r for _, r in self.a.audit_lines()
                if r.get("event") in ("migrate-out", "migrate-in")]


class HostsImportedRig(HostsRig):
    """USBGW_MIGRATION_PATH=hosts-imported: the two hosts, but the key is
    on a dongle server, usbgwd "dongles1" (in namespace a beside hv-a, its
    link on the namespace's loopback), which exports it to hv-a; hv-a
    imports it, so the VM's socket belongs to hv-a's import proxy and the
    bytes of a QEMU on hv-b go hv-b -> hv-a -> dongles1. No relay attacks
    (the hosts mode has them)."""

    EXTRA_CERTS = ("dongles1",)
    DONGLES_PORT = LINK_PORT + 1

    def anchor_key(self):
        self.dongles = NetnsHost("dongles1", self.a.ns, "127.0.0.1")
        self.dongles.start(self.usbgwd, self.work, 'export id 0529:* to gateway "hv-a"\n',
                           [f"link-listen=127.0.0.1:{self.DONGLES_PORT}",
                            *link_credentials(self.certs, "dongles1")])
        # one at a time: dongles1 claims the key before hv-a looks at it
        wait_file(os.path.join(self.dongles.home, "usbgwd.log"), r"kept claimed",
                  self.dongles.gw, 30, "dongles1's usbgwd holding the key")
        return (f'assign id 0529:0001 on gateway "dongles1" to vm "{VM}"\n',
                [f"link-peers=dongles1@127.0.0.1:{self.DONGLES_PORT}",
                 "link-reattach-interval=0"])

    def start(self, usbgwd):
        home, gw = super().start(usbgwd)
        # the VM's socket on hv-a is the import's (its proxy owns it)
        if f"served on {self.a.sock} (from gateway dongles1)" not in self.a.log():
            fail(f"hv-a does not serve {self.a.sock} from gateway dongles1:\n"
                 f"{self.a.log()[-3000:]}")
        return home, gw

    def attack(self, qemu):
        """None: the relay attacks run in the hosts mode."""

    def sessions_ended(self):
        """hv-a's as in the hosts mode, and dongles1's export session to
        hv-a (one for the whole run: it carries every QEMU's bytes)."""
        return super().sessions_ended() + len(re.findall(r"peer session ended",
                                                         self.dongles.log()))

    def transfer_errors(self):
        """usbredirhost's warnings in dongles1's log (it holds the key)."""
        return len(re.findall(r"WARNING \*\*.*usbredir: ", self.dongles.log()))


class RelayAttacks:
    """Relays hv-a must refuse, tried while the VM runs on hv-a: from a
    gateway that is not one of its migration-peers ("hv-c": a certificate
    of the same CA, a link to hv-a, its usbgwd beside hv-b in namespace b
    with hv-a as its migration peer), and from a migration peer (hv-b) for
    a socket hv-a does not serve. Each time usbgw-hook's "migrate begin"
    prepares the relaying host, and a fake QEMU connects to the socket its
    usbgwd bound and writes bytes that are no usbredir hello. Asserted: the
    relaying usbgwd logs hv-a's refusal and closes the fake QEMU's
    connection; hv-a neither holds it as a migration destination nor hands
    over nor audits a migration; the VM keeps answering, right, with no
    error round. hv-c is stopped afterwards (its link records on hv-a are
    not among the ones the test counts)."""

    OTHER_VM = "other-vm"
    OTHER_UUID = "7d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"
    OTHER_FILE = "0529-0001-at-9-9.sock"
    HELD = r"a migration destination connected"
    HANDED = r"handed over to the migration destination"

    def __init__(self, rig):
        self.rig = rig

    def run(self, qemu):
        answers = qemu.console.count(r"^USBGW-ANSWER ")
        errors = qemu.console.count(r"^USBGW-ERROR")
        self.stranger()
        self.unserved()
        wait_console(qemu, r"^USBGW-ANSWER ", answers + ANSWERS_BETWEEN, 30,
                     "answers after the refused relays")
        with qemu.console.lock:
            after = [l for _, l in qemu.console.lines if l.startswith("USBGW-ANSWER ")][answers:]
        wrong = [l for l in after if not l.endswith(f"response={self.rig.answer}")]
        if wrong or qemu.console.count(r"^USBGW-ERROR") != errors:
            fail(f"the VM's rounds after the refused relays: wrong answers {wrong[:3]}, "
                 f"{qemu.console.count(r'^USBGW-ERROR') - errors} error rounds")

    def stranger(self):
        """hv-c relays the VM's socket to hv-a, which lists only hv-b."""
        rig = self.rig
        c = NetnsHost("hv-c", rig.b.ns, rig.b.addr)
        c.start(rig.usbgwd, rig.work, "# no rule: hv-c only tries to relay\n",
                [f"link-peers=hv-a@{rig.a.addr}:{LINK_PORT}", *link_credentials(rig.certs, "hv-c"),
                 "link-reattach-interval=0", "migration-peers=hv-a"])
        try:
            wait_file(os.path.join(c.home, "usbgwd.log"), r"link hv-a: up\b", c.gw, 30,
                      "link from hv-c to hv-a up")
            c.prepare(rig.a.sock)
            self.refused(c, c.sock, "no migration peer holds the device (gateway hv-c is not a "
                         "migration peer of hv-a)", f"{VM}'s socket relayed by hv-c")
        finally:
            c.gw.terminate()
            try:
                c.gw.wait(10)
            except subprocess.TimeoutExpired:
                c.gw.kill()
                c.gw.wait()
        # the migrations start with hv-a as it was
        wait_file(os.path.join(rig.a.home, "usbgwd.log"), r"link hv-c: down", rig.a.gw, 10,
                  "hv-c's link down on hv-a")

    def unserved(self):
        """hv-b relays a socket of a VM hv-a does not run."""
        b = self.rig.b
        source = os.path.join(self.rig.a.home, "run", "vm", self.OTHER_VM, self.OTHER_FILE)
        sock = b.prepare(source, self.OTHER_VM, self.OTHER_UUID)
        self.refused(b, sock, f'no QEMU of VM "{self.OTHER_VM}" holds {self.OTHER_FILE} on hv-a',
                     f"{self.OTHER_VM}'s {self.OTHER_FILE} relayed by hv-b")
        # libvirt's hook when the VM that never started is gone: hv-b no
        # longer listens on the socket
        b.hook(self.OTHER_VM, self.OTHER_UUID, "stopped", "end", source)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as late:
            try:
                late.connect(sock)
            except (ConnectionRefusedError, FileNotFoundError):
                return
        fail(f"hv-b still listens on {sock} after the hook's \"stopped\" for {self.OTHER_VM}")

    def refused(self, host, sock, reason, what):
        """A fake QEMU on SOCK (HOST relays it to hv-a), which hv-a must
        refuse for REASON."""
        a = self.rig.a
        held, handed = (len(re.findall(p, a.log())) for p in (self.HELD, self.HANDED))
        audited = len(a.audit_lines())
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as fake:
            fake.settimeout(10)
            fake.connect(sock)
            try:
                fake.sendall(bytes(16))
            except (BrokenPipeError, ConnectionResetError):
                pass
            wait_file(os.path.join(host.home, "usbgwd.log"), re.escape(reason), host.gw, 10,
                      f"{host.name} logging hv-a's refusal of {what} ({reason})")
            try:
                left = fake.recv(64)
            except ConnectionResetError:
                left = b""
            except socket.timeout:
                fail(f"{host.name} kept the fake QEMU's connection of {what} open after hv-a "
                     f"refused it")
        if left:
            fail(f"{host.name} wrote {left!r} to the fake QEMU of {what}")
        if (len(re.findall(self.HELD, a.log())), len(re.findall(self.HANDED, a.log()))) != \
                (held, handed):
            fail(f"hv-a held {what} as a migration destination or handed over to it:\n"
                 f"{a.log()[-3000:]}")
        records = [line for line, r in a.audit_lines()[audited:]
                   if r.get("event", "").startswith("migrate")]
        if records:
            fail(f"hv-a audited a migration for {what}: {records}")
        print(f"refused relay: {what}: hv-a refused it ({reason}); the fake QEMU's connection "
              f"closed, no destination held, no handover, no migrate record on hv-a",
              flush=True)


def wait_console(qemu, pattern, count, timeout, what):
    deadline = time.monotonic() + timeout
    while qemu.console.count(pattern) < count:
        if qemu.proc.poll() is not None:
            fail(f"{qemu.name} exited ({qemu.proc.returncode}) waiting for {what}:\n"
                 f"{qemu.console.text()[-3000:]}")
        if time.monotonic() > deadline:
            fail(f"{qemu.name}: no {what} within {timeout} s:\n{qemu.console.text()[-3000:]}")
        time.sleep(0.05)


def info_migrate(qemu):
    """Status, downtime and total time (ms) from "info migrate"."""
    out = qemu.hmp("info migrate")
    status = re.search(r"Migration status: (\S+)", out)
    downtime = re.search(r"^downtime: (\d+) ms", out, re.M)
    total = re.search(r"^total time: (\d+) ms", out, re.M)
    return (status.group(1) if status else None,
            int(downtime.group(1)) if downtime else None,
            int(total.group(1)) if total else None, out)


def wait_migration(qemu, want, timeout):
    deadline = time.monotonic() + timeout
    while True:
        status, downtime, total, out = info_migrate(qemu)
        if status in want:
            return status, downtime, total
        if status in ("failed", "cancelled", "completed"):
            fail(f"{qemu.name}: migration {status}, want {want}:\n{out}")
        if time.monotonic() > deadline:
            fail(f"{qemu.name}: migration still {status} after {timeout} s")
        time.sleep(0.1)


def hosts_of(src, dest):
    """" (hv-a -> hv-b)" where the two QEMUs run on different hosts."""
    return f" ({src.host.name} -> {dest.host.name})" if src.host is not dest.host else ""


def start_destination(rig, name, source):
    """A destination QEMU for SOURCE (on the other host, where there are
    two), whose chardev usbgwd holds as the migration's destination."""
    host = rig.destination_host(source.host)
    host.prepare(source.host.sock)
    held = rig.gw_count(r"a migration destination connected")
    dest = Qemu(rig, name, host, incoming=True)
    rig.wait_gw(r"a migration destination connected", held + 1, 30,
                f"{name}'s connection held as the migration destination")
    deadline = time.monotonic() + 10
    while not dest.listening():
        if time.monotonic() > deadline:
            fail(f"{name} did not listen on {dest.incoming}")
        time.sleep(0.05)
    return dest


def check_migrating_shown(rig):
    # vms lists the VMs libvirt runs (none here, without libvirt); where
    # the VM is listed it must show the handover
    vms = rig.ctl_json("vms")["vms"]
    vm = next((v for v in vms if v["name"] == VM), None)
    if vm is not None and vm.get("state") != "migrating":
        fail(f"usbgwctl vms does not show {VM} migrating: {vm}")
    if PATH == "lent":
        # a lent device is not in usbgwctl list (it is the client's)
        return
    devices = rig.ctl_json("list")["devices"]
    key = next((d for d in devices if "0529:0001" in d["id"] and d.get("vm") == VM),
               None)
    if key is None or key.get("state") != "migrating":
        fail(f"usbgwctl list does not show the key migrating: {key}")


def analyse(rig, qemus):
    """Every console line in host time order; a line one QEMU left
    unfinished is completed by the next's first line."""
    events = []
    for q in qemus:
        events += [(t, line, False) for t, line in q.console.lines]
        text, t = q.console.partial
        if text:
            events.append((t, text, True))
    events.sort(key=lambda e: e[0])
    lines, carry = [], ""
    for t, line, partial in events:
        if partial:
            carry += line
            continue
        lines.append((t, carry + line))
        carry = ""
    answers = [(t, l) for t, l in lines if l.startswith("USBGW-ANSWER ")]
    errors = [l for _, l in lines if l.startswith("USBGW-ERROR")]
    # QEMU's messages: usb-redir's "error:" and "warning:" lines and a
    # chardev that broke (its debug output says neither)
    messages = [l for q in qemus for _, l in q.messages.lines]
    # an answer usbgwd re-sent because the source may have taken it after
    # it stopped, which the destination had already (docs/migration.md)
    ignored = sum(1 for l in messages if "could not find packet with id" in l)
    broken = [l for l in messages if "usb-redir" in l
              and ("broken" in l or "error:" in l.lower() or "warning:" in l.lower())
              and "could not find packet with id" not in l]
    rounds_ended = sum(1 for _, l in lines if l.startswith("USBGW-ROUND-END "))
    return lines, answers, errors, broken, rounds_ended, ignored


def inner(usbgwd, peer, usbgwctl, guest_dir):
    work = os.environ["USBGW_MIGRATION_INNER"]
    rig = {"hosts": HostsRig, "hosts-imported": HostsImportedRig}.get(PATH, Rig)(
        work, usbgwd, peer, usbgwctl, guest_dir)
    qemus = []
    downtimes, totals = [], []
    windows = []  # host times from "migrate" to "completed"
    ended = 0
    errors_at_boot = 0
    try:
        t0 = time.monotonic()
        src = Qemu(rig, "qemu0", rig.hosts[0])
        qemus.append(src)
        wait_console(src, r"^USBGW-ANSWER ", 1, BOOT_TIMEOUT_S, "first answer")
        # from here on: a claim retried while the key was first opened is
        # not a transfer the guest had
        errors_at_boot = rig.transfer_errors()
        print(f"boot: first answer after {time.monotonic() - t0:.1f} s", flush=True)
        rig.attack(src)
        for i in range(1, MIGRATIONS + 1):
            wait_console(src, r"^USBGW-ANSWER ", ANSWERS_BETWEEN, 30, "answers before migrating")
            dest = start_destination(rig, f"qemu{i}", src)
            qemus.append(dest)
            if i == 1:
                check_migrating_shown(rig)
            handovers = rig.gw_count(r"handed over to the migration destination")
            started = time.monotonic()
            src.hmp(f"migrate -d {dest.incoming}")
            status, downtime, total = wait_migration(src, ("completed",), MIGRATE_TIMEOUT_S)
            windows.append((started, time.monotonic()))
            downtimes.append(downtime)
            totals.append(total)
            # libvirt stops the source once the destination runs: at once
            # in even rounds (usbgwd hands over when the source hangs up),
            # a little later in odd ones (the destination's guest may
            # write first, and usbgwd hands over then)
            if i % 2:
                time.sleep(SOURCE_LINGER_S)
            src.hmp("quit", check=False)
            rig.wait_gw(r"handed over to the migration destination", handovers + 1, 15,
                        f"handover {i}")
            if src.wait_exit(15) is None:
                src.kill()
            if i <= 2:
                rig.check_relay_shown(dest)
            print(f"migration {i}: {src.name} -> {dest.name}{hosts_of(src, dest)} completed in "
                  f"{total} ms, "
                  f"downtime {downtime} ms", flush=True)
            src = dest
        wait_console(src, r"^USBGW-ANSWER ", ANSWERS_BETWEEN, 30, "answers after the last migration")

        # cancelled: a slowed migration, migrate_cancel mid-way
        answers_before = src.console.count(r"^USBGW-ANSWER ")
        given_up = rig.gw_count(r"migration on .* given up, the source stays")
        dest = start_destination(rig, "qemu-cancelled", src)
        src.hmp(f"migrate_set_parameter max-bandwidth {SLOW_BANDWIDTH}")
        src.hmp(f"migrate -d {dest.incoming}")
        time.sleep(1.5)
        src.hmp("migrate_cancel")
        wait_migration(src, ("cancelled",), 20)
        if dest.wait_exit(10) is None:
            dest.kill()
        rig.wait_gw(r"migration on .* given up, the source stays", given_up + 1, 10,
                    "the cancelled migration's destination dropped")
        wait_console(src, r"^USBGW-ANSWER ", answers_before + ANSWERS_BETWEEN, 30,
                     "answers after the cancelled migration")
        print(f"cancelled migration: {src.name} kept the key", flush=True)

        # failed: the destination killed mid-way
        answers_before = src.console.count(r"^USBGW-ANSWER ")
        given_up = rig.gw_count(r"migration on .* given up, the source stays")
        dest = start_destination(rig, "qemu-killed", src)
        src.hmp(f"migrate -d {dest.incoming}")
        time.sleep(1.5)
        dest.kill()
        wait_migration(src, ("failed",), 20)
        rig.wait_gw(r"migration on .* given up, the source stays", given_up + 1, 10,
                    "the killed destination dropped")
        src.hmp(f"migrate_set_parameter max-bandwidth {FAST_BANDWIDTH}")
        wait_console(src, r"^USBGW-ANSWER ", answers_before + ANSWERS_BETWEEN, 30,
                     "answers after the failed migration")
        print(f"failed migration: {src.name} kept the key", flush=True)
        ended = rig.sessions_ended()
        src.hmp("quit", check=False)
        src.wait_exit(15)
    finally:
        for q in qemus:
            q.kill()
            with open(os.path.join(work, f"{q.name}.console"), "w") as f:
                f.write("\n".join(f"{t:.3f} {line}" for t, line in q.console.lines))
            with open(os.path.join(work, f"{q.name}.stderr"), "w") as f:
                f.write("\n".join(f"{t:.3f} {line}" for t, line in q.messages.lines))

    lines, answers, errors, broken, rounds_ended, ignored = analyse(rig, qemus)
    if errors:
        fail(f"{len(errors)} rounds reported an error: {errors[:5]}")
    if broken:
        fail(f"QEMU reported a broken usb-redir connection: {broken[:5]}")
    ids = set()
    for _, line in answers:
        m = re.match(r"USBGW-ANSWER 0529:0001 serial=\S+ port=(\S+) busnum=(\S+) devnum=(\S+) "
                     r"response=([0-9a-f]+)$", line)
        if m is None:
            fail(f"an answer line the test cannot read: {line!r}")
        if m.group(4) != rig.answer:
            fail(f"a wrong answer {m.group(4)} (want {rig.answer}): {line}")
        ids.add(m.groups()[:3])
    if len(ids) != 1:
        fail(f"the key enumerated again: it had ports/numbers {sorted(ids)}")
    if len(answers) < rounds_ended:
        fail(f"{rounds_ended} rounds ended but only {len(answers)} answers")
    times = [t for t, _ in answers]
    pairs = list(zip(times, times[1:]))
    longest = max((b - a for a, b in pairs), default=0.0)
    # the stall each migration caused: the longest gap between answers
    # that overlaps the migration (issued to completed)
    stalls = [max((b - a for a, b in pairs if b >= w0 and a <= w1), default=0.0)
              for w0, w1 in windows]
    migrate = rig.handover_records()
    failed = rig.audit_events("migrate-failed")
    # a destination dropped because the running source only paused (a
    # loaded host) is usbgwd backing off as designed: its QEMU connects
    # again; it is reported, not failed (the guest's rounds are checked)
    slow = [r for r in failed if "slow, not stopped" in r.get("reason", "")]
    failed = [r for r in failed if r not in slow]
    if slow:
        print(f"{len(slow)} destinations dropped because the source was slow, not stopped",
              flush=True)
    if len(failed) != 2:
        fail(f"{len(failed)} 'migrate-failed' audit records, want 2: {failed}")
    resent, resent_answers = [], []
    for record in migrate:
        m = re.search(r"(\d+) bytes drained from the source, (\d+) bytes re-sent to the "
                      r"destination \((\d+) answers", record.get("reason", ""))
        if (m is None and rig.FIGURES_REQUIRED) or record.get("vm") != VM:
            fail(f"a '{record.get('event')}' audit record without its details: {record}")
        if m is None:
            continue
        resent.append(int(m.group(2)))
        resent_answers.append(int(m.group(3)))
    if ended != 0:
        fail(f"usbgwd ended {ended} sessions during the migrations:\n{rig.gw_log()[-3000:]}")
    transfer_errors = rig.transfer_errors() - errors_at_boot
    if transfer_errors:
        fail(f"usbgwd logged {transfer_errors} failed transfers")
    port, busnum, devnum = next(iter(ids))
    print(f"rounds: {rounds_ended} answered (every answer {rig.answer}), 0 errors, "
          f"key at port {port} bus {busnum} device {devnum} throughout", flush=True)
    print(f"migrations: {MIGRATIONS} completed, 1 cancelled, 1 failed; bytes re-sent to the "
          f"destinations: {resent}, answers among them: {resent_answers}; answers a destination "
          f"already had (it logged 'could not find packet'): {ignored}", flush=True)
    print(f"per migration: longest gap between answers (ms) {[round(x * 1000) for x in stalls]}; "
          f"QEMU downtime (ms) {downtimes}; total time (ms) {totals}", flush=True)
    print(f"longest gap between answers across migrations: {max(stalls) * 1000:.0f} ms "
          f"(loop {LOOP_MS} ms, key {KEY_DELAY_MS} ms per transfer); QEMU downtime max "
          f"{max(downtimes)} ms; longest gap of the whole run (cancel and failure included) "
          f"{longest * 1000:.0f} ms", flush=True)
    # BENCH.md's migration-stall: what a migration adds to the longest gap
    # between the guest's answers (the loop's own period taken off), next
    # to the downtime QEMU reports for the same migration
    added = sorted(max(0.0, x * 1000 - LOOP_MS) for x in stalls)
    down = sorted(downtimes)
    median_added, median_down = added[len(added) // 2], down[len(down) // 2]
    print(f"bench migration-stall: {median_added:.0f} ms median added gap, "
          f"{added[0]:.0f}-{added[-1]:.0f} ms over {len(added)} migrations (baseline QEMU "
          f"downtime {median_down} ms median, {down[0]}-{down[-1]} ms, ratio "
          f"{median_added / max(median_down, 1):.1f}); rig: plain QEMU, TCG, "
          f"{GUEST_MEM_MB} MiB, usbgw-sim key, {os.cpu_count()} cores", flush=True)
    if KEY_DELAY_MS and not any(resent):
        fail("no migration caught an answer in flight (every handover re-sent 0 bytes): the "
             "re-send was not exercised")
    print("PASS", flush=True)


def main():
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    usbgwd, sim, peer, usbgwctl, guest_dir = sys.argv[1:]
    if os.environ.get("USBGW_MIGRATION_INNER"):
        inner(usbgwd, peer, usbgwctl, guest_dir)
        return 0
    if shutil.which(os.environ.get("USBGW_GUEST_QEMU", "qemu-system-x86_64")) is None:
        skip("qemu-system-x86_64 not found")
    build = subprocess.run(["bash", os.path.join(GUEST, "build-guest.sh"), guest_dir],
                           capture_output=True, text=True)
    if build.returncode != 0:
        skip(f"no guest image: build-guest.sh failed:\n{build.stderr[-2000:]}")
    namespaces = None
    if PATH in HOSTS_PATHS:
        reason = hosts_unavailable()
        if reason is not None:
            skip(reason)
        if not os.access(HOOK, os.X_OK):
            fail(f"USBGW_MIGRATION_HOOK={HOOK!r} is not usbgw-hook's executable")
        # a test runner's TERM (time out) still removes the namespaces
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = tempfile.mkdtemp(prefix="usbgw-migration.")
    status = 1
    try:
        env = dict(os.environ, USBGW_MIGRATION_INNER=work,
                   USBGW_SIM_REAP_DELAY_MS=str(KEY_DELAY_MS))
        if PATH in HOSTS_PATHS:
            namespaces = Namespaces()
            env[HOSTS_ENV] = namespaces.describe()
        status = subprocess.run([sim, "--secret", f"hasp={HASP_SECRET}", "--plug", "hasp",
                                 "--control", os.path.join(work, "sim.sock"), "--",
                                 sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
                                env=env).returncode
        for log in sorted(glob.glob(os.path.join(work, "*", "usbgwd.log"))):
            if status != 0:
                with open(log, errors="replace") as f:
                    print(f"--- {log} (tail)\n" + f.read()[-6000:])
    finally:
        if namespaces is not None:
            namespaces.remove()
        if os.environ.get("USBGW_TEST_KEEP"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.kill()
