#!/usr/bin/env python3
"""The cluster mode across hosts: one scenario per run, started by
test-cluster-hosts.sh in the observer host "t" of its rig.

    cluster-hosts.py SCENARIO USBGWD USBGW_SIM TEST_PEER USBGWCTL GUEST_DIR

USBGW_CLUSTER_HOSTS names the hosts: "NAME=NAMESPACE=ADDRESS …".

The cluster: three etcd members (e1, e2, e3) with TLS and client
certificates (--client-cert-auth; the link CA signs the members' server
certificates, with their IP address as subjectAltName, and the gateways'
link certificates serve as their client certificates); two dongle servers
(d1, d2: usbgwd under a usbgw-sim of its own with one simulated key each,
each key with its own secret, exported to gateways "hv-*"); three
hypervisors (hv-a, hv-b, hv-c: usbgwd under an empty usbgw-sim, the pool
"cad" of the keys on gateways "d*", VMs "vm-*"). Every usbgwd runs in
cluster mode on the three members. No libvirt: a VM starts and stops by
the hook's "started" and "stopped" on usbgwd's control socket, and its
QEMU (the tiny guest, probing the key every 200 ms) is started on the
socket usbgwd serves once the VM holds a key.

Scenarios:
  rig              the machinery with today's usbgwd, no cluster mode: the
                   etcd members over TLS from another host (a put and a
                   range with a client certificate, a client without one
                   refused), the hypervisors' links to both dongle servers
                   (link-peers), a pool VM's guest answering with its key's
                   secret, etcd's history replayed
  pool             3 VMs on 3 hypervisors, 2 keys: exactly 2 hold, the third
                   waits naming the holders; a holder stops, the third gets
                   its key
  member-killed    SIGKILL the etcd member the gateways use first while the
                   guests probe: no wrong answer, no key lost, a VM started
                   afterwards gets a key
  etcd-unreachable the three members' hosts cut for less than the TTL: the
                   guests keep answering, a VM started meanwhile waits with a
                   reason, status says unreachable, usbgw_cluster_up 0; after
                   the restore it gets the free key
  gateway-cut      hv-a cut off from etcd (routes) longer than the TTL while
                   its VM holds a key: hv-a stops lending it (cluster-lost,
                   the guest loses the key) before a VM on another hypervisor
                   gets it
  gateway-killed   SIGKILL usbgwd on hv-b while its VM holds a key: after the
                   TTL hv-b leaves the directory and its key goes to a
                   waiting VM
  soak             USBGW_SOAK_OPS (default 3000) random VM starts and stops
                   over the control sockets of the three hypervisors, 24 VM
                   names each, no QEMU
After every scenario: etcd's history of the pools, replayed from revision
1, shows no put on a key that exists (a double lease), and the three
hypervisors' audit records (cluster-hold, cluster-release, cluster-lost)
match it revision for revision, with no two holds of one device at once.

Exit 77 (skip), but for "rig", when usbgwd does not know cluster mode.
"""
import base64
import datetime
import http.client
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
# the migration test's machinery across network namespaces: usbgwd's start
# with its folder, certificates, the QEMU guest and its console
_spec = importlib.util.spec_from_file_location(
    "usbgw_test_migration", os.path.join(HERE, "..", "migration", "test-migration.py"))
mig = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mig)
fail, skip = mig.fail, mig.skip

SCENARIOS = ("rig", "pool", "member-killed", "etcd-unreachable", "gateway-cut",
             "gateway-killed", "soak")
DONGLES = {"d1": "000102030405060708090a0b0c0d0e0f", "d2": "f0e0d0c0b0a090807060504030201000"}
HYPERVISORS = ("hv-a", "hv-b", "hv-c")
MEMBERS = ("e1", "e2", "e3")
POOL = "cad"
POOL_PREFIX = f"/usbgw/pools/{POOL}/"
KEY = "0529:0001@1-1"
LINK_PORT = 7575
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
# the lease's TTL per scenario (cluster-ttl): short where a lease must run
# out, long where a cut must stay well shorter than it. A gateway takes its
# lease as lost 9/10 of the TTL after the last renewal it sent, which may
# be TTL/3 before a cut: a cut of 2/5 of the TTL leaves it a sixth of the
# TTL to renew after the restore
TTL = {"etcd-unreachable": 45, "gateway-cut": 6, "gateway-killed": 6}
CUT_PER_TTL = 0.4
DEFAULT_TTL = 10
# a lost link's sessions: short, so a dead hypervisor's export ends soon
LINK_GRACE_S = 3
SOAK_OPS = int(os.environ.get("USBGW_SOAK_OPS", "3000"))
SOAK_VMS = 8
# each driver thread pauses up to twice this between operations, so that
# many acquires complete before their VM stops again
SOAK_PAUSE_MS = float(os.environ.get("USBGW_SOAK_PAUSE_MS", "10"))
# the wall clock's offset from the monotonic one: console lines carry
# monotonic times, audit records wall-clock ones
WALL = time.time() - time.monotonic()


