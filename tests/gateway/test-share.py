#!/usr/bin/env python3
"""Lending a workstation's key to a VM through usbgwd's SPICE ingress, end
to end, one scenario per run:

  test-share.py SCENARIO USBGWD USBGWCTL WORKER SHARE SIM PEER GUEST_DIR ACL_HELPER

The real usbgwd (no libvirt) runs with SPICE ingress on; `usbgwctl share`
makes a share for vm "test-vm" and user "alice"; the tiny QEMU guest
(tests/guest) has one usb-redir chardev per share channel, connected to
usbgwd's share sockets. A SPICE client runs under usbgw-sim, which owns
the simulated keys, and lends them; the guest's challenge-response answer
is checked against the key's secret.

  lend           usbgw-share lends the HASP-like key: the guest answers; a new
                 share for the VM keeps the port and refuses the old ticket
  remote-viewer  the same with stock remote-viewer on a private Xvfb, opening
                 the .vv file `usbgwctl share --vv` wrote
  deny           usbgw-share lends a mass-storage stick and the key: the
                 stick is refused (log, audit) and never seen by the guest,
                 the key answers; a wrong ticket is refused
  tls            the share's port speaks TLS only (spice-tls-* keys, a CA and
                 a server certificate made here with openssl): usbgw-share
                 lends over spice+tls:// with --ca-file, the guest answers;
                 then remote-viewer does, from the .vv file usbgwctl wrote
  restart        usbgwd is killed (kill -9) while a key is lent and started
                 again: the share comes back from the state file with its
                 ticket and port, usbgw-share reconnects by itself and the
                 guest answers again
  bad-input      malformed share requests on the control socket and broken
                 share entries in state.json: each refused with a reason
  bad-worker     a worker that breaks the socketpair protocol in each way of
                 bad-worker.py: usbgwd ends that share with a reason (log,
                 audit) and serves the next one
  reconnect      the client's connection is cut mid-transfer (a TCP relay
                 between client and usbgwd drops it): usbgwd and the VM
                 carry on, usbgw-share reconnects no sooner than its
                 --min-interval, and the guest answers again
  second-client  while usbgw-share lends the key, a second usbgw-share with
                 the same ticket is refused (auth error, exit 3; a "deny"
                 audit record naming both clients' addresses); the first
                 keeps lending: never disconnected, the guest still answers
  max-life       share-max-life=3: 3 s after the first login the share ends
                 (log, "unshare" audit record naming share-max-life), the
                 client is dropped and the share is gone from usbgwctl shares
  plain-network  spice-address=0.0.0.0 without TLS: usbgwd refuses to start
                 with a message naming spice-address and the TLS keys;
                 spice-allow-plain-network=true lets it start
  confine        two shares, two workers (usbgwd as root): each runs with a
                 seccomp filter (Seccomp: 2), NoNewPrivs, its own uid and gid
                 from spice-uid-range that no other process has, in a network
                 namespace of its own, with rlimits (no processes, no core,
                 128 fds), stdin /dev/null, no file of usbgwd's and none of
                 usbgwd's environment; one worker's uid cannot signal the
                 other worker (setpriv ... kill -0: EPERM); with a range of
                 one uid a second share is refused ("no free uid"); a bad
                 range stops usbgwd at start
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "spice"))
import spice_clients  # noqa: E402

SKIP = 77
TIMEOUT_S = 60
HASP = "0529:0001"
STICK = "0781:5567"
HASP_SECRET = "000102030405060708090a0b0c0d0e0f"
CHALLENGE = "00112233445566778899aabbccddeeff"
CHANNELS = 2
MIN_INTERVAL_S = 2
MAX_LIFE_S = 3
CLOCK_SLACK_S = 0.05
POLICY = f"""deny with-interface 08:*:*
share id {HASP} user "alice" to vm "test-vm"
share id {STICK} user "alice" to vm "test-vm"
share id {HASP} user "alice" to vm "test-vm2"
"""
PROCS = []


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(reader, pattern, start=0, timeout=TIMEOUT_S):
    try:
        return reader.wait(pattern, start, timeout)
    except spice_clients.ClientError as e:
        fail(str(e))


def start(name, args, env=None, reader=spice_clients.LineReader, stdin=subprocess.DEVNULL):
    proc = subprocess.Popen(args, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)
    PROCS.append(proc)
    return proc, reader(name, proc.stdout)


class Relay:
    """A TCP relay on loopback between SPICE clients and usbgwd's port;
    cut() drops every connection through it, as a network loss would."""

    def __init__(self, target_port):
        self.target = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.sockets = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            cut, self.sockets = self.sockets, []
        for s in cut:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        return len(cut)


def make_certificates(work):
    """A CA and a server certificate for 127.0.0.1 signed by it; returns
    the usbgwd.conf lines that use them."""
    def openssl(*args):
        out = subprocess.run(["openssl", *args], cwd=work, capture_output=True, text=True)
        if out.returncode != 0:
            fail(f"openssl {' '.join(args)}: {out.stderr.strip()}")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=usbgw test CA",
            "-keyout", "ca-key.pem", "-out", "ca-cert.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server-key.pem", "-out", "server.csr")
    with open(os.path.join(work, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server-cert.pem")
    os.chmod(os.path.join(work, "server-key.pem"), 0o600)
    return (f"spice-tls-cert={work}/server-cert.pem\nspice-tls-key={work}/server-key.pem\n"
            f"spice-tls-ca={work}/ca-cert.pem\n")


class Rig:
    def __init__(self, args, work, tls=False, ports=1, env=None, stdin=subprocess.DEVNULL):
        (self.usbgwd, self.usbgwctl, self.worker, self.share_bin, self.sim, self.peer,
         self.guest_dir, self.acl_helper) = args
        self.work = work
        self.rundir = os.path.join(work, "run")
        self.control = os.path.join(work, "control.sock")
        self.audit = os.path.join(work, "audit.log")
        self.spice_port = free_port()
        with open(os.path.join(work, "policy"), "w") as f:
            f.write(POLICY)
        with open(os.path.join(work, "usbgwd.conf"), "w") as f:
            f.write(f"""[usbgwd]
