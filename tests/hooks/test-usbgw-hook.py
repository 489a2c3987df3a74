#!/usr/bin/env python3
"""usbgw-hook end to end: the real hook program, run the way libvirt runs it
(argv DOMAIN OP SUB-OP EXTRA, domain XML on stdin, cwd /, libvirt's
stripped environment), against hook-test-server.py playing usbgwd's
control socket, or against no usbgwd at all.

    test-usbgw-hook.py HOOK-PROGRAM HOOK-TEST-SERVER [TEST-NAME…]

Prints TAP. Every case also checks that the hook wrote nothing on stdout
(libvirt takes a migrate/restore hook's stdout as a new domain XML) and
that each stderr line starts with "usbgw-hook: " (but usbgwd's veto
message, which is printed as usbgwd wrote it).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HOOK = os.path.abspath(sys.argv[1])
SERVER = os.path.abspath(sys.argv[2])
ONLY = set(sys.argv[3:])

UUID = "8c1f0a2e-5d2b-4c1e-9a57-3f6b1e2d4c5a"
OTHER_UUID = "0f0e0d0c-0b0a-4908-8706-050403020100"
TIMEOUT_MS = 400
DEFAULT_TIMEOUT_MS = 2000
MAX_XML = 4 * 1024 * 1024
# Generous slack on timing bounds: a loaded CI machine, sanitizers.
SLACK_S = 1.0
# "At once": ops the hook ignores, a socket that is not there.
FAST_S = 0.5
HANDLED_OPS = ["prepare", "started", "stopped", "release", "migrate", "restore", "reconnect"]
SUB_OPS = {"prepare": "begin", "started": "begin", "stopped": "end", "release": "end",
           "migrate": "begin", "restore": "begin", "reconnect": "begin"}
# What libvirt leaves of its environment for hooks, plus sanitizer settings
# so that sanitized builds keep their options.
LIBVIRT_ENV = {"LC_ALL": "C", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": "/root", "USER": "root", "LOGNAME": "root"}
for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
    if var in os.environ:
        LIBVIRT_ENV[var] = os.environ[var]


def domain_xml(name="vm1", uuid=UUID, before="", after="", devices=""):
    return ("<domain type='kvm' id='7'>\n%s  <name>%s</name>\n  <uuid>%s</uuid>\n"
            "  <memory unit='KiB'>524288</memory>\n  <devices>\n"
            "    <disk type='file' device='disk'><driver name='qemu'/></disk>\n%s"
            "  </devices>\n%s</domain>\n" % (before, name, uuid, devices, after))


def unix_redirdev(path):
    """A usb-redir device whose QEMU connects to the unix socket at path."""
    return ("    <redirdev bus='usb' type='unix'>\n"
            "      <source mode='connect' path='%s'><reconnect enabled='yes' timeout='2'/>"
            "</source>\n    </redirdev>\n" % path)


def vm_socket(index, uuid=UUID):
    return "/run/usbgw/vm/%s/%d.sock" % (uuid, index)


class Failure(Exception):
    pass


def check(condition, what, *details):
    if not condition:
        raise Failure(" ".join([what] + [repr(d) for d in details]))


class Result:
    def __init__(self, rc, stdout, stderr, elapsed, pid):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.elapsed = elapsed
        self.pid = pid
        self.lines = stderr.splitlines()

    def __repr__(self):
        return "rc=%d elapsed=%.3fs stderr=%r" % (self.rc, self.elapsed, self.stderr)


class Rig:
    """A scratch directory with a config, a policy and maybe a server."""

    def __init__(self, timeout_ms=TIMEOUT_MS, policy="", config_extra=""):
        self.dir = tempfile.mkdtemp(prefix="usbgw-hook-")
        self.socket = os.path.join(self.dir, "control.sock")
        self.policy = os.path.join(self.dir, "usbgw.policy")
        self.log = os.path.join(self.dir, "requests.log")
        self.config = os.path.join(self.dir, "usbgwd.conf")
        self.server = None
        with open(self.policy, "w", encoding="utf-8") as out:
            out.write(policy)
        hook_group = "[hook]\ntimeout-ms=%d\n" % timeout_ms if timeout_ms else ""
        with open(self.config, "w", encoding="utf-8") as out:
            out.write("[usbgwd]\ncontrol-socket=%s\npolicy=%s\nrundir=/run/usbgw\n%s%s"
                      % (self.socket, self.policy, hook_group, config_extra))

    def start_server(self, mode, message=None):
        args = [sys.executable, SERVER, self.socket, mode, self.log]
        if message is not None:
            args.append(message)
        self.server = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        line = self.server.stdout.readline()
        check(line == "ready\n", "server did not start", line)

    def requests(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log, encoding="utf-8") as log:
            return [json.loads(line) for line in log]

    def wait_requests(self, count):
        """The server logs a connection once the client has gone."""
        deadline = time.monotonic() + 5
        while len(self.requests()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.requests()

    def run(self, args, xml=None, use_config=True, stdin_open=False, timeout=30, prefixed=True):
        argv = [HOOK] + (["--config", self.config] if use_config else []) + args
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd="/", env=LIBVIRT_ENV)
        if stdin_open:
            # like a writer that never finishes: the hook must not wait for it
            try:
                if xml is not None:
                    proc.stdin.write(xml.encode("utf-8") if isinstance(xml, str) else xml)
                    proc.stdin.flush()
            except BrokenPipeError:
                pass  # the hook did not read stdin at all: fine
            try:
                stdout, stderr = proc.stdout.read(), proc.stderr.read()
                proc.wait(timeout=timeout)
            finally:
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
        else:
            data = xml.encode("utf-8") if isinstance(xml, str) else (xml or b"")
            stdout, stderr = proc.communicate(data, timeout=timeout)
        elapsed = time.monotonic() - start
        result = Result(proc.returncode, stdout.decode("utf-8", "replace"),
                        stderr.decode("utf-8", "replace"), elapsed, proc.pid)
        check(result.stdout == "", "the hook wrote on stdout", result.stdout)
        for line in result.lines if prefixed else []:
            check(line.startswith("usbgw-hook: "), "stderr line without prefix", line)
        return result

    def close(self):
        if self.server is not None:
            self.server.kill()
            self.server.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


TESTS = []


def test(function):
    TESTS.append(function)
    return function


def expect(result, rc, *texts, lines=1):
    check(result.rc == rc, "exit status %d, expected %d" % (result.rc, rc), result)
    check(len(result.lines) == lines, "%d stderr lines, expected %d" % (len(result.lines), lines),
          result)
    for text in texts:
        check(text in result.stderr, "stderr lacks", text, result)


def refusal(rig, line, vm="vm1", cause="usbgwd is not running"):
    return "usbgw-hook: %s and policy %s:%d requires a device for VM %s" % (
        cause, rig.policy, line, vm)


# ---- argv -------------------------------------------------------------------

def usage_case(args):
    rig = Rig()
    try:
        result = rig.run(args, domain_xml(), use_config=False)
        expect(result, 2, "usage: 50-usbgw")
        check(result.elapsed < FAST_S, "slow usage error", result)
    finally:
        rig.close()


@test
def argv_none():
    usage_case([])


@test
def argv_three():
    usage_case(["vm1", "prepare", "begin"])


@test
def argv_five():
    usage_case(["vm1", "prepare", "begin", "-", "extra"])


@test
def argv_six_without_config_option():
    usage_case(["--cfg", "/x", "vm1", "prepare", "begin", "-"])


@test
def argv_config_option_without_four_more():
    usage_case(["--config", "/x", "vm1", "prepare", "begin"])


@test
def argv_empty_domain_name():
    rig = Rig()
    try:
        expect(rig.run(["", "started", "begin", "-"], domain_xml()), 2,
               "the domain name (first argument) is empty")
    finally:
        rig.close()


@test
def argv_vm_named_like_the_test_option():
    """Four arguments are always libvirt's: a VM named "--config" is a VM."""
    rig = Rig()
    try:
        rig.start_server("ok")
        # a --config in front so that the test server is the one asked
        result = rig.run(["--config", "started", "begin", "-"], domain_xml("--config"))
        expect(result, 0, lines=0)
        requests = rig.wait_requests(1)
        check(json.loads(requests[0]["raw"])["domain"] == "--config", "wrong domain", requests)
        # and without one, libvirt's way: not a usage error, the name is the VM's
        result = rig.run(["--config", "started", "begin", "-"], domain_xml("--config"),
                         use_config=False)
        check(result.rc == 0 and "usage" not in result.stderr, "misread argv", result)
        check("domain XML names the VM" not in result.stderr, "name misread", result)
    finally:
        rig.close()