def wait_until(timeout, what, check, interval=0.2):
    """Polls CHECK until it returns something true (returned), or fails."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            fail(f"{what}: not within {timeout} s")
        time.sleep(interval)


def iso_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def b64(text):
    return base64.b64encode(text.encode()).decode()


def unb64(text):
    return base64.b64decode(text or "").decode(errors="replace")


def prefix_end(prefix):
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class Etcd:
    """A client of the members' JSON gateway over TLS with the checker's
    certificate, from the observer host; each request tries the members in
    turn."""

    def __init__(self, urls, ca, cert, key):
        self.hosts = [u.split("//", 1)[1] for u in urls]
        self.ctx = ssl.create_default_context(cafile=ca)
        self.ctx.load_cert_chain(cert, key)

    def connect(self, host, timeout=5, ctx=None):
        addr, port = host.rsplit(":", 1)
        return http.client.HTTPSConnection(addr, int(port), context=ctx or self.ctx,
                                           timeout=timeout)

    def post(self, path, body, hosts=None):
        errors = []
        for host in hosts or self.hosts:
            conn = self.connect(host)
            try:
                conn.request("POST", path, json.dumps(body),
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    errors.append(f"{host}: HTTP {resp.status} {data[:200]!r}")
                    continue
                return json.loads(data)
            except (OSError, http.client.HTTPException) as e:
                errors.append(f"{host}: {e}")
            finally:
                conn.close()
        raise OSError(f"etcd {path}: no member answered: {'; '.join(errors)}")

    def range(self, prefix):
        """{key: (value, create_revision, mod_revision, lease)} under PREFIX,
        and the store's revision."""
        got = self.post("/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix))})
        kvs = {unb64(kv["key"]): (unb64(kv.get("value")), int(kv.get("create_revision", 0)),
                                  int(kv.get("mod_revision", 0)), int(kv.get("lease", 0)))
               for kv in got.get("kvs", [])}
        return kvs, int(got["header"]["revision"])

    def put(self, key, value):
        return int(self.post("/v3/kv/put", {"key": b64(key), "value": b64(value)})
                   ["header"]["revision"])

    def delete(self, key):
        return int(self.post("/v3/kv/deleterange", {"key": b64(key)})["header"]["revision"])

    def history(self, prefix):
        """Every event under PREFIX from revision 1 up to now, in order:
        (revision, "PUT"|"DELETE", key, value, lease). A sentinel put
        outside the prefix marks "now"; the watch covers the whole key
        space and stops at it."""
        sentinel = "/usbgw-test/sentinel"
        until = self.put(sentinel, str(time.time()))
        events = []
        for host in self.hosts:
            conn = self.connect(host, timeout=30)
            try:
                conn.request("POST", "/v3/watch", json.dumps(
                    {"create_request": {"key": b64("\0"), "range_end": b64("\0"),
                                        "start_revision": 1}}),
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                if resp.status != 200:
                    continue
                while True:
                    line = resp.readline()
                    if not line:
                        raise OSError("the watch ended early")
                    result = json.loads(line).get("result", {})
                    if result.get("compact_revision") or result.get("canceled"):
                        fail(f"etcd's history is not complete: {result}")
                    for ev in result.get("events", []):
                        kv = ev["kv"]
                        rev = int(kv["mod_revision"])
                        key = unb64(kv["key"])
                        if key.startswith(prefix):
                            events.append((rev, ev.get("type", "PUT"), key,
                                           unb64(kv.get("value")), int(kv.get("lease", 0))))
                        if rev >= until:
                            return events
            except (OSError, http.client.HTTPException, ValueError):
                events = []
                continue
            finally:
                conn.close()
        fail("no etcd member gave the history")


class Gateway:
    """One usbgwd in its host's namespace, under a usbgw-sim of its own."""

    def __init__(self, rig, name, policy, conf, secret=None):
        self.rig = rig
        self.name = name
        self.host = rig.hosts[name]
        sim = [rig.sim, "--control", os.path.join(rig.work, f"{name}-sim.sock")]
        if secret is not None:
            sim += ["--secret", f"hasp={secret}", "--plug", "hasp"]
        self.home, self.proc = mig.start_usbgwd(
            rig.usbgwd, rig.work, name, policy, conf,
            [*mig.netns_exec(self.host["ns"]), *sim, "--"])
        rig.procs.append(self.proc)
        self.control = os.path.join(self.home, "control.sock")
        self.conn = None
        self.lock = threading.Lock()

    def daemon_pid(self):
        """usbgwd's pid: the simulator's child."""
        def child():
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    pids = f.read().split()
            except OSError:
                return None
            return int(pids[0]) if pids else None
        return wait_until(10, f"{self.name}: usbgwd under its simulator", child, 0.05)

    def ctl(self, *args, check=True):
        out = subprocess.run([self.rig.usbgwctl, "--socket", self.control, *args],
                             capture_output=True, text=True, timeout=30)
        if check and out.returncode != 0:
            fail(f"{self.name}: usbgwctl {' '.join(args)}: {out.stderr.strip()}")
        return out

    def json(self, *args, check=True):
        out = self.ctl("--json", *args, check=check)
        if out.returncode != 0:
            return None
        return json.loads(out.stdout)

    def ready(self):
        return self.json("status", check=False) is not None

    def devices(self):
        return (self.json("list", check=False) or {}).get("devices", [])

    def cluster(self):
        return (self.json("status", check=False) or {}).get("cluster") or {}

    def metric(self, name):
        out = self.ctl("metrics", check=False)
        m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", out.stdout, re.M)
        return float(m.group(1)) if m else None

    def held_by(self, vm):
        """(device id, socket) lent to VM here, or None."""
        for d in self.devices():
            if d.get("vm") == vm and d.get("socket"):
                return d["id"], d["socket"]
        return None

    def hook(self, op, vm):
        """The hook's OP (started, stopped) for VM over one kept connection
        to the control socket; the reply must be ok."""
        line = json.dumps({"command": "hook", "domain": vm,
                           "uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, vm + ".usbgw.test")),
                           "op": op, "sub_op": "begin"}) + "\n"
        with self.lock:
            for attempt in (1, 2):
                try:
                    if self.conn is None:
                        self.conn = socket.socket(socket.AF_UNIX)
                        self.conn.settimeout(30)
                        self.conn.connect(self.control)
                        self.reader = self.conn.makefile("rb")
                    self.conn.sendall(line.encode())
                    reply = self.reader.readline()
                    if not reply:
                        raise OSError("usbgwd closed the control connection")
                    break
                except OSError as e:
                    self.conn = None
                    if attempt == 2:
                        fail(f"{self.name}: hook {op} {vm}: {e}")
        got = json.loads(reply)
        if not got.get("ok"):
            fail(f"{self.name}: hook {op} {vm} refused: {got}")

    def audit(self, *events):
        return [r for _, r in mig.audit_lines(os.path.join(self.home, "audit.log"))
                if not events or r.get("event") in events]

    def log(self):
        with open(os.path.join(self.home, "usbgwd.log"), errors="replace") as f:
            return f.read()


class Guest:
    """The tiny guest of VM on a hypervisor, its usb-redir chardev on the
    socket usbgwd serves the VM's key on."""

    def __init__(self, rig, gw, vm, sock, device):
        self.vm = vm
        self.device = device
        host = types.SimpleNamespace(exec_prefix=mig.netns_exec(gw.host["ns"]), sock=sock)
        self.qemu = mig.Qemu(rig, f"qemu-{vm}", host)
        rig.procs.append(self.qemu.proc)
        self.want = rig.answers[device.split("/", 1)[0]]

    def rounds(self):
        """(round, wall time of its end, "ok"|"wrong"|"gone"|"error", detail)
        per complete round of the probe."""
        out, current, outcome = [], None, None
        with self.qemu.console.lock:
            lines = list(self.qemu.console.lines)
        for t, line in lines:
            m = re.match(r"USBGW-ROUND (\d+)$", line)
            if m:
                current, outcome = int(m.group(1)), ("error", "no line for the key")
                continue
            m = re.match(r"USBGW-ANSWER 0529:0001 .*response=([0-9a-f]+)$", line)
            if m and current is not None:
                outcome = ("ok", "") if m.group(1) == self.want else ("wrong", m.group(1))
                continue
            m = re.match(r"USBGW-ERROR 0529:0001 (.*)$", line)
            if m and current is not None:
                gone = re.match(r"(not found|present but not configured)", m.group(1))
                outcome = ("gone" if gone else "error", m.group(1))
                continue
            m = re.match(r"USBGW-ROUND-END (\d+)$", line)
            if m and current == int(m.group(1)):
                out.append((current, t + WALL, *outcome))
                current = None
        return out

    def count(self, kind, after=0.0):
        return sum(1 for _, t, k, _ in self.rounds() if k == kind and t > after)

    def wait_answers(self, n, after=0.0, timeout=120):
        wait_until(timeout, f"{n} right answers of {self.device} in {self.vm}'s guest",
                   lambda: self.count("ok", after) >= n or self.check_wrong())
        print(f"{self.vm}: its guest answers {self.want} (the secret of {self.device})",
              flush=True)

    def check_wrong(self):
        wrong = [r for r in self.rounds() if r[2] == "wrong"]
        if wrong:
            fail(f"{self.vm}'s guest got wrong answers (want {self.want}): {wrong[:5]}")
        return False

    def stop(self):
        self.qemu.kill()


class Rig:
    """Certificates, the etcd members, the gateways; everything started is
    killed by stop()."""

    def __init__(self, scenario, usbgwd, sim, peer, usbgwctl, guest_dir):
        self.scenario = scenario
        self.usbgwd, self.sim, self.usbgwctl, self.guest_dir = usbgwd, sim, usbgwctl, guest_dir
        self.procs = []
        self.members = {}
        self.gateways = {}
        self.guests = {}
        self.hosts = {}
        for entry in os.environ["USBGW_CLUSTER_HOSTS"].split():
            name, ns, addr = entry.split("=")
            self.hosts[name] = {"ns": ns, "addr": addr}
        self.work = tempfile.mkdtemp(prefix="usbgw-cluster-hosts.")
        self.answers = {d: subprocess.check_output([peer, "--key-answer", secret, mig.CHALLENGE],
                                                   text=True).strip()
                        for d, secret in DONGLES.items()}
        self.ttl = TTL.get(scenario, DEFAULT_TTL)
        self.urls = [f"https://{self.hosts[m]['addr']}:{ETCD_CLIENT_PORT}" for m in MEMBERS]

    # --- certificates ---------------------------------------------------

    def make_certs(self):
        """The link CA and a certificate per gateway and for the checker
        (make-certs.sh); each etcd member's server certificate, signed by the
        same CA, names its address."""
        self.certs = mig.make_certs(self.work, *DONGLES, *HYPERVISORS, "checker")
        for m in MEMBERS:
            ext = os.path.join(self.certs, f"{m}.ext")
            with open(ext, "w") as f:
                f.write("basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature\n"
                        # the member's own JSON gateway dials it with this
                        # certificate as a client
                        "extendedKeyUsage=serverAuth,clientAuth\n"
                        f"subjectAltName=IP:{self.hosts[m]['addr']}\n")
            key, csr, cert = (os.path.join(self.certs, f"{m}-{s}") for s in
                              ("key.pem", "csr.pem", "cert.pem"))
            for cmd in (["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                         "ec_paramgen_curve:P-256", "-out", key],
                        ["openssl", "req", "-new", "-key", key, "-subj", f"/CN=etcd-{m}",
                         "-out", csr],
                        ["openssl", "x509", "-req", "-in", csr, "-CA",
                         os.path.join(self.certs, "ca-cert.pem"), "-CAkey",
                         os.path.join(self.certs, "ca-key.pem"), "-CAcreateserial", "-days", "30",
                         "-extfile", ext, "-out", cert]):
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    fail(f"{' '.join(cmd)}: {out.stderr.strip()}")
        self.etcd = Etcd(self.urls, *(os.path.join(self.certs, f) for f in
                                      ("ca-cert.pem", "checker-cert.pem", "checker-key.pem")))

    # --- etcd -------------------------------------------------------------

    def start_etcd(self):
        initial = ",".join(f"{m}=http://{self.hosts[m]['addr']}:{ETCD_PEER_PORT}" for m in MEMBERS)
        ca = os.path.join(self.certs, "ca-cert.pem")
        for m in MEMBERS:
            addr = self.hosts[m]["addr"]
            client = f"https://{addr}:{ETCD_CLIENT_PORT}"
            peer = f"http://{addr}:{ETCD_PEER_PORT}"
            log = open(os.path.join(self.work, f"etcd-{m}.log"), "wb")
            # short heartbeats and elections, as tests/cluster: a killed
            # leader is replaced in well under a second
            proc = subprocess.Popen(
                [*mig.netns_exec(self.hosts[m]["ns"]), "etcd", "--name", m,
                 "--data-dir", os.path.join(self.work, f"etcd-{m}"),
                 "--listen-client-urls", client, "--advertise-client-urls", client,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", initial, "--initial-cluster-state", "new",
                 "--initial-cluster-token", os.path.basename(self.work),
                 "--heartbeat-interval", "50", "--election-timeout", "500",
                 "--client-cert-auth", "--trusted-ca-file", ca,
                 "--cert-file", os.path.join(self.certs, f"{m}-cert.pem"),
                 "--key-file", os.path.join(self.certs, f"{m}-key.pem")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            self.procs.append(proc)
            self.members[m] = proc

        def answering():
            try:
                for host in self.etcd.hosts:
                    self.etcd.post("/v3/kv/range", {"key": b64("/probe")}, hosts=[host])
                return True
            except OSError:
                return False
        wait_until(60, "three etcd members answering over TLS", answering, 0.3)
        print(f"etcd: {', '.join(self.urls)} answering over TLS with client certificates",
              flush=True)

    def check_etcd_tls(self):
        """From this host: a put and a range with the checker's certificate;
        a client without a certificate refused; one of another CA not
        trusted."""
        rev = self.etcd.put("/usbgw-test/hello", "from t")
        kvs, _ = self.etcd.range("/usbgw-test/hello")
        if kvs.get("/usbgw-test/hello", ("",))[0] != "from t":
            fail(f"etcd's range does not give the put back: {kvs}")
        plain = ssl.create_default_context(cafile=os.path.join(self.certs, "ca-cert.pem"))
        conn = self.etcd.connect(self.etcd.hosts[0], ctx=plain)
        try:
            conn.request("POST", "/v3/kv/range", json.dumps({"key": b64("/usbgw-test/hello")}))
            status = conn.getresponse().status
            fail(f"etcd answered a client without a certificate (HTTP {status})")
        except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError) as e:
            refused = str(e) or type(e).__name__
        finally:
            conn.close()
        print(f"etcd over TLS: put at revision {rev} and read back; a client without a "
              f"certificate refused ({refused})", flush=True)

    # --- gateways ---------------------------------------------------------

    def gateway_conf(self, name, cluster):
        addr = self.hosts[name]["addr"]
        conf = [f"link-listen={addr}:{LINK_PORT}", *mig.link_credentials(self.certs, name),
                f"link-grace={LINK_GRACE_S}"]
        if name.startswith("hv-"):
            conf.append("link-reattach-interval=0")
        if cluster:
            conf += [f"cluster-etcd={','.join(self.urls)}",
                     f"cluster-etcd-cert={self.certs}/{name}-cert.pem",
                     f"cluster-etcd-key={self.certs}/{name}-key.pem",
                     f"cluster-etcd-ca={self.certs}/ca-cert.pem",
                     f"cluster-ttl={self.ttl}"]
        elif name.startswith("hv-"):
            # without cluster mode the hypervisors dial the dongle servers
            conf.append("link-peers=" + ";".join(
                f"{d}@{self.hosts[d]['addr']}:{LINK_PORT}" for d in DONGLES))
        return conf

    def start_gateways(self, cluster):
        for d, secret in DONGLES.items():
            self.gateways[d] = Gateway(self, d, 'export id 0529:* to gateway "hv-*"\n',
                                       self.gateway_conf(d, cluster), secret)
        policy = (f'pool "{POOL}" vms "vm-*"\n'
                  f'assign id 0529:0001 on gateway "d*" to pool "{POOL}"\n')
        for hv in HYPERVISORS:
            self.gateways[hv] = Gateway(self, hv, policy, self.gateway_conf(hv, cluster))
        for name, gw in self.gateways.items():
            wait_until(30, f"{name}'s usbgwd answering", lambda: gw.ready() or gw.proc.poll())
            if gw.proc.poll() is not None:
                fail(f"{name}'s usbgwd exited ({gw.proc.returncode})")
        for d in DONGLES:
            wait_until(30, f"{d} listing its key",
                       lambda: any(x["id"] == KEY for x in self.gateways[d].devices()))
        for hv in HYPERVISORS:
            want = {f"{d}/{KEY}" for d in DONGLES}
            wait_until(60, f"{hv} listing the keys of both dongle servers",
                       lambda: want <= {x["id"] for x in self.gateways[hv].devices()})
        print(f"gateways: {', '.join(DONGLES)} export their keys; "
              f"{', '.join(HYPERVISORS)} list {sorted(want)}", flush=True)

    # --- VMs ----------------------------------------------------------------

    def start_vm(self, hv, vm):
        self.gateways[hv].hook("started", vm)

    def stop_vm(self, hv, vm):
        """As libvirt: QEMU goes first, then the hook says stopped."""
        guest = self.guests.pop(vm, None)
        if guest is not None:
            guest.stop()
        self.gateways[hv].hook("stopped", vm)

    def wait_held(self, hv, vm, timeout=60):
        """Waits until VM on HV holds a key (etcd's pool key names it, and
        HV serves it a socket); returns the device id."""
        gw = self.gateways[hv]

        def held():
            holds = self.pool_holds()
            got = gw.held_by(vm)
            ours = [d for d, (g, v, *_) in holds.items() if v == vm and g == hv]
            if got and ours:
                return got[0]
            return None
        return wait_until(timeout, f"{vm} on {hv} holding a key of pool {POOL}", held)

    def guest(self, hv, vm):
        """Starts VM's guest on the socket HV serves its key on."""
        device, sock = self.gateways[hv].held_by(vm)
        g = Guest(self, self.gateways[hv], vm, sock, device)
        self.guests[vm] = g
        return g

    def pool_holds(self):
        """etcd's pool keys: {device: (gateway, vm, create_revision, lease)}."""
        kvs, _ = self.etcd.range(POOL_PREFIX)
        out = {}
        for key, (value, created, _, lease) in kvs.items():
            v = json.loads(value)
            out[device_of_key(key)] = (v.get("gateway"), v.get("vm"), created, lease)
        return out

    # --- checks and the end ---------------------------------------------------

    def check_history(self, lost_expected=False):
        """etcd's history of the pool replayed from revision 1: no put on a
        key that exists; then every hypervisor's audit records against it.
        Returns the figures."""
        events = self.etcd.history(POOL_PREFIX)
        with open(os.path.join(self.work, "history.json"), "w") as f:
            json.dump(events, f, indent=0)
        intervals, doubles = replay(events)
        if doubles:
            fail(f"{len(doubles)} double leases in etcd's history: {doubles[:5]}")
        audits = {hv: self.gateways[hv].audit("cluster-hold", "cluster-release", "cluster-lost")
                  for hv in HYPERVISORS if hv in self.gateways}
        lost = check_audits(audits, intervals)
        if lost and not lost_expected:
            fail(f"cluster-lost records where no lease may be lost: {lost}")
        puts = len(intervals)
        deletes = sum(1 for i in intervals if i["delete"] is not None)
        print(f"history: {len(events)} events of pool {POOL} replayed from revision 1: "
              f"{puts} holds, {deletes} releases or expiries, 0 double leases; "
              f"the audit logs match it ({sum(len(a) for a in audits.values())} records, "
              f"{len(lost)} cluster-lost)", flush=True)
        return events, intervals

    def dump_logs(self):
        for name in list(self.gateways):
            path = os.path.join(self.work, name, "usbgwd.log")
            audit = os.path.join(self.work, name, "audit.log")
            for p, n in ((path, 4000), (audit, 2000)):
                if os.path.exists(p):
                    with open(p, errors="replace") as f:
                        print(f"--- {name}: {os.path.basename(p)} (tail)\n{f.read()[-n:]}")
        for m in MEMBERS:
            p = os.path.join(self.work, f"etcd-{m}.log")
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    print(f"--- etcd {m} (tail)\n" + "".join(f.readlines()[-15:]))
        for vm, g in self.guests.items():
            print(f"--- {vm}'s guest: rounds {[r[2] for r in g.rounds()][-40:]}")

    def stop(self):
        for g in list(self.guests.values()):
            g.stop()
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def device_of_key(key, prefix=POOL_PREFIX):
    """The device id a pool key names: what follows /usbgw/pools/POOL/,
    its %XX escapes undone (a gateway-qualified id's "/" is one)."""
    return urllib.parse.unquote(key[len(prefix):] if key.startswith(prefix) else key)


def replay(events, prefix=POOL_PREFIX):
    """A pool's history replayed: (its holds, each a dict of device,
    gateway, vm, put and delete revisions and lease; the double leases,
    puts on a key that existed)."""
    live, intervals, doubles = {}, [], []
    for rev, kind, key, value, lease in events:
        device = device_of_key(key, prefix)
        if kind == "PUT":
            if device in live:
                doubles.append((rev, device, live[device], value))
            v = json.loads(value)
            live[device] = {"device": device, "gateway": v.get("gateway"), "vm": v.get("vm"),
                            "put": rev, "lease": lease, "delete": None}
            intervals.append(live[device])
        elif kind == "DELETE":
            if device not in live:
                fail(f"etcd's history: a delete of {device} at revision {rev}, which was free")
            live.pop(device)["delete"] = rev
    return intervals, doubles


def check_audits(audits, intervals):
    """Matches the hypervisors' cluster records with etcd's history: each
    cluster-hold is a put of the same device, gateway and VM at its
    revision, each cluster-release a delete of that hold, each cluster-lost
    a hold that ended without a release; every put has its cluster-hold.
    Then from the records (and, for a hold whose gateway died without a
    record, etcd's expiry): no two holds of a device overlap. Returns the
    cluster-lost records."""
    by_put = {i["put"]: i for i in intervals}
    by_delete = {i["delete"]: i for i in intervals if i["delete"] is not None}
    held, lost_records, spans = set(), [], []
    for gw, records in audits.items():
        open_holds = {}
        for r in records:
            ev, device, vm = r.get("event"), r.get("device"), r.get("vm")
            if ev == "cluster-hold":
                i = by_put.get(int(r.get("revision", -1)))
                if i is None or (i["device"], i["gateway"], i["vm"]) != (device, gw, vm):
                    fail(f"{gw}: a cluster-hold that is not etcd's put at its revision: {r} "
                         f"(etcd: {i})")
                held.add(i["put"])
                open_holds[device] = i
                spans.append([device, gw, vm, i["put"], None, r["time"]])
            elif ev == "cluster-release":
                i = by_delete.get(int(r.get("revision", -1)))
                if i is None or (i["device"], i["gateway"], i["vm"]) != (device, gw, vm):
                    fail(f"{gw}: a cluster-release that is not etcd's delete at its revision: "
                         f"{r} (etcd: {i})")
                open_holds.pop(device, None)
                close_span(spans, device, gw, i["delete"])
            elif ev == "cluster-lost":
                i = open_holds.pop(device, None)
                if i is None or i["vm"] != vm:
                    fail(f"{gw}: a cluster-lost of a device it did not hold: {r}")
                lost_records.append(r)
                # the hold ends in etcd when the lease runs out
                close_span(spans, device, gw, i["delete"] if i["delete"] is not None else 1 << 62)
    # a hold no record ended (its gateway was killed) ended in etcd when
    # its lease ran out; one etcd still has is open
    for span in spans:
        if span[4] is None:
            i = by_put[span[3]]
            span[4] = i["delete"] if i["delete"] is not None else 1 << 62
    missing = [i for i in intervals if i["put"] not in held]
    if missing:
        fail(f"holds in etcd's history that no cluster-hold audit record names: {missing[:5]}")
    per_device = {}
    for device, gw, vm, start, end, _ in spans:
        per_device.setdefault(device, []).append((start, end, gw, vm))
    for device, spans_of in per_device.items():
        spans_of.sort()
        for a, b in zip(spans_of, spans_of[1:]):
            if b[0] < a[1]:
                fail(f"the audit logs hold {device} twice at once: {a[2]}/{a[3]} from revision "
                     f"{a[0]} to {a[1]}, {b[2]}/{b[3]} from revision {b[0]}")
    return lost_records


def close_span(spans, device, gw, revision):
    for span in reversed(spans):
        if span[0] == device and span[1] == gw and span[4] is None:
            span[4] = revision
            return


def cluster_known(usbgwd):
    """Whether this usbgwd knows cluster mode: its config parser warns
    "unknown key 'cluster-etcd'" when it does not."""
    probe = tempfile.mkdtemp(prefix="usbgw-cluster-probe.")
    try:
        with open(os.path.join(probe, "usbgwd.conf"), "w") as f:
            f.write(f"[usbgwd]\ncontrol-socket={probe}/control.sock\nstate={probe}/state.json\n"
                    f"libvirt-uri=\ncluster-etcd=https://127.0.0.1:9\n")
        open(os.path.join(probe, "policy"), "w").close()
        with open(os.path.join(probe, "log"), "wb") as log:
            proc = subprocess.Popen(["unshare", "--net", usbgwd, "--foreground",
                                     "--policy", f"{probe}/policy", "--rundir", f"{probe}/run",
                                     "--config", f"{probe}/usbgwd.conf"],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            with open(os.path.join(probe, "log"), errors="replace") as f:
                if "unknown key 'cluster-etcd'" in f.read():
                    break
            if os.path.exists(f"{probe}/control.sock"):
                break
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with open(os.path.join(probe, "log"), errors="replace") as f:
            return "unknown key 'cluster-etcd'" not in f.read()
    finally:
        shutil.rmtree(probe, ignore_errors=True)


# --- the scenarios --------------------------------------------------------

def vm_of(hv):
    return "vm-" + hv[3:]


def scenario_rig(rig):
    """The machinery the cluster scenarios stand on, with any usbgwd."""
    rig.check_etcd_tls()
    # a gateway's link certificate is its etcd client certificate
    certs = rig.certs
    as_hv = Etcd(rig.urls, f"{certs}/ca-cert.pem", f"{certs}/hv-a-cert.pem",
                 f"{certs}/hv-a-key.pem")
    as_hv.range("/usbgw/")
    check_replay(rig)
    # the cuts: every member's host (etcd-unreachable), one host's routes
    # to etcd (gateway-cut)
    for m in MEMBERS:
        cut(rig, m, True)
    try:
        rig.etcd.range("/usbgw/")
        fail("etcd answered with its members' hosts cut off")
    except OSError:
        pass
    for m in MEMBERS:
        cut(rig, m, False)
    wait_until(30, "etcd answering after the restore", lambda: try_range(rig.etcd))
    block_etcd(rig, "hv-a", True)
    if reaches(rig, "hv-a", MEMBERS[0]) or not reaches(rig, "hv-b", MEMBERS[0]):
        fail("the routes block the wrong host's traffic to etcd")
    block_etcd(rig, "hv-a", False)
    if not reaches(rig, "hv-a", MEMBERS[0]):
        fail("hv-a does not reach etcd once its routes are back")
    print("rig: cuts of the members' hosts and of hv-a's routes to etcd take and heal", flush=True)

    rig.start_gateways(cluster=False)
    for hv in HYPERVISORS:
        links = {l["peer"]: l["state"] for l in rig.gateways[hv].json("status")["links"]}
        if any(links.get(d) != "up" for d in DONGLES):
            fail(f"{hv}'s links: {links}")
    pid = rig.gateways["hv-b"].daemon_pid()
    with open(f"/proc/{pid}/comm") as f:
        if f.read().strip() != "usbgwd":
            fail(f"hv-b's usbgwd pid {pid} is not usbgwd")
    # without cluster mode each hypervisor's pool is its own: one VM here
    rig.start_vm("hv-a", "vm-a")
    device, _ = wait_until(30, "vm-a on hv-a holding a key",
                           lambda: rig.gateways["hv-a"].held_by("vm-a"))
    g = rig.guest("hv-a", "vm-a")
    g.wait_answers(3)
    # the soak's driver on the two other hypervisors
    counts, running = soak_drive(rig, ("hv-b", "hv-c"), 200, 1)
    for hv, vms in running.items():
        for vm in vms:
            rig.gateways[hv].hook("stopped", vm)
    print(f"rig: hook operations {counts}", flush=True)
    g.check_wrong()
    rig.stop_vm("hv-a", "vm-a")
    rig.check_history()
    print(f"rig: hv-a's vm-a answered with {device}", flush=True)


def try_range(etcd):
    try:
        etcd.range("/usbgw/")
        return True
    except OSError:
        return False


def check_replay(rig):
    """The history check on a pool of its own: two holds released, then a
    put on a held key, which it must count as a double lease."""
    prefix = "/usbgw/pools/rig-check/"
    key = prefix + urllib.parse.quote(f"d1/{KEY}", safe="@:")
    hold = lambda vm: json.dumps({"gateway": "hv-a", "vm": vm})
    rig.etcd.put(key, hold("vm-1"))
    rig.etcd.delete(key)
    rig.etcd.put(key, hold("vm-2"))
    rig.etcd.put(key, hold("vm-3"))
    rig.etcd.delete(key)
    intervals, doubles = replay(rig.etcd.history(prefix), prefix)
    got = [(i["device"], i["vm"], i["delete"] is not None) for i in intervals]
    want = [(f"d1/{KEY}", "vm-1", True), (f"d1/{KEY}", "vm-2", False),
            (f"d1/{KEY}", "vm-3", True)]
    if got != want or len(doubles) != 1 or json.loads(doubles[0][3])["vm"] != "vm-3":
        fail(f"the history check replayed {got} with doubles {doubles}")
    print(f"rig: the history check finds the double lease it was given ({len(intervals)} holds)",
          flush=True)


def block_etcd(rig, host, blocked):
    """Blocks (or unblocks) HOST's traffic to the etcd members: a prohibit
    route to each member in HOST's namespace."""
    for m in MEMBERS:
        run(["ip", "-n", rig.hosts[host]["ns"], "route", "add" if blocked else "del", "prohibit",
             rig.hosts[m]["addr"] + "/32"])


def reaches(rig, host, member):
    """Whether a TCP connection from HOST to MEMBER's client port opens."""
    out = subprocess.run(
        [*mig.netns_exec(rig.hosts[host]["ns"]), sys.executable, "-c",
         "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)",
         rig.hosts[member]["addr"], str(ETCD_CLIENT_PORT)], capture_output=True)
    return out.returncode == 0


def start_three(rig):
    """vm-a, vm-b, vm-c start at once: exactly two hold a key, the third
    waits. Returns (holders as [(hv, vm, device)], the waiting (hv, vm))."""
    threads = [threading.Thread(target=rig.start_vm, args=(hv, vm_of(hv))) for hv in HYPERVISORS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    def settled():
        holds = rig.pool_holds()
        if len(holds) != 2:
            return None
        served = [(hv, vm_of(hv), rig.gateways[hv].held_by(vm_of(hv))) for hv in HYPERVISORS]
        holders = [(hv, vm, got[0]) for hv, vm, got in served if got]
        return (holds, holders) if len(holders) == 2 else None
    holds, holders = wait_until(90, "two of three VMs holding the pool's two keys", settled)
    check_holds(holds, holders)
    waiting = next((hv, vm_of(hv)) for hv in HYPERVISORS if hv not in [h[0] for h in holders])
    return holders, waiting


def check_holds(holds, holders):
    """etcd's pool keys are exactly the holders' devices, each naming its
    gateway and VM."""
    want = {device: (hv, vm) for hv, vm, device in holders}
    got = {device: (g, v) for device, (g, v, *_) in holds.items()}
    if got != want:
        fail(f"etcd's pool keys {got}, the gateways serve {want}")
    if len({vm for _, vm in got.values()}) != len(got):
        fail(f"two pool keys name the same VM: {got}")


def check_waiting(rig, hv, vm, holders):
    """VM's status on HV: waiting, its reason naming each holder."""
    def entry():
        for h in rig.gateways[hv].cluster().get("holds") or []:
            if h.get("vm") == vm and h.get("state") == "waiting":
                return h
        return None
    h = wait_until(20, f"{hv}'s status showing {vm} waiting", entry)
    reason = h.get("reason") or ""
    for _, hvm, device in holders:
        if hvm not in reason and device not in reason:
            fail(f"{vm}'s wait reason does not name the holder {hvm} ({device}): {reason!r}")
    clustered = [d for d in rig.gateways[hv].devices() if d.get("cluster")]
    if not clustered:
        fail(f"{hv}'s list shows no device with its cluster holder: {rig.gateways[hv].devices()}")
    print(f"{vm} on {hv} waits: {reason}", flush=True)
    return reason


def scenario_pool(rig):
    holders, (whv, wvm) = start_three(rig)
    print(f"pool: held {[(vm, device) for _, vm, device in holders]}; {wvm} waits", flush=True)
    check_waiting(rig, whv, wvm, holders)
    guests = [rig.guest(hv, vm) for hv, vm, _ in holders]
    for g in guests:
        g.wait_answers(3)
    hv, vm, device = holders[0]
    t_stop = time.time()
    rig.stop_vm(hv, vm)
    got = rig.wait_held(whv, wvm)
    if got != device:
        fail(f"{wvm} got {got}, the key {vm} returned was {device}")
    rel = [r for r in rig.gateways[hv].audit("cluster-release") if r.get("vm") == vm]
    hold = [r for r in rig.gateways[whv].audit("cluster-hold") if r.get("vm") == wvm]
    if not rel or not hold or int(hold[-1]["revision"]) <= int(rel[-1]["revision"]):
        fail(f"{vm}'s release {rel[-1:]} must come before {wvm}'s hold {hold[-1:]}")
    g = rig.guest(whv, wvm)
    g.wait_answers(3, after=t_stop)
    guests[1].check_wrong()
    holds = rig.pool_holds()
    check_holds(holds, [holders[1], (whv, wvm, device)])
    print(f"pool: {vm} stopped, {wvm} got {device} (etcd revision {hold[-1]['revision']})",
          flush=True)
    rig.check_history()


def scenario_member_killed(rig):
    holders = []
    for hv in ("hv-a", "hv-b"):
        rig.start_vm(hv, vm_of(hv))
        holders.append((hv, vm_of(hv), rig.wait_held(hv, vm_of(hv))))
    guests = [rig.guest(hv, vm) for hv, vm, _ in holders]
    for g in guests:
        g.wait_answers(3)
    before = rig.pool_holds()
    # every gateway lists e1 first: the member it uses first
    victim = MEMBERS[0]
    t_kill = time.time()
    rig.members[victim].kill()
    rig.members[victim].wait()
    print(f"member-killed: SIGKILL etcd {victim} while {len(guests)} guests probe", flush=True)
    time.sleep(2 * rig.ttl + 3)
    for g in guests:
        bad = [r for r in g.rounds() if r[1] > t_kill and r[2] != "ok"]
        if bad:
            fail(f"{g.vm}'s guest after the kill: {bad[:5]}")
        if g.count("ok", t_kill) < rig.ttl:
            fail(f"{g.vm}'s guest answered {g.count('ok', t_kill)} times after the kill")
    after = rig.pool_holds()
    if after != before:
        fail(f"the pool's keys changed after the kill: {before} -> {after}")
    states = {hv: rig.gateways[hv].cluster().get("state") for hv in HYPERVISORS}
    if set(states.values()) != {"up"}:
        fail(f"the gateways' cluster states after the kill: {states}")
    # a VM that starts now still gets a key: the one vm-b gives back
    hv, vm, device = holders[1]
    rig.stop_vm(hv, vm)
    t_start = time.time()
    rig.start_vm("hv-c", "vm-c")
    got = rig.wait_held("hv-c", "vm-c")
    if got != device:
        fail(f"vm-c got {got}, the free key was {device}")
    rig.guest("hv-c", "vm-c").wait_answers(3, after=t_start)
    guests[0].check_wrong()
    print(f"member-killed: {guests[0].count('ok', t_kill)} right answers in vm-a after the kill, "
          f"no key lost; vm-c started afterwards got {device}", flush=True)
    rig.check_history()


def cut(rig, name, down):
    """Pulls NAME's cable (or plugs it back), as netns-rig.sh's rig_cut."""
    ns, addr = rig.hosts[name]["ns"], rig.hosts[name]["addr"]
    run(["ip", "-n", ns, "link", "set", "eth0", "down" if down else "up"])
    if not down:
        run(["ip", "-n", ns, "route", "replace", addr.rsplit(".", 1)[0] + ".0/24", "dev", "eth0",
             "src", addr])


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"{' '.join(cmd)}: {out.stderr.strip()}")


def scenario_etcd_unreachable(rig):
    rig.start_vm("hv-a", "vm-a")
    device_a = rig.wait_held("hv-a", "vm-a")
    ga = rig.guest("hv-a", "vm-a")
    ga.wait_answers(3)
    before = rig.pool_holds()
    cut_s = rig.ttl * CUT_PER_TTL
    t_cut = time.time()
    for m in MEMBERS:
        cut(rig, m, True)
    rig.start_vm("hv-b", "vm-b")
    hb = rig.gateways["hv-b"]
    states, ups, reasons, texts = set(), set(), set(), set()
    seen_unreachable = None
    while time.time() - t_cut < cut_s:
        c = hb.cluster()
        states.add(c.get("state"))
        if c.get("state") == "unreachable" and seen_unreachable is None:
            seen_unreachable = time.time() - t_cut
        # and as an admin reads it
        plain = re.search(r"^cluster: (\S+)", hb.ctl("status", check=False).stdout, re.M)
        texts.add(plain.group(1) if plain else None)
        ups.add(hb.metric("usbgw_cluster_up"))
        for h in c.get("holds") or []:
            if h.get("vm") == "vm-b":
                if h.get("state") != "waiting":
                    fail(f"vm-b is {h.get('state')} while etcd is cut off: {h}")
                reasons.add(h.get("reason"))
        if hb.held_by("vm-b"):
            fail("hv-b lent vm-b a key while etcd was cut off")
        time.sleep(0.5)
    for m in MEMBERS:
        cut(rig, m, False)
    t_restore = time.time()
    if seen_unreachable is not None:
        print(f"etcd-unreachable: hv-b said unreachable {seen_unreachable:.1f} s into the cut", flush=True)
    print(f"etcd-unreachable: {cut_s:.0f} s cut (TTL {rig.ttl}): hv-b's states {sorted(map(str, states))}, "
          f"usbgw_cluster_up {sorted(map(str, ups))}, vm-b's reasons {sorted(map(str, reasons))}",
          flush=True)
    if "unreachable" not in states:
        fail(f"hv-b's status never said unreachable during the cut: {states}")
    if "unreachable" not in texts:
        fail(f"hv-b's usbgwctl status never printed 'cluster: unreachable': {texts}")
    if 0.0 not in ups:
        fail(f"usbgw_cluster_up was never 0 during the cut: {ups}")
    if not any(r for r in reasons):
        fail(f"vm-b waited without a reason: {reasons}")
    bad = [r for r in ga.rounds() if t_cut < r[1] < t_restore and r[2] != "ok"]
    if bad or ga.count("ok", t_cut) == 0:
        fail(f"vm-a's guest during the cut: {bad[:5]}, {ga.count('ok', t_cut)} right answers")
    got = rig.wait_held("hv-b", "vm-b", timeout=60)
    if got == device_a:
        fail(f"vm-b got vm-a's key {got}")
    rig.guest("hv-b", "vm-b").wait_answers(3, after=t_restore)
    after = rig.pool_holds()
    if after.get(device_a) != before.get(device_a):
        fail(f"vm-a's hold changed across the cut: {before} -> {after}")
    print(f"etcd-unreachable: vm-a kept {device_a}; vm-b got {got} after the restore", flush=True)
    rig.check_history()


def scenario_gateway_cut(rig):
    rig.start_vm("hv-a", "vm-a")
    device = rig.wait_held("hv-a", "vm-a")
    ga = rig.guest("hv-a", "vm-a")
    ga.wait_answers(3)
    rig.start_vm("hv-c", "vm-c")
    rig.wait_held("hv-c", "vm-c")
    rig.start_vm("hv-b", "vm-b")
    check_waiting(rig, "hv-b", "vm-b", [("hv-a", "vm-a", device),
                                        ("hv-c", "vm-c", rig.gateways["hv-c"].held_by("vm-c")[0])])
    t_cut = time.time()
    block_etcd(rig, "hv-a", True)
    print(f"gateway-cut: hv-a's routes to etcd blocked (TTL {rig.ttl})", flush=True)

    def lost():
        return [r for r in rig.gateways["hv-a"].audit("cluster-lost") if r.get("vm") == "vm-a"]
    lost_rec = wait_until(3 * rig.ttl + 10, "hv-a's cluster-lost of vm-a's key", lost)[0]
    losses = rig.gateways["hv-a"].metric("usbgw_cluster_lease_losses_total")
    state = rig.gateways["hv-a"].cluster().get("state")
    if not losses or state == "up":
        fail(f"hv-a after its cluster-lost: state {state}, lease losses {losses}")
    got = rig.wait_held("hv-b", "vm-b", timeout=3 * rig.ttl + 20)
    if got != device:
        fail(f"vm-b got {got}, hv-a's key was {device}")
    hold_rec = [r for r in rig.gateways["hv-b"].audit("cluster-hold") if r.get("vm") == "vm-b"][-1]
    t_lost, t_hold = iso_time(lost_rec["time"]), iso_time(hold_rec["time"])
    if not t_lost < t_hold:
        fail(f"hv-b held {device} at {hold_rec['time']}, hv-a gave it up at {lost_rec['time']}")
    wait_until(30, "vm-a's guest losing the key",
               lambda: any(r[2] != "ok" for r in ga.rounds() if r[1] > t_lost))
    last_ok = max((r[1] for r in ga.rounds() if r[2] == "ok"), default=0)
    if last_ok > t_hold:
        fail(f"vm-a's guest answered at {last_ok:.3f}, after hv-b's hold at {t_hold:.3f}")
    ga.check_wrong()
    block_etcd(rig, "hv-a", False)
    rig.guest("hv-b", "vm-b").wait_answers(3, after=t_hold)
    print(f"gateway-cut: hv-a lost its lease {t_lost - t_cut:.1f} s after the cut, "
          f"vm-a's guest's last answer {t_hold - last_ok:.1f} s before hv-b's hold; "
          f"hv-b held {device} {t_hold - t_lost:.1f} s after hv-a's cluster-lost", flush=True)
    wait_until(60, "hv-a's cluster state up again",
               lambda: rig.gateways["hv-a"].cluster().get("state") == "up")
    rig.check_history(lost_expected=True)


def scenario_gateway_killed(rig):
    rig.start_vm("hv-a", "vm-a")
    rig.wait_held("hv-a", "vm-a")
    rig.start_vm("hv-b", "vm-b")
    device = rig.wait_held("hv-b", "vm-b")
    gb = rig.guest("hv-b", "vm-b")
    gb.wait_answers(3)
    rig.start_vm("hv-c", "vm-c")
    wait_until(20, "vm-c waiting on hv-c", lambda: any(
        h.get("vm") == "vm-c" and h.get("state") == "waiting"
        for h in rig.gateways["hv-c"].cluster().get("holds") or []))
    names = lambda: {g.get("name") for g in rig.gateways["hv-a"].cluster().get("gateways") or []}
    wait_until(20, "hv-a's status listing hv-b", lambda: "hv-b" in names())
    pid = rig.gateways["hv-b"].daemon_pid()
    t_kill = time.time()
    os.kill(pid, signal.SIGKILL)
    print(f"gateway-killed: SIGKILL usbgwd on hv-b (pid {pid}) while vm-b holds {device}",
          flush=True)
    gb.stop()
    rig.guests.pop("vm-b")
    wait_until(3 * rig.ttl + 10, "hv-b gone from hv-a's status", lambda: "hv-b" not in names())
    t_gone = time.time()
    got = rig.wait_held("hv-c", "vm-c", timeout=3 * rig.ttl + 20)
    if got != device:
        fail(f"vm-c got {got}, hv-b's key was {device}")
    kvs, _ = rig.etcd.range("/usbgw/")
    left = {k: v for k, (v, *_) in kvs.items() if "hv-b" in k or '"hv-b"' in v}
    if left:
        fail(f"etcd still names hv-b: {left}")
    rig.guest("hv-c", "vm-c").wait_answers(3, after=t_kill)
    print(f"gateway-killed: hv-b left the directory {t_gone - t_kill:.1f} s after the kill "
          f"(TTL {rig.ttl}); vm-c got {device}", flush=True)
    rig.check_history()


def soak_drive(rig, hvs, ops, seed):
    """OPS random VM starts and stops, one thread per hypervisor of HVS,
    each over its own control connection: a VM of SOAK_VMS names that runs
    stops, one that does not starts. Returns the counts per hypervisor and
    the VMs left running."""
    vms = {hv: [f"vm-{hv[3:]}-{n}" for n in range(SOAK_VMS)] for hv in hvs}
    counts = {hv: {"started": 0, "stopped": 0} for hv in hvs}
    running = {hv: set() for hv in hvs}
    errors = []

    def drive(hv, rng):
        try:
            for _ in range(ops // len(hvs)):
                vm = rng.choice(vms[hv])
                op = "stopped" if vm in running[hv] else "started"
                rig.gateways[hv].hook(op, vm)
                (running[hv].discard if op == "stopped" else running[hv].add)(vm)
                counts[hv][op] += 1
                time.sleep(rng.uniform(0, 2 * SOAK_PAUSE_MS) / 1000)
        except SystemExit as e:
            errors.append(f"{hv}: {e}")

    threads = [threading.Thread(target=drive, args=(hv, random.Random(seed + n)))
               for n, hv in enumerate(hvs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        fail(f"hook operations: {errors}")
    return counts, running


def scenario_soak(rig):
    seed = int(os.environ.get("USBGW_SOAK_SEED", str(int(time.time()))))
    print(f"soak: {SOAK_OPS} operations over {len(HYPERVISORS)} hypervisors, "
          f"{SOAK_VMS} VMs each, seed {seed}", flush=True)
    done = threading.Event()
    max_holds = [0]

    def watch():
        while not done.is_set():
            try:
                max_holds[0] = max(max_holds[0], len(rig.pool_holds()))
            except OSError:
                pass
            time.sleep(0.5)
    watcher = threading.Thread(target=watch)
    watcher.start()
    t0 = time.monotonic()
    try:
        counts, running = soak_drive(rig, HYPERVISORS, SOAK_OPS, seed)
    finally:
        done.set()
        watcher.join()
    t_ops = time.monotonic() - t0
    for hv in HYPERVISORS:
        for vm in sorted(running[hv]):
            rig.gateways[hv].hook("stopped", vm)
            counts[hv]["stopped"] += 1
    # settled: no pool key in etcd, and no hold (waiting, releasing) on any
    # hypervisor, twice a second apart: an acquire for a VM that stopped
    # meanwhile may still be on its way, to be given back once it is held
    quiet = []

    def settled():
        idle = not rig.pool_holds() and not any(
            rig.gateways[hv].cluster().get("holds") for hv in HYPERVISORS)
        quiet.append(idle)
        return quiet[-2:] == [True, True]
    wait_until(60, "every pool key released and no hold left once every VM stopped", settled,
               1.0)
    t1 = time.monotonic()
    events, intervals = rig.check_history()
    t_check = time.monotonic() - t1
    if max_holds[0] > len(DONGLES):
        fail(f"{max_holds[0]} pool keys held at once, the pool has {len(DONGLES)}")
    total = sum(c["started"] + c["stopped"] for c in counts.values())
    print(f"soak: {total} operations ({', '.join(f'{hv}: {c}' for hv, c in counts.items())}) in "
          f"{t_ops:.1f} s; {len(intervals)} holds in etcd, at most {max_holds[0]} at once; "
          f"{len(events)} events checked in {t_check:.1f} s", flush=True)


def main():
    if len(sys.argv) != 7 or sys.argv[1] not in SCENARIOS:
        print(__doc__, file=sys.stderr)
        return 2
    scenario, usbgwd, sim, peer, usbgwctl, guest_dir = sys.argv[1:]
    # (test-cluster-hosts.sh built the guest image, outside the rig)
    if scenario != "rig" and not cluster_known(usbgwd):
        skip("usbgwd has no cluster mode (unknown key 'cluster-etcd')")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rig = Rig(scenario, usbgwd, sim, peer, usbgwctl, guest_dir)
    status = 1
    try:
        rig.make_certs()
        rig.start_etcd()
        if scenario == "rig":
            scenario_rig(rig)
        else:
            rig.start_gateways(cluster=True)
            globals()["scenario_" + scenario.replace("-", "_")](rig)
        status = 0
        print(f"PASS: {scenario}", flush=True)
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    finally:
        if status not in (0, 77):
            rig.dump_logs()
        rig.stop()
        if os.environ.get("USBGW_TEST_KEEP"):
            print(f"kept {rig.work}")
        else:
            shutil.rmtree(rig.work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