control-socket={self.control}
state={work}/state.json
audit-log={self.audit}
libvirt-uri=
spice-port-base={self.spice_port}
spice-ports={ports}
spice-channels={CHANNELS}
spice-host=127.0.0.1
spice-worker={self.worker}
""")
            if tls:
                f.write(make_certificates(work))
        self.start_usbgwd(env=env, stdin=stdin)
        self.answer = subprocess.check_output(
            [self.peer, "--key-answer", HASP_SECRET, CHALLENGE], text=True).strip()

    def start_usbgwd(self, env=None, stdin=subprocess.DEVNULL):
        self.gw, self.gw_out = start("usbgwd", [
            self.usbgwd, "--foreground", "--policy", os.path.join(self.work, "policy"),
            "--rundir", self.rundir, "--config", os.path.join(self.work, "usbgwd.conf")],
            env=env, stdin=stdin)
        wait(self.gw_out, r"usbgw[a-z-]*-Message: .*ready")

    def reconfigure(self, replace=(), add="", env=None):
        """usbgwd stopped, its usbgwd.conf edited (replace: (old, new)
        pairs; add: lines appended) and started again."""
        self.stop()
        conf = os.path.join(self.work, "usbgwd.conf")
        with open(conf) as f:
            text = f.read()
        for old, new in replace:
            text = text.replace(old, new)
        with open(conf, "w") as f:
            f.write(text + add)
        self.start_usbgwd(env=env)

    def ctl(self, *args):
        out = subprocess.run([self.usbgwctl, "--socket", self.control, *args],
                             capture_output=True, text=True)
        if out.returncode != 0:
            fail(f"usbgwctl {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def share(self, vm="test-vm"):
        reply = json.loads(self.ctl("share", vm, "--user", "alice", "--ttl", "2m",
                                    "--json"))
        if not re.match(r"spice(\+tls)?://", reply["uri"]) or len(reply["ticket"]) < 24:
            fail(f"usbgwctl share: {reply}")
        wait(self.gw_out, rf"SPICE listening on port {reply['port']}")
        return reply

    def ticket_file(self, name, ticket):
        path = os.path.join(self.work, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(ticket + "\n")
        return path

    def boot(self, append, timeout=TIMEOUT_S):
        """The guest with one usb-redir per share socket; QEMU reconnects
        a closed chardev after 1 s, as usbgwd expects of a plain QEMU."""
        args = ["bash", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "guest",
                                     "run-guest.sh"), self.guest_dir]
        for i in range(CHANNELS):
            path = os.path.join(self.rundir, "vm", "test-vm", f"share{i}.sock")
            args += ["-chardev", f"socket,id=ur{i},path={path},reconnect=1",
                     "-device", f"usb-redir,chardev=ur{i},bus=xhci.0"]
        env = dict(os.environ, USBGW_GUEST_APPEND=append, USBGW_GUEST_TIMEOUT=str(timeout))
        return start("guest", args, env=env)

    def lender(self, uri, ticket_path, devices, plug, name="usbgw-share",
               extra=()):
        args = [self.sim, "--secret", f"hasp={HASP_SECRET}"]
        for key in plug:
            args += ["--plug", key]
        args += ["--", self.share_bin, uri, "--ticket-file", ticket_path,
                 "--min-interval", str(MIN_INTERVAL_S), *extra]
        for device in devices:  # VID:PID, or a usbredirfilter string for several
            args += ["--filter" if "|" in device else "--device", device]
        return start(name, args, env=dict(os.environ, SPICE_USB_ACL_BINARY=self.acl_helper))

    def audit_events(self):
        with open(self.audit) as f:
            return [json.loads(line) for line in f if line.strip()]

    def audit_of(self, event, count=1):
        """The audit records of kind event, once there are count of them
        (usbgwd logs before it writes the record)."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            found = [e for e in self.audit_events() if e["event"] == event]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def check_answer(self, guest_out, start=0):
        """The guest's first answer (or error) from line start on is the key's."""
        i, m = wait(guest_out, rf"USBGW-(ANSWER {HASP} .*response=(\w+)|ERROR {HASP} .*)", start)
        if m.group(2) != self.answer:
            fail(f"guest: {guest_out.lines[i]!r}, want response={self.answer}")
        return i

    def check_answer_again(self, guest_out, start):
        """Loop mode, after the key left: rounds say "not found" until it is
        back; the first answer from line start on is the key's."""
        i, m = wait(guest_out, rf"USBGW-ANSWER {HASP} .*response=(\w+)", start)
        if m.group(1) != self.answer:
            fail(f"guest: {guest_out.lines[i]!r}, want response={self.answer}")
        return i

    def stop(self):
        self.gw.send_signal(signal.SIGTERM)
        try:
            status = self.gw.wait(timeout=20)
        except subprocess.TimeoutExpired:
            fail("usbgwd did not stop on SIGTERM")
        if status != 0:
            fail(f"usbgwd exited {status} on SIGTERM")