# ---- ops ----------------------------------------------------------------------

@test
def ignored_ops_exit_at_once():
    """Without reading stdin (left open here), connecting or reading config."""
    rig = Rig()
    try:
        rig.start_server("ok")
        for op in ["start", "attach", "shutdown", "bogus", "", "PREPARE"]:
            result = rig.run(["vm1", op, "begin", "-"], domain_xml(), stdin_open=True)
            expect(result, 0, lines=0)
            check(result.elapsed < FAST_S, "op %r took too long" % op, result)
        check(rig.requests() == [], "ignored op reached usbgwd", rig.requests())
    finally:
        rig.close()


@test
def handled_ops_send_one_request():
    rig = Rig()
    try:
        rig.start_server("ok")
        for count, op in enumerate(HANDLED_OPS, 1):
            xml = domain_xml("cad-01", UUID.upper())
            result = rig.run(["cad-01", op, SUB_OPS[op], "-"], xml)
            expect(result, 0, lines=0)
            record = rig.wait_requests(count)[-1]
            check(record["peer_pid"] == result.pid, "not the hook's connection", record)
            check(record["raw"].endswith("\n") and record["raw"].count("\n") == 1,
                  "not one line", record)
            check(record["trailing"] == "", "sent more than one line", record)
            request = json.loads(record["raw"])
            want = {"command": "hook", "domain": "cad-01", "uuid": UUID, "op": op,
                    "sub_op": SUB_OPS[op]}
            if op == "migrate":
                want["sockets"] = []  # the VM has no usb-redir device
            check(request == want, "wrong request", request)
            check(record["reply"] == {"ok": True, "result": {}}, "server refused", record)
    finally:
        rig.close()


# ---- migrate: the VM's usb-redir sockets --------------------------------------------

MIGRATING_DEVICES = (unix_redirdev(vm_socket(1))
                     + "    <redirdev bus='usb' type='spicevmc'/>\n"
                     + unix_redirdev(vm_socket(0))
                     + "    <hub type='usb'>%s</hub>\n" % unix_redirdev("/run/nested.sock")
                     + unix_redirdev(vm_socket(2)))


@test
def migrate_sends_sockets():
    """libvirt on the destination: usbgwd learns which sockets QEMU will connect to."""
    rig = Rig()
    try:
        rig.start_server("ok")
        xml = domain_xml(devices=MIGRATING_DEVICES,
                         before="  <metadata>%s</metadata>\n" % unix_redirdev("/run/meta.sock"))
        expect(rig.run(["vm1", "migrate", "begin", "-"], xml), 0, lines=0)
        request = json.loads(rig.wait_requests(1)[0]["raw"])
        check(request == {"command": "hook", "domain": "vm1", "uuid": UUID, "op": "migrate",
                          "sub_op": "begin", "sockets": [vm_socket(1), vm_socket(0), vm_socket(2)]},
              "wrong request", request)
        check(rig.requests()[0]["reply"] == {"ok": True, "result": {}}, "server refused",
              rig.requests())
    finally:
        rig.close()


@test
def other_ops_send_no_sockets():
    rig = Rig()
    try:
        rig.start_server("ok")
        xml = domain_xml(devices=MIGRATING_DEVICES)
        ops = [op for op in HANDLED_OPS if op != "migrate"]
        for count, op in enumerate(ops, 1):
            expect(rig.run(["vm1", op, SUB_OPS[op], "-"], xml), 0, lines=0)
            request = json.loads(rig.wait_requests(count)[-1]["raw"])
            check(request["op"] == op and "sockets" not in request, "sockets sent", request)
    finally:
        rig.close()


# Domain XML whose sockets cannot be told, and what the migrate op says of
# each: only migrate refuses it, every other op goes on as without redirdevs.
BAD_SOCKETS = [
    (domain_xml(devices=unix_redirdev(vm_socket(0)) + unix_redirdev("run/x.sock")),
     "<redirdev type='unix'> socket path \"run/x.sock\" is not absolute"),
    (domain_xml(devices=unix_redirdev("/run/usbgw/vm/../x.sock")),
     "socket path \"/run/usbgw/vm/../x.sock\" has a \"..\" component"),
    (domain_xml(devices=unix_redirdev("/run/" + "p" * 103)),
     "is 108 bytes long, more than the 107 a unix socket path can hold"),
    (domain_xml(devices="".join(unix_redirdev(vm_socket(i)) for i in range(65))),
     "<domain><devices> has more than 64 usb-redir unix sockets"),
    (domain_xml(devices=unix_redirdev("/run/@.sock")).encode().replace(b"@", b"\xff"),
     "domain XML is not well-formed: "),
    (domain_xml(devices=unix_redirdev(vm_socket(0)) + "<x a=b/>"),
     "domain XML is not well-formed: "),
]