def stop_lender(proc, what):
    proc.send_signal(signal.SIGTERM)  # usbgw-sim passes it on
    try:
        status = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        fail(f"{what} did not stop on SIGTERM")
    if status != 0:
        fail(f"{what} exited {status} on SIGTERM")


def scenario_lend(rig):
    share = rig.share()
    # loop mode: QEMU stays while the share's state is looked at
    guest, guest_out = rig.boot(f"usbgw.dev={HASP} usbgw.challenge={CHALLENGE} usbgw.wait=50 "
                                "usbgw.loop=1", timeout=120)
    lender, out = rig.lender(share["uri"], rig.ticket_file("ticket", share["ticket"]), [HASP],
                             ["hasp"])
    rig.check_answer(guest_out)
    print(f"guest answered {rig.answer} through usbgw-share, usbgwd's proxy and QEMU")
    wait(rig.gw_out, rf'vm "test-vm": got the lent device {HASP}')
    shares = json.loads(rig.ctl("shares", "--json"))["shares"]
    if shares[0]["state"] != "connected" or not shares[0]["devices"][0].startswith(HASP):
        fail(f"usbgwctl shares: {shares}")
    stop_lender(lender, "usbgw-share")
    wait(rig.gw_out, rf'vm "test-vm": gave back {HASP}')
    i, _ = wait(rig.gw_out, r'user "alice": client closed channel')
    wait(rig.gw_out, r'user "alice": client closed channel', i + 1)  # both channels
    shares = json.loads(rig.ctl("shares", "--json"))["shares"]
    if shares[0]["state"] != "waiting for the client to come back" or shares[0]["devices"]:
        fail(f"usbgwctl shares after the client left: {shares}")
    guest.kill()
    guest.wait()
    events = [e["event"] for e in rig.audit_events()]
    for want in ("share", "lend", "return"):
        if want not in events:
            fail(f"no '{want}' in the audit log: {events}")
    # a new share for the VM: same port, new ticket, the old one refused
    again = json.loads(rig.ctl("share", "test-vm", "--user", "alice", "--json"))
    if again["port"] != share["port"] or again["ticket"] == share["ticket"]:
        fail(f"a new share for the VM should keep the port and change the ticket: {again}")
    old, old_out = rig.lender(share["uri"], rig.ticket_file("old", share["ticket"]), [HASP],
                              ["hasp"], name="old-ticket")
    wait(old_out, r"^usbgw-share: auth error")
    if old.wait(timeout=TIMEOUT_S) != 3:
        fail(f"usbgw-share with the replaced ticket exited {old.returncode}, want 3")
    rig.ctl("unshare", "test-vm")
    if os.path.exists(os.path.join(rig.rundir, "vm", "test-vm", "share0.sock")):
        fail("unshare left the share sockets")
    rig.stop()


def scenario_tls(rig):
    share = rig.share()
    if not share["uri"].startswith("spice+tls://") or not share["tls"]:
        fail(f"usbgwctl share with TLS configured: {share}")
    guest, guest_out = rig.boot(f"usbgw.dev={HASP} usbgw.challenge={CHALLENGE} usbgw.wait=50")
    lender, out = rig.lender(share["uri"], rig.ticket_file("ticket", share["ticket"]), [HASP],
                             ["hasp"], extra=["--ca-file", os.path.join(rig.work, "ca-cert.pem")])
    rig.check_answer(guest_out)
    print(f"guest answered {rig.answer} through usbgw-share over {share['uri']}")
    stop_lender(lender, "usbgw-share")
    guest.wait(timeout=TIMEOUT_S)
    # remote-viewer over TLS, from the .vv file usbgwctl writes (CA inside)
    if spice_clients.missing_programs() is None:
        vv = os.path.join(rig.work, "share.vv")
        share = json.loads(rig.ctl("share", "test-vm", "--user", "alice", "--vv", vv, "--json"))
        wait(rig.gw_out, rf"SPICE listening on port {share['port']}")
        with open(vv) as f:
            if "tls-port=" not in f.read():
                fail("the .vv file of a TLS share has no tls-port")
        guest, guest_out = rig.boot(f"usbgw.dev={HASP} usbgw.challenge={CHALLENGE} usbgw.wait=50")
        try:
            viewer = spice_clients.start_remote_viewer(
                rig.sim, ["--secret", f"hasp={HASP_SECRET}", "--plug", "hasp"], None, None, None,
                "-1,0x0529,0x0001,-1,1|-1,-1,-1,-1,0",
                dict(os.environ, SPICE_USB_ACL_BINARY=rig.acl_helper), rig.work, vv=vv)
        except spice_clients.ClientError as e:
            fail(str(e))
        rig.check_answer(guest_out)
        print(f"guest answered {rig.answer} through remote-viewer over TLS (.vv from usbgwctl)")
        viewer.stop()
        guest.wait(timeout=TIMEOUT_S)
    rig.stop()