@test
def migrate_bad_sockets():
    """Sockets usbgwd could not bind: usbgwd is not told, the migration goes on."""
    rig = Rig()
    try:
        rig.start_server("ok")
        for xml, problem in BAD_SOCKETS:
            result = rig.run(["vm1", "migrate", "begin", "-"], xml)
            expect(result, 0, "usbgw-hook: the domain XML's usb-redir sockets are unusable ("
                   + ("domain XML: line " if "is not well-formed" not in problem else ""),
                   problem, "): usbgwd was not told of VM vm1 migrate begin\n")
        check(rig.requests() == [], "request sent", rig.requests())
    finally:
        rig.close()


def same_as_without_redirdevs(op, mode, message=None, policy=""):
    """Each BAD_SOCKETS domain gives op exactly the exit status, stderr and
    request that the same domain without redirdevs gives."""
    rig = Rig(policy=policy)
    try:
        if mode is not None:
            rig.start_server(mode, message)
        argv = ["vm1", op, SUB_OPS[op], "-"]
        want = rig.run(argv, domain_xml(), prefixed=False)
        want_requests = [r["raw"] for r in rig.wait_requests(1 if mode else 0)]
        for count, (xml, _) in enumerate(BAD_SOCKETS, 2):
            result = rig.run(argv, xml, prefixed=False)
            check((result.rc, result.stderr) == (want.rc, want.stderr),
                  "not as without redirdevs", op, mode, want, result)
            if mode is not None:
                want_requests.append(want_requests[0])
            got = [r["raw"] for r in rig.wait_requests(len(want_requests))]
            check(got == want_requests, "requests not as without redirdevs", got)
        return want
    finally:
        rig.close()


@test
def prepare_ignores_bad_sockets():
    message = "usbgw: VM \"vm1\" requires a USB device"
    check(same_as_without_redirdevs("prepare", "ok").rc == 0, "not started")
    check(same_as_without_redirdevs("prepare", "veto", message).rc == 1, "not vetoed")
    want = same_as_without_redirdevs("prepare", None,
                                     policy='assign id 0529:0001 to vm "vm1" required\n')
    check(want.rc == 1 and "usbgwd is not running and policy" in want.stderr, "not refused",
          want)


@test
def other_ops_ignore_bad_sockets():
    for op in HANDLED_OPS:
        if op not in ("prepare", "migrate"):
            check(same_as_without_redirdevs(op, "ok").rc == 0, "failed", op)


@test
def migrate_too_many_sockets():
    rig = Rig()
    try:
        rig.start_server("ok")
        xml = domain_xml(devices="".join(unix_redirdev(vm_socket(i)) for i in range(65)))
        expect(rig.run(["vm1", "migrate", "begin", "-"], xml), 0,
               "the domain XML's usb-redir sockets are unusable",
               "<domain><devices> has more than 64 usb-redir unix sockets")
        check(rig.requests() == [], "request sent", rig.requests())
        xml = domain_xml(devices="".join(unix_redirdev(vm_socket(i)) for i in range(64)))
        expect(rig.run(["vm1", "migrate", "begin", "-"], xml), 0, lines=0)
        request = json.loads(rig.wait_requests(1)[0]["raw"])
        check(request["sockets"] == [vm_socket(i) for i in range(64)], "wrong sockets", request)
    finally:
        rig.close()


# ---- no usbgwd ------------------------------------------------------------------

@test
def no_socket_started():
    rig = Rig(policy='assign id 0529:0001 to vm "vm1" required\n')
    try:
        result = rig.run(["vm1", "started", "begin", "-"], domain_xml())
        expect(result, 0, "usbgwd is not running (%s: no such socket)" % rig.socket,
               "usbgwd was not told of VM vm1 started begin")
        check(result.elapsed < FAST_S, "not at once", result)
    finally:
        rig.close()


def no_socket_prepare(policy, rc, *texts, vm="vm1", uuid=UUID):
    rig = Rig(policy=policy)
    try:
        result = rig.run([vm, "prepare", "begin", "-"], domain_xml(vm, uuid))
        expect(result, rc, *[t(rig) if callable(t) else t for t in texts])
        check(result.elapsed < FAST_S, "not at once", result)
    finally:
        rig.close()


@test
def no_socket_prepare_without_rules():
    no_socket_prepare("", 0, "usbgwd is not running",
                      lambda rig: "no rule of %s requires a device for VM vm1, so it starts"
                      % rig.policy)


@test
def no_socket_prepare_required_by_name():
    no_socket_prepare('# site policy\ndeny with-interface 08:*:*\n'
                      'assign id 0529:0001 to vm "vm1" required\n', 1,
                      lambda rig: refusal(rig, 3) + " (%s: no such socket)\n" % rig.socket)


@test
def no_socket_prepare_required_by_uuid():
    no_socket_prepare('assign via-port 1-4 to vm-uuid "%s" required\n' % UUID.upper(), 1,
                      lambda rig: refusal(rig, 1, vm="lab"), vm="lab")


@test
def no_socket_prepare_required_by_glob():
    no_socket_prepare('assign id 0529:0001 to vm "cad-*" required\n', 1,
                      lambda rig: refusal(rig, 1, vm="cad-07"), vm="cad-07")


@test
def no_socket_prepare_required_by_pool():
    no_socket_prepare('pool "hasp" vms "cad-*"\nassign id 0529:0001 to pool "hasp" required\n',
                      1, lambda rig: refusal(rig, 2, vm="cad-02"), vm="cad-02")


@test
def no_socket_prepare_optional_rule():
    no_socket_prepare('assign id 0529:0001 to vm "vm1" optional\n'
                      'assign id 064f:2af9 to vm "vm1"\n', 0, "no rule of")


@test
def no_socket_prepare_required_for_other_vm():
    no_socket_prepare('assign id 0529:0001 to vm "vm2" required\n'
                      'assign id 0529:0001 to vm-uuid "%s" required\n' % OTHER_UUID, 0,
                      "no rule of")


@test
def no_socket_prepare_policy_missing():
    rig = Rig()
    try:
        os.unlink(rig.policy)
        result = rig.run(["vm1", "prepare", "begin", "-"], domain_xml())
        expect(result, 0, "usbgwd is not running",
               "cannot check the policy for required devices, so VM vm1 starts",
               "cannot read policy %s" % rig.policy)
    finally:
        rig.close()


@test
def no_socket_prepare_policy_broken():
    """A policy that does not load never stops a VM, even with a required rule."""
    no_socket_prepare('assign id 0529:0001 to vm "vm1" required\nassign id zz to vm "x"\n', 0,
                      "cannot check the policy for required devices, so VM vm1 starts")


@test
def no_socket_required_rule_other_ops_start():
    rig = Rig(policy='assign id 0529:0001 to vm "vm1" required\n')
    try:
        for op in HANDLED_OPS[1:]:
            expect(rig.run(["vm1", op, SUB_OPS[op], "-"], domain_xml()), 0,
                   "usbgwd is not running")
    finally:
        rig.close()


# ---- migrate: refused when usbgwd here cannot prepare the VM's sockets ------------

@test
def migrate_refused_without_usbgwd():
    """The destination's usbgwd is down: the incoming migration is refused,
    so the VM keeps its devices where it runs (libvirt aborts on exit 1)."""
    rig = Rig()
    try:
        xml = domain_xml(devices=unix_redirdev(vm_socket(0)) + unix_redirdev(vm_socket(1)))
        result = rig.run(["vm1", "migrate", "begin", "-"], xml)
        expect(result, 1, "usbgwd is not running",
               "VM vm1's 2 USB device sockets cannot be prepared on this host, so its migration "
               "here is refused (it keeps its devices where it runs)")
        check(result.elapsed < FAST_S, "not at once", result)
        check(result.stdout == "", "wrote to stdout", result)
    finally:
        rig.close()


@test
def migrate_refused_when_usbgwd_errs():
    """usbgwd cannot bind a socket (it answers an error): refused too."""
    rig = Rig()
    try:
        rig.start_server("error", "cannot bind")
        xml = domain_xml(devices=unix_redirdev(vm_socket(0)))
        expect(rig.run(["vm1", "migrate", "begin", "-"], xml), 1, "usbgwd refused the hook call",
               "VM vm1's 1 USB device socket cannot be prepared on this host")
    finally:
        rig.close()