def scenario_remote_viewer(rig):
    reason = spice_clients.missing_programs()
    if reason:
        print(f"SKIP: {reason}")
        raise SystemExit(SKIP)
    # the connection file usbgwctl writes for the user (ticket inside, 0600)
    vv = os.path.join(rig.work, "share.vv")
    share = json.loads(rig.ctl("share", "test-vm", "--user", "alice", "--vv", vv, "--json"))
    wait(rig.gw_out, rf"SPICE listening on port {share['port']}")
    if os.stat(vv).st_mode & 0o077:
        fail("the .vv file with the ticket is readable by others")
    guest, guest_out = rig.boot(f"usbgw.dev={HASP} usbgw.challenge={CHALLENGE} usbgw.wait=50")
    env = dict(os.environ, SPICE_USB_ACL_BINARY=rig.acl_helper)
    try:
        viewer = spice_clients.start_remote_viewer(
            rig.sim, ["--secret", f"hasp={HASP_SECRET}", "--plug", "hasp"], None, None, None,
            "-1,0x0529,0x0001,-1,1|-1,-1,-1,-1,0", env, rig.work, vv=vv)
    except spice_clients.ClientError as e:
        fail(str(e))
    rig.check_answer(guest_out)
    print(f"guest answered {rig.answer} through remote-viewer, usbgwd's proxy and QEMU")
    if os.path.exists(vv):
        fail("remote-viewer left the .vv file with the ticket (delete-this-file)")
    viewer.stop()
    wait(rig.gw_out, rf'vm "test-vm": gave back {HASP}')
    guest.wait(timeout=TIMEOUT_S)
    rig.stop()


def scenario_deny(rig):
    share = rig.share()
    # a wrong ticket first: refused, nothing reaches usbgwd's proxy
    bad, bad_out = rig.lender(share["uri"], rig.ticket_file("bad", "not-" + share["ticket"]),
                              [HASP], ["hasp"], name="wrong-ticket")
    wait(bad_out, r"^usbgw-share: auth error")
    if bad.wait(timeout=TIMEOUT_S) != 3:
        fail(f"usbgw-share with a wrong ticket exited {bad.returncode}, want 3")
    if rig.gw_out.matching(r"client opened channel"):
        fail("a client with a wrong ticket opened a channel")

    guest, guest_out = rig.boot(f"usbgw.dev={HASP} usbgw.challenge={CHALLENGE} usbgw.wait=50 "
                                "usbgw.list=1 usbgw.settle=3")
    lender, out = rig.lender(share["uri"], rig.ticket_file("ticket", share["ticket"]),
                             ["-1,0x0781,0x5567,-1,1|-1,0x0529,0x0001,-1,1|-1,-1,-1,-1,0"],
                             ["stick", "hasp"])
    wait(rig.gw_out, rf'refused {STICK}.* lent by user "alice"')
    rig.check_answer(guest_out)
    wait(guest_out, r"USBGW-PROBE-DONE")
    listed = guest_out.matching(r"^USBGW-DEVICE ")
    if not any(line.startswith(f"USBGW-DEVICE {HASP}") for line in listed):
        fail(f"the guest's listing lacks the key: {listed}")
    if any(STICK in line for line in listed):
        fail(f"the guest saw the refused stick: {listed}")
    denies = [e for e in rig.audit_events() if e["event"] == "deny"]
    if not denies or f"{denies[0].get('vid')}:{denies[0].get('pid')}" != STICK or \
            not denies[0].get("rule", "").endswith("policy:1"):  # the deny-mass-storage rule
        fail(f"audit deny record: {denies}")
    print(f"stick refused ({denies[0].get('rule')}), key answered, guest never saw the stick")
    stop_lender(lender, "usbgw-share")
    guest.wait(timeout=TIMEOUT_S)
    rig.stop()


def scenario_restart(rig):
    share = rig.share()
    guest, guest_out = rig.boot(f"usbgw.dev={HASP} usbgw.challenge={CHALLENGE} usbgw.wait=50 "
                                "usbgw.loop=1", timeout=120)
    lender, out = rig.lender(share["uri"], rig.ticket_file("ticket", share["ticket"]), [HASP],
                             ["hasp"])
    rig.check_answer(guest_out)
    with open(os.path.join(rig.work, "state.json")) as f:
        saved = json.load(f)["shares"]["test-vm"]
    if saved["ticket"] != share["ticket"] or saved["expires"] != 0:
        fail(f"state.json after the first login: {saved}")
    if not time.time() < saved.get("ends", 0) <= time.time() + 12 * 3600 + 5:
        fail(f"state.json after the first login: no share-max-life end (default 12 h): {saved}")
    if os.stat(os.path.join(rig.work, "state.json")).st_mode & 0o077:
        fail("state.json holds tickets but others may read it")
    rig.gw.kill()
    rig.gw.wait()
    seen = out.count()
    wait(out, r"^usbgw-share: disconnected from", seen)
    lost = guest_out.count()
    wait(guest_out, rf"^USBGW-ERROR {HASP} ", lost)  # the guest lost the key
    rig.start_usbgwd()
    wait(rig.gw_out, r'share vm "test-vm" user "alice" restored on SPICE port')
    wait(out, r"^usbgw-share: redirecting .*0529:0001", seen)
    rig.check_answer_again(guest_out, lost)
    print("usbgwd killed and restarted: the share came back, usbgw-share reconnected by "
          "itself, the guest answers again")
    stop_lender(lender, "usbgw-share")
    guest.kill()
    guest.wait()
    rig.stop()