@test
def migrate_goes_on_without_usbgw_sockets():
    """A VM without usbgwd's sockets migrates whether usbgwd runs or not."""
    rig = Rig()
    try:
        xml = domain_xml(devices=unix_redirdev("/run/other/dev.sock"))
        expect(rig.run(["vm1", "migrate", "begin", "-"], xml), 0, "usbgwd is not running",
               "usbgwd was not told of VM vm1 migrate begin")
        expect(rig.run(["vm1", "migrate", "begin", "-"], domain_xml()), 0,
               "usbgwd is not running")
    finally:
        rig.close()


@test
def refused_socket_prepare_required():
    """A socket file nobody listens on (usbgwd died): refused at once."""
    rig = Rig(policy='assign id 0529:0001 to vm "vm1" required\n')
    try:
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(rig.socket)
        dead.close()
        result = rig.run(["vm1", "prepare", "begin", "-"], domain_xml())
        expect(result, 1, refusal(rig, 1), "(%s: nothing listens there)" % rig.socket)
        check(result.elapsed < FAST_S, "not at once", result)
    finally:
        rig.close()


# ---- usbgwd that does not answer -------------------------------------------------

def bounded(result, timeout_ms):
    low = timeout_ms / 1000.0 - 0.05
    check(low <= result.elapsed < timeout_ms / 1000.0 + SLACK_S,
          "elapsed outside [%.2f, %.2f)" % (low, timeout_ms / 1000.0 + SLACK_S), result)


@test
def silent_server_started():
    rig = Rig()
    try:
        rig.start_server("silent")
        result = rig.run(["vm1", "started", "begin", "-"], domain_xml())
        expect(result, 0, "usbgwd did not answer within %d ms (%s: no reply in time)"
               % (TIMEOUT_MS, rig.socket))
        bounded(result, TIMEOUT_MS)
        request = json.loads(rig.wait_requests(1)[0]["raw"])
        check(request["op"] == "started", "request not sent", request)
    finally:
        rig.close()


@test
def silent_server_prepare_required():
    rig = Rig(policy='assign id 0529:0001 to vm "vm1" required\n')
    try:
        rig.start_server("silent")
        result = rig.run(["vm1", "prepare", "begin", "-"], domain_xml())
        expect(result, 1, refusal(rig, 1, cause="usbgwd did not answer within %d ms"
                                  % TIMEOUT_MS))
        bounded(result, TIMEOUT_MS)
    finally:
        rig.close()


@test
def silent_server_default_timeout():
    """No [hook] group: the 2 s default bounds the run."""
    rig = Rig(timeout_ms=0)
    try:
        rig.start_server("silent")
        result = rig.run(["vm1", "stopped", "end", "-"], domain_xml())
        expect(result, 0, "usbgwd did not answer within %d ms" % DEFAULT_TIMEOUT_MS)
        bounded(result, DEFAULT_TIMEOUT_MS)
    finally:
        rig.close()


@test
def server_never_accepts():
    rig = Rig()
    try:
        rig.start_server("no-accept")
        result = rig.run(["vm1", "release", "end", "-"], domain_xml())
        expect(result, 0, "usbgwd did not answer within %d ms" % TIMEOUT_MS)
        bounded(result, TIMEOUT_MS)
    finally:
        rig.close()


@test
def server_backlog_full():
    rig = Rig()
    try:
        rig.start_server("backlog-full")
        result = rig.run(["vm1", "started", "begin", "-"], domain_xml())
        expect(result, 0, "usbgwd did not answer within %d ms (%s: no connection in time)"
               % (TIMEOUT_MS, rig.socket))
        bounded(result, TIMEOUT_MS)
    finally:
        rig.close()


@test
def stdin_never_ends():
    """A writer that never closes stdin cannot hold the hook either."""
    rig = Rig(policy='assign id 0529:0001 to vm "vm1" required\n')
    try:
        rig.start_server("ok")
        result = rig.run(["vm1", "started", "begin", "-"], "<domain><name>vm1</name>",
                         stdin_open=True)
        expect(result, 0, "the domain XML is unusable (the domain XML on stdin did not end "
               "in time (24 bytes read))")
        bounded(result, TIMEOUT_MS)
        result = rig.run(["vm1", "prepare", "begin", "-"], "", stdin_open=True)
        expect(result, 1, refusal(rig, 1, cause="the domain XML is unusable"))
        bounded(result, TIMEOUT_MS)
        check(rig.requests() == [], "request sent without XML", rig.requests())
    finally:
        rig.close()