def control_request(rig, request):
    """One raw request on the control socket; returns the reply object."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(rig.control)
        s.sendall((json.dumps(request) + "\n").encode())
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    return json.loads(reply)


def scenario_bad_input(rig):
    # malformed share requests: a clear error each, nothing started
    for request, code, text in [
            ({"command": "share", "vm": "../etc"}, "bad-request", "is not a VM name"),
            ({"command": "share", "vm": ""}, "bad-request", "non-empty string"),
            ({"command": "share", "vm": "v", "ttl": "10m"}, "bad-request", "ttl"),
            ({"command": "share", "vm": "v", "ttl": 0}, "bad-request", "ttl"),
            ({"command": "share", "vm": "v", "ttl": 10 ** 9}, "bad-request", "ttl"),
            ({"command": "share", "vm": "v", "user": 5}, "bad-request", "user"),
            ({"command": "share", "vm": "v", "user": ""}, "bad-request", "user"),
            ({"command": "unshare", "vm": "nope"}, "not-found", "has no share")]:
        reply = control_request(rig, request)
        if reply.get("ok") or reply["error"]["code"] != code or text not in reply["error"]["message"]:
            fail(f"{request}: {reply}, want error {code} mentioning '{text}'")
    if json.loads(rig.ctl("shares", "--json"))["shares"]:
        fail("a malformed request left a share")

    # a state file with broken share entries: each is skipped with a
    # reason, the good one comes back, usbgwd runs
    rig.stop()
    base = rig.spice_port
    state = {"version": 1, "shares": {
        "good": {"user": "alice", "ticket": "t" * 32, "port": base, "expires": 0},
        "no-ticket": {"user": "alice", "port": base, "expires": 0},
        "empty-ticket": {"user": "alice", "ticket": "", "port": base, "expires": 0},
        "long-ticket": {"user": "alice", "ticket": "t" * 61, "port": base, "expires": 0},
        "port-outside": {"user": "alice", "ticket": "t" * 32, "port": base + 1, "expires": 0},
        "expired": {"user": "alice", "ticket": "t" * 32, "port": base, "expires": 1},
        "../escape": {"user": "alice", "ticket": "t" * 32, "port": base, "expires": 0},
        "not-an-object": 7,
    }}
    with open(os.path.join(rig.work, "state.json"), "w") as f:
        json.dump(state, f)
    rig.start_usbgwd()
    wait(rig.gw_out, r'share vm "good" user "alice" restored on SPICE port')
    for vm in ("no-ticket", "empty-ticket", "long-ticket", "port-outside", "../escape",
               "not-an-object"):
        wait(rig.gw_out, rf'share of vm "{re.escape(vm)}" not restored: its saved entry is '
                         "malformed")
    wait(rig.gw_out, r'share of vm "expired" not restored: its ticket expired unused')
    shares = json.loads(rig.ctl("shares", "--json"))["shares"]
    if [share["vm"] for share in shares] != ["good"]:
        fail(f"after restoring a broken state file: {shares}")
    print("malformed share requests and state entries refused one by one; usbgwd runs")
    rig.stop()


def scenario_bad_worker(rig):
    rig.stop()
    here = os.path.dirname(os.path.abspath(__file__))
    mode_file = os.path.join(rig.work, "bad-worker-mode")
    # usbgwd gives workers a cleared environment: the mode file's path
    # comes from a wrapper
    wrapper = os.path.join(rig.work, "bad-worker.sh")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nUSBGW_BAD_WORKER_MODE_FILE='{mode_file}' exec '{sys.executable}' "
                f"'{os.path.join(here, 'bad-worker.py')}' \"$@\"\n")
    os.chmod(wrapper, 0o755)
    conf = os.path.join(rig.work, "usbgwd.conf")
    with open(conf) as f:
        text = f.read().replace(f"spice-worker={rig.worker}", f"spice-worker={wrapper}")
    with open(conf, "w") as f:
        f.write(text)
    rig.start_usbgwd()
    expect = {
        "exit": r"the worker exited with status 1",
        "garbage": r"from the worker: frame (type 255 is unknown|length)",
        "bad-version": r"unexpected READY from the worker",
        "open-twice": r"worker opened channel 0 twice",
        "data-closed": r"worker sent data on channel 0, which is not open",
        "huge": r"from the worker: frame length \d+ exceeds",
        "channel": r"frame for channel 200 that does not exist",
        "client": r"CLIENT frame: byte 11 of the address is 0x0a",
    }
    for mode, pattern in expect.items():
        with open(mode_file, "w") as f:
            f.write(mode + "\n")
        seen = rig.gw_out.count()
        rig.ctl("share", "test-vm", "--user", "alice", "--json")
        i, _ = wait(rig.gw_out, r'share vm "test-vm" user "alice" ended: SPICE worker: ', seen)
        if not re.search(pattern, rig.gw_out.lines[i]):
            fail(f"worker mode {mode}: usbgwd said {rig.gw_out.lines[i]!r}, want /{pattern}/")
        if json.loads(rig.ctl("shares", "--json"))["shares"]:
            fail(f"worker mode {mode}: the share is still listed")
        print(f"bad worker '{mode}': share ended: {rig.gw_out.lines[i].split('ended: ')[1]}")
    unshares = [e for e in rig.audit_events() if e["event"] == "unshare"]
    if len(unshares) < len(expect):
        fail(f"want {len(expect)} unshare audit records, got {unshares}")
    rig.stop()


def scenario_reconnect(rig):
    share = rig.share()
    relay = Relay(share["port"])
    uri = f"spice://127.0.0.1:{relay.port}"
    guest, guest_out = rig.boot(f"usbgw.dev={HASP} usbgw.challenge={CHALLENGE} usbgw.wait=50 "
                                "usbgw.loop=1", timeout=120)
    lender, out = rig.lender(uri, rig.ticket_file("ticket", share["ticket"]), [HASP], ["hasp"])
    first = rig.check_answer(guest_out)
    # mid-transfer: the guest runs a challenge every second
    wait(guest_out, r"^USBGW-ROUND ", first + 1)
    time.sleep(0.3)
    seen = out.count()
    if relay.cut() == 0:
        fail("nothing to cut: the client was not connected through the relay")
    cut_at = time.monotonic()
    i, _ = wait(out, r"^usbgw-share: disconnected from", seen)
    j, _ = wait(out, r"^usbgw-share: connecting to .*\(attempt 2\)", i)
    retry_after = out.times[j] - cut_at
    print(f"usbgw-share reconnected {retry_after:.2f} s after the cut "
          f"(--min-interval {MIN_INTERVAL_S} s)")
    if retry_after < MIN_INTERVAL_S - CLOCK_SLACK_S:
        fail(f"reconnect {retry_after:.2f} s after the loss, sooner than --min-interval")
    wait(out, r"^usbgw-share: redirecting .*0529:0001", j)
    # the VM lost the key and gets it back: a later round answers right
    lost = guest_out.count()
    rig.check_answer_again(guest_out, lost)
    if guest.poll() is not None:
        fail("QEMU is gone")
    rig.ctl("status")
    lends = [e for e in rig.audit_events() if e["event"] == "lend"]
    if len(lends) < 2:
        fail(f"want two 'lend' audit records (before and after the cut), got {lends}")
    print("after the cut: usbgwd and QEMU fine, key lent again, guest answers right")
    stop_lender(lender, "usbgw-share")
    guest.kill()
    guest.wait()
    rig.stop()


def client_login(rig, start=0):
    """The address usbgwd logged for the next client login from line start."""
    i, m = wait(rig.gw_out, r'share vm "test-vm" user "alice": client (\S+) logged in', start)
    return i, m.group(1)


def scenario_second_client(rig):
    share = rig.share()
    guest, guest_out = rig.boot(f"usbgw.dev={HASP} usbgw.challenge={CHALLENGE} usbgw.wait=50 "
                                "usbgw.loop=1", timeout=120)
    ticket = rig.ticket_file("ticket", share["ticket"])
    first, first_out = rig.lender(share["uri"], ticket, [HASP], ["hasp"], name="first")
    _, first_address = client_login(rig)
    rig.check_answer(guest_out)
    wait(rig.gw_out, rf'vm "test-vm": got the lent device {HASP}')
    # the thief: same ticket, its own (simulated) key, while the first lends
    seen_first = first_out.count()
    second, second_out = rig.lender(share["uri"], ticket, [HASP], ["hasp"], name="second")
    wait(second_out, r"^usbgw-share: auth error")
    if second.wait(timeout=TIMEOUT_S) != 3:
        fail(f"the second client exited {second.returncode}, want 3 (auth error)")
    i, _ = wait(rig.gw_out, r"SPICE login from \S+ refused: client \S+ holds the share")
    if first_address not in rig.gw_out.lines[i]:
        fail(f"refusal {rig.gw_out.lines[i]!r} does not name the first client {first_address}")
    denies = rig.audit_of("deny")
    if len(denies) != 1 or first_address not in denies[0].get("reason", "") or \
            "client=" not in denies[0].get("actor", "") or \
            first_address in denies[0].get("actor", ""):
        fail(f"want one 'deny' audit record naming the second client (actor) and the first "
             f"(reason {first_address}), got {denies}")
    lends = rig.audit_of("lend")
    if len(lends) != 1 or f"client={first_address}" not in lends[0].get("actor", ""):
        fail(f"want one 'lend' audit record with client={first_address}, got {lends}")
    print(f"second client refused ({denies[0]['actor']}); audit names the first, {first_address}")
    # the first still lends: never dropped, and the guest's next rounds answer
    rig.check_answer_again(guest_out, guest_out.count())
    if any(re.match(r"^usbgw-share: disconnected from", line)
           for line in first_out.lines[seen_first:]):
        fail(f"the first client was disconnected: {first_out.lines[seen_first:]}")
    if first.poll() is not None:
        fail("the first client is gone")
    returns = [e for e in rig.audit_events() if e["event"] == "return"]
    if returns:
        fail(f"the first client's key went back while it lends: {returns}")
    shares = json.loads(rig.ctl("shares", "--json"))["shares"]
    if shares[0]["client"] != first_address:
        fail(f"usbgwctl shares does not name the first client {first_address}: {shares}")
    print("the first client kept lending: the guest still answers")
    stop_lender(first, "usbgw-share")
    wait(rig.gw_out, rf'vm "test-vm": gave back {HASP}')
    returns = rig.audit_of("return")
    if len(returns) != 1 or f"client={first_address}" not in returns[0].get("actor", ""):
        fail(f"want one 'return' audit record with client={first_address}, got {returns}")
    guest.kill()
    guest.wait()
    rig.stop()


def scenario_max_life(rig):
    rig.reconfigure(add=f"share-max-life={MAX_LIFE_S}\n")
    share = rig.share()
    lender, out = rig.lender(share["uri"], rig.ticket_file("ticket", share["ticket"]), [HASP],
                             ["hasp"])
    i, _ = client_login(rig)
    used_at = rig.gw_out.times[i]
    shares = json.loads(rig.ctl("shares", "--json"))["shares"]
    if not shares or not shares[0].get("ends"):
        fail(f"usbgwctl shares after the first login: no end time: {shares}")
    j, _ = wait(rig.gw_out, r'share vm "test-vm" user "alice" ended: share-max-life', i)
    lasted = rig.gw_out.times[j] - used_at
    print(f"share ended {lasted:.2f} s after the first login (share-max-life={MAX_LIFE_S})")
    if not MAX_LIFE_S - 1 <= lasted <= MAX_LIFE_S + 3:
        fail(f"share ended {lasted:.2f} s after the first login, want about {MAX_LIFE_S}")
    unshares = rig.audit_of("unshare")
    if len(unshares) != 1 or "share-max-life" not in unshares[0].get("reason", ""):
        fail(f"want one 'unshare' audit record naming share-max-life, got {unshares}")
    if json.loads(rig.ctl("shares", "--json"))["shares"]:
        fail("the share is still listed after its max life")
    wait(out, r"^usbgw-share: disconnected from")
    stop_lender(lender, "usbgw-share")
    rig.stop()


def scenario_plain_network(rig):
    rig.stop()
    conf = os.path.join(rig.work, "usbgwd.conf")
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(text + "spice-address=0.0.0.0\n")
    try:
        out = subprocess.run([rig.usbgwd, "--foreground", "--policy",
                              os.path.join(rig.work, "policy"), "--rundir", rig.rundir,
                              "--config", conf], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        fail("usbgwd started (still running after 10 s) with spice-address=0.0.0.0 and no TLS")
    said = out.stdout + out.stderr
    if out.returncode == 0 or not re.search(r"spice-address=0\.0\.0\.0 is not a loopback", said) \
            or "spice-tls-cert" not in said:
        fail(f"usbgwd with spice-address=0.0.0.0 and no TLS: exit {out.returncode}, said {said!r}")
    print(f"refused: {said.strip().splitlines()[-1]}")
    with open(conf, "w") as f:
        f.write(text + "spice-address=0.0.0.0\nspice-allow-plain-network=true\n")
    rig.start_usbgwd()
    share = rig.share()
    if not share["uri"].startswith("spice://"):
        fail(f"share with spice-allow-plain-network: {share}")
    rig.stop()


# usbgwd's default spice-uid-range (gateway/daemon/gw-config.h)
SPICE_UID_FIRST, SPICE_UID_LAST = 1879048192, 1879049215
# What a worker may get of usbgwd's environment (gateway/share/gw-spice.c)
WORKER_ENVIRONMENT = {"G_MESSAGES_DEBUG", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"}


def proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)


def scenario_confine(rig):
    if os.geteuid() != 0:
        print("SKIP: confine needs root (usbgwd gives workers their own uids as root only)")
        raise SystemExit(SKIP)
    rig.share("test-vm")
    rig.share("test-vm2")
    pids = sorted(spice_clients.descendants_named(rig.gw.pid, "usbgw-spice-worker"))
    if len(pids) != 2:
        fail(f"want 2 workers under usbgwd {rig.gw.pid}, found {pids}")
    uids = []
    gw_net = os.readlink(f"/proc/{rig.gw.pid}/ns/net")
    for pid in pids:
        status = proc_status(pid)
        ids = status["Uid"].split() + status["Gid"].split()
        print(f"worker {pid}: Seccomp {status['Seccomp'].strip()}, NoNewPrivs "
              f"{status['NoNewPrivs'].strip()}, Uid/Gid {ids}, Groups "
              f"{status['Groups'].strip()!r}")
        if status["Seccomp"].strip() != "2":
            fail(f"worker {pid}: Seccomp {status['Seccomp'].strip()}, want 2 (filter)")
        if status["NoNewPrivs"].strip() != "1":
            fail(f"worker {pid}: NoNewPrivs {status['NoNewPrivs'].strip()}, want 1")
        if len(set(ids)) != 1 or not SPICE_UID_FIRST <= int(ids[0]) <= SPICE_UID_LAST:
            fail(f"worker {pid}: uids and gids {ids}, want one id from spice-uid-range")
        if status["Groups"].strip():
            fail(f"worker {pid}: supplementary groups {status['Groups'].strip()}")
        uids.append(int(ids[0]))
        net = os.readlink(f"/proc/{pid}/ns/net")
        if net == gw_net:
            fail(f"worker {pid}: in usbgwd's network namespace {net}")
        with open(f"/proc/{pid}/limits") as f:
            limits = f.read()
        for want in (r"Max processes +0 +0 ", r"Max core file size +0 +0 ",
                     r"Max open files +128 +128 "):
            if not re.search(want, limits):
                fail(f"worker {pid}: no '{want}' in its limits:\n{limits}")
        with open(f"/proc/{pid}/environ", "rb") as f:
            names = {e.split(b"=", 1)[0].decode() for e in f.read().split(b"\0") if e}
        if not names <= WORKER_ENVIRONMENT:
            fail(f"worker {pid}: environment has {sorted(names - WORKER_ENVIRONMENT)}")
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if fd == "0" and target != "/dev/null":
                fail(f"worker {pid}: stdin is {target}, want /dev/null")
            if target.startswith("/") and target != "/dev/null":
                fail(f"worker {pid}: fd {fd} is usbgwd's file {target}")
    if uids[0] == uids[1]:
        fail(f"both workers run as uid {uids[0]}")
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in pids:
            continue
        try:
            ids = {int(i) for i in proc_status(name)["Uid"].split()}
        except (OSError, KeyError):
            continue
        if ids & set(uids):
            fail(f"process {name} shares a worker's uid: {ids & set(uids)}")
    # one worker's uid against the other worker, and against itself (the
    # method works: same uid may signal)
    def kill0(uid, pid):
        return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                               "kill", "-0", str(pid)], capture_output=True, text=True)
    other = kill0(uids[0], pids[1])
    if other.returncode == 0 or "Operation not permitted" not in other.stderr:
        fail(f"uid {uids[0]} could signal worker {pids[1]}: {other.returncode} {other.stderr}")
    own = kill0(uids[0], pids[0])
    if own.returncode != 0:
        fail(f"uid {uids[0]} cannot signal its own worker {pids[0]}: {own.stderr}")
    print(f"workers {pids} run as uids {uids}; uid {uids[0]} -> worker {pids[1]}: "
          f"{other.stderr.strip()}")
    rig.ctl("unshare", "test-vm")
    rig.ctl("unshare", "test-vm2")
    rig.stop()
    # a range of one uid: the second share must not get the first's uid
    conf = os.path.join(rig.work, "usbgwd.conf")
    with open(conf) as f:
        base = f.read()
    with open(conf, "w") as f:
        f.write(base + f"spice-uid-range={SPICE_UID_LAST}-{SPICE_UID_LAST}\n")
    rig.start_usbgwd()
    rig.share("test-vm")
    second = subprocess.run([rig.usbgwctl, "--socket", rig.control, "share", "test-vm2",
                             "--user", "alice", "--json"], capture_output=True, text=True)
    if second.returncode == 0 or "no free uid" not in second.stdout + second.stderr:
        fail(f"a second share with a one-uid range: {second.returncode} {second.stdout} "
             f"{second.stderr}")
    print("one-uid range, second share refused: "
          f"{(second.stdout + second.stderr).strip()}")
    rig.stop()
    # a bad range is refused at start, naming the key
    with open(conf, "w") as f:
        f.write(base + "spice-uid-range=9-3\n")
    bad = subprocess.run([rig.usbgwd, "--foreground", "--policy", os.path.join(rig.work, "policy"),
                          "--rundir", rig.rundir, "--config", conf],
                         capture_output=True, text=True, timeout=TIMEOUT_S)
    if bad.returncode == 0 or "spice-uid-range=9-3" not in bad.stderr:
        fail(f"usbgwd with spice-uid-range=9-3: {bad.returncode} {bad.stderr}")


SCENARIOS = {
    "lend": scenario_lend,
    "remote-viewer": scenario_remote_viewer,
    "deny": scenario_deny,
    "tls": scenario_tls,
    "restart": scenario_restart,
    "bad-worker": scenario_bad_worker,
    "bad-input": scenario_bad_input,
    "reconnect": scenario_reconnect,
    "second-client": scenario_second_client,
    "max-life": scenario_max_life,
    "plain-network": scenario_plain_network,
    "confine": scenario_confine,
}


def main():
    if len(sys.argv) != 10 or sys.argv[1] not in SCENARIOS:
        print(__doc__, file=sys.stderr)
        return 2
    scenario, args = sys.argv[1], sys.argv[2:]
    for path in args[:6]:
        if not os.access(path, os.X_OK):
            print(f"SKIP: {path} is not built")
            return SKIP
    import shutil
    if shutil.which("qemu-system-x86_64") is None:
        print("SKIP: qemu-system-x86_64 is not installed")
        return SKIP
    guest_build = subprocess.run(
        ["bash", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "guest",
                              "build-guest.sh"), args[6]],
        capture_output=True, text=True)
    if guest_build.returncode != 0:
        print(guest_build.stdout + guest_build.stderr)
        fail("building the guest failed")
    with tempfile.TemporaryDirectory(prefix="usbgw-share-test.") as work:
        os.chmod(work, 0o755)  # workers do not run as root when we are
        try:
            if scenario == "confine":
                # usbgwd with a stdin and an environment variable the
                # workers must not get
                with open(os.path.join(work, "stdin"), "w+") as stdin:
                    SCENARIOS[scenario](Rig(args, work, ports=2, stdin=stdin,
                                            env=dict(os.environ, USBGW_TEST_SECRET="x")))
            else:
                SCENARIOS[scenario](Rig(args, work, tls=scenario == "tls"))
        finally:
            for proc in PROCS:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    print(f"PASS: {scenario}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