# ---- usbgwd's answers ----------------------------------------------------------

@test
def veto_prepare():
    # as usbgwd words it (gateway/gw-daemon.c)
    message = ('usbgw: VM "vm1" requires a USB device (/etc/usbgw/usbgw.policy:12) and none is '
               'present')
    rig = Rig()
    try:
        rig.start_server("veto", message)
        result = rig.run(["vm1", "prepare", "begin", "-"], domain_xml(), prefixed=False)
        check(result.rc == 1, "not refused", result)
        check(result.stderr == message + "\n", "not the veto message", result)
        check(result.elapsed < FAST_S, "slow", result)
        # the same server lets the VM's other ops through
        expect(rig.run(["vm1", "started", "begin", "-"], domain_xml()), 0, lines=0)
    finally:
        rig.close()


@test
def veto_message_is_one_line():
    rig = Rig()
    try:
        rig.start_server("veto", "line one\nline two\r\n\ttabbed\x1b[31m")
        result = rig.run(["vm1", "prepare", "begin", "-"], domain_xml(), prefixed=False)
        check(result.rc == 1, "not refused", result)
        check(result.stderr == "line one line two   tabbed [31m\n",
              "not one line", result)
    finally:
        rig.close()


@test
def veto_without_message():
    rig = Rig()
    try:
        rig.start_server("veto", "")
        expect(rig.run(["vm1", "prepare", "begin", "-"], domain_xml()), 1,
               "usbgw-hook: usbgwd refuses to start VM vm1\n")
    finally:
        rig.close()


@test
def veto_on_other_ops_is_only_logged():
    rig = Rig()
    try:
        rig.start_server("veto-any", "no")
        for op in HANDLED_OPS[1:]:
            expect(rig.run(["vm1", op, SUB_OPS[op], "-"], domain_xml()), 0,
                   "usbgwd refused the hook call (veto: no): usbgwd was not told of VM vm1 %s"
                   % op)
    finally:
        rig.close()


@test
def error_reply():
    rig = Rig(policy='assign id 0529:0001 to vm "vm1" required\n')
    try:
        rig.start_server("error", "disk full")
        expect(rig.run(["vm1", "started", "begin", "-"], domain_xml()), 0,
               "usbgwd refused the hook call (internal: disk full)")
        expect(rig.run(["vm1", "prepare", "begin", "-"], domain_xml()), 1,
               refusal(rig, 1, cause="usbgwd refused the hook call")
               + " (internal: disk full)\n")
        expect(rig.run(["vm2", "prepare", "begin", "-"], domain_xml("vm2")), 0,
               "no rule of")
    finally:
        rig.close()


@test
def garbage_reply():
    rig = Rig()
    try:
        rig.start_server("garbage")
        expect(rig.run(["vm1", "prepare", "begin", "-"], domain_xml()), 0,
               "usbgwd did not take the hook call (bad reply from usbgwd: not JSON")
    finally:
        rig.close()


@test
def closed_without_reply():
    rig = Rig()
    try:
        rig.start_server("close")
        expect(rig.run(["vm1", "started", "begin", "-"], domain_xml()), 0,
               "usbgwd did not take the hook call (%s: usbgwd closed the connection without a "
               "reply)" % rig.socket)
    finally:
        rig.close()


# ---- domain XML ------------------------------------------------------------------

def xml_case(xml, argv_name, rc, *texts, op="started", policy=""):
    rig = Rig(policy=policy)
    try:
        rig.start_server("ok")
        result = rig.run([argv_name, op, "begin", "-"], xml)
        expect(result, rc, *texts, lines=1 if texts else 0)
        check(result.elapsed < TIMEOUT_MS / 1000.0 + SLACK_S, "slow", result)
        return rig.wait_requests(1) if not texts else rig.requests()
    finally:
        rig.close()


@test
def xml_too_large():
    xml = domain_xml(after="<!--%s-->" % ("x" * MAX_XML))
    requests = xml_case(xml, "vm1", 0, "the domain XML on stdin is larger than 4194304 bytes: "
                        "refused")
    check(requests == [], "request sent", requests)


@test
def xml_too_large_prepare_required():
    xml = b"\xff" * (MAX_XML + 1)
    xml_case(xml, "vm1", 1, "the domain XML is unusable and policy", "requires a device for VM "
             "vm1 (the domain XML on stdin is larger than", op="prepare",
             policy='assign id 0529:0001 to vm "vm1" required\n')


@test
def xml_at_the_size_limit():
    """Exactly 4 MiB is read: the padding follows the fields."""
    xml = domain_xml()
    xml = xml.replace("</domain>\n", "<!--%s--></domain>" % ("x" * (MAX_XML - len(xml) - 6)))
    check(len(xml) == MAX_XML, "bad test input size", len(xml))
    requests = xml_case(xml, "vm1", 0)
    check(json.loads(requests[0]["raw"])["domain"] == "vm1", "not sent", requests)


@test
def xml_name_mismatch():
    requests = xml_case(domain_xml("vm1"), "vm2", 0,
                        "the domain XML is unusable (domain XML names the VM \"vm1\" but libvirt "
                        "called the hook for \"vm2\"): usbgwd was not told of VM vm2")
    check(requests == [], "request sent", requests)


@test
def xml_binary_junk():
    xml_case(b"\x7fELF\x02\x01\x01\x00" + os.urandom(4096), "vm1", 0,
             "domain XML is not well-formed")


@test
def xml_missing_uuid():
    xml_case("<domain><name>vm1</name></domain>", "vm1", 0,
             "domain XML of \"vm1\" has no <domain><uuid>")


@test
def xml_bad_uuid():
    xml_case(domain_xml(uuid="8c1f0a2e-5d2b-4c1e-9a57"), "vm1", 0,
             "<domain><uuid> \"8c1f0a2e-5d2b-4c1e-9a57\" is not a UUID")


@test
def xml_nested_names_ignored():
    xml = domain_xml(before="  <metadata><app:x xmlns:app='urn:x'><name>evil</name></app:x>"
                     "</metadata>\n  <devices><disk><name>d</name></disk></devices>\n")
    requests = xml_case(xml, "vm1", 0)
    check(json.loads(requests[0]["raw"])["domain"] == "vm1", "wrong name", requests)


@test
def xml_entities_in_name():
    requests = xml_case(domain_xml("a&amp;b&lt;&#x63;&quot;"), 'a&b<c"', 0)
    check(json.loads(requests[0]["raw"])["domain"] == 'a&b<c"', "wrong name", requests)


@test
def xml_empty():
    xml_case("", "vm1", 0, "domain XML is not well-formed")


# ---- configuration ----------------------------------------------------------------

@test
def config_bad_timeout_uses_default():
    rig = Rig(timeout_ms=0, config_extra="[hook]\ntimeout-ms=soon\n")
    try:
        rig.start_server("ok")
        result = rig.run(["vm1", "started", "begin", "-"], domain_xml())
        expect(result, 0, "[hook] timeout-ms=soon: expected milliseconds, 1 to 60000; using 2000")
        check(len(rig.wait_requests(1)) == 1, "request not sent", rig.requests())
    finally:
        rig.close()


@test
def config_unparsable_uses_defaults():
    rig = Rig()
    try:
        with open(rig.config, "wb") as out:
            out.write(b"control-socket=/nowhere\n\xff\xfe\n")
        result = rig.run(["vm1", "started", "begin", "-"], domain_xml())
        check(result.rc == 0, "failed", result)
        check("%s: " % rig.config in result.lines[0] and "using the defaults" in result.lines[0],
              "no warning", result)
        if not os.path.exists("/run/usbgw/control.sock"):
            expect(result, 0, "usbgwd is not running (/run/usbgw/control.sock: no such socket)",
                   lines=2)
    finally:
        rig.close()


def main():
    tests = [t for t in TESTS if not ONLY or t.__name__ in ONLY]
    print("1..%d" % len(tests), flush=True)
    failed = 0
    for number, function in enumerate(tests, 1):
        try:
            function()
            print("ok %d - %s" % (number, function.__name__), flush=True)
        except Exception:  # pylint: disable=broad-except
            failed += 1
            print("not ok %d - %s" % (number, function.__name__))
            for line in traceback.format_exc().splitlines():
                print("# " + line)
            sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
