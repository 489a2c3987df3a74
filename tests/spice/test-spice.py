#!/usr/bin/env python3
"""SPICE ingress end to end, one scenario per run:

  test-spice.py SCENARIO WORKER SHARE PEER SIM ACL_HELPER

spice-test-peer plays usbgwd and runs usbgw-spice-worker on a loopback
port; usbgw-share runs under usbgw-sim, which owns a simulated HASP key
(0529:0001), and lends it through the worker. The peer's usbredirparser
reports what arrives (HELLO, INTERFACE_INFO, DEVICE_CONNECT ...).

  redirect      the client's hello, interface_info and device_connect for
                0529:0001 reach the peer; SIGTERM releases the device
  wrong-ticket  a wrong ticket is refused: usbgw-share says "auth error"
                and exits 3, the peer sees no channel at all
  reconnect     killing the client closes the channel and the worker takes
                a new client; after the worker restarts, usbgw-share's
                connection attempts are never closer than --min-interval
  remote-viewer the stock client (virt-viewer) on its own Xvfb lends the
                key with --spice-usbredir-redirect-on-connect; stopping
                it closes the channel
  second-client while usbgw-share lends the key, a second usbgw-share with
                the same ticket is refused (auth error, exit 3; the worker
                reports CLIENT REFUSED with its address) and the first
                keeps its channel; once the first has left, the ticket
                logs a client in again (a reconnect after a network loss)
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile

import spice_clients

SKIP = 77
STEP_TIMEOUT_S = 25
MIN_INTERVAL_S = 2
# Measured gaps may come out a little short of the interval only through
# clock granularity; allow nothing more than that.
CLOCK_SLACK_S = 0.05
TICKET = "usbgw-test-ticket"
HASP_FILTER = "-1,0x0529,0x0001,-1,1|-1,-1,-1,-1,0"  # usbredirfilter: the key only


class Reader(spice_clients.LineReader):
    """A process's output lines; a line that does not come fails the test."""

    def wait(self, pattern, start=0, timeout=STEP_TIMEOUT_S):
        try:
            return super().wait(pattern, start, timeout)
        except spice_clients.ClientError as e:
            fail(str(e))


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr, flush=True)
    for proc in list(PROCS):
        if proc.poll() is None:
            proc.kill()
    sys.exit(1)


PROCS = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rig:
    def __init__(self, worker, share, peer, sim, acl_helper, work):
        self.worker, self.share, self.peer_bin = worker, share, peer
        self.sim, self.acl_helper, self.work = sim, acl_helper, work
        self.port = free_port()
        self.peer = None
        self.peer_out = None
        self.viewers = []

    def start_peer(self, via_frame=True):
        args = [self.peer_bin, "--worker", self.worker, "--port", str(self.port)]
        if via_frame:
            args += ["--ticket", TICKET]
        else:
            path = os.path.join(self.work, "server-ticket")
            with open(path, "w") as f:
                f.write(TICKET + "\n")
            os.chmod(path, 0o600)  # readable by root only: read before the drop
            args += ["--ticket-file", path]
        if os.geteuid() == 0:
            args += ["--user", "nobody"]
        self.peer = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        PROCS.append(self.peer)
        self.peer_out = Reader("peer", self.peer.stdout)
        self.peer_out.wait(r"^READY version=2 channels=4$")

    def peer_command(self, line):
        self.peer.stdin.write((line + "\n").encode())
        self.peer.stdin.flush()

    def stop_peer(self):
        self.peer.stdin.close()
        try:
            status = self.peer.wait(timeout=STEP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            fail("the worker did not exit after its socketpair closed")
        self.peer_out.wait(r"^WORKER_EXIT 0$")
        if status != 0:
            fail(f"spice-test-peer exited {status}")

    def start_share(self, name, ticket=TICKET, min_interval=MIN_INTERVAL_S):
        path = os.path.join(self.work, f"{name}-ticket")
        with open(path, "w") as f:
            f.write(ticket + "\n")
        env = dict(os.environ, SPICE_USB_ACL_BINARY=self.acl_helper)
        proc = subprocess.Popen(
            [self.sim, "--plug", "hasp", "--", self.share, f"spice://127.0.0.1:{self.port}",
             "--ticket-file", path, "--device", "0529:0001",
             "--min-interval", str(min_interval)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
        PROCS.append(proc)
        return proc, Reader(name, proc.stdout)

    def start_remote_viewer(self):
        env = dict(os.environ, SPICE_USB_ACL_BINARY=self.acl_helper)
        try:
            viewer = spice_clients.start_remote_viewer(
                self.sim, ["--plug", "hasp"], "127.0.0.1", self.port, TICKET, HASP_FILTER,
                env, self.work, reader=lambda stream: Reader("remote-viewer", stream))
        except spice_clients.ClientError as e:
            fail(str(e))
        self.viewers.append(viewer)
        return viewer


def wait_exit(proc, what):
    try:
        return proc.wait(timeout=STEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        fail(f"{what} did not exit")


def expect_device(rig, start=0):
    """Waits for a client's channel to bring the key (the client picks the
    channel); checks the channel opened and the client's hello and
    interface_info came first. Returns the channel and the index after the
    DEVICE_CONNECT line."""
    out = rig.peer_out
    j, m = out.wait(r"^DEVICE_CONNECT (\d+) 0529:0001$", start)
    ch = m.group(1)
    with out.cond:
        lines = out.lines[start:j]
    for want in (rf"^OPEN {ch}$", rf"^HELLO {ch} ", rf"^INTERFACE_INFO {ch} count=\d+ class="):
        if not any(re.search(want, line) for line in lines):
            fail(f"peer: no /{want}/ before DEVICE_CONNECT on channel {ch}")
    return ch, j + 1


def scenario_redirect(rig):
    rig.start_peer(via_frame=True)
    proc, out = rig.start_share("share")
    ch, _ = expect_device(rig)
    out.wait(r"^usbgw-share: redirecting .*0529:0001")
    proc.send_signal(signal.SIGTERM)  # usbgw-sim passes it on to usbgw-share
    status = wait_exit(proc, "usbgw-share after SIGTERM")
    out.wait(r"^usbgw-share: released .*0529:0001")
    if status != 0:
        fail(f"usbgw-share exited {status} after SIGTERM, want 0")
    rig.peer_out.wait(rf"^CLOSE {ch}$")
    rig.stop_peer()


def scenario_wrong_ticket(rig):
    rig.start_peer(via_frame=True)
    proc, out = rig.start_share("share", ticket="not-the-ticket")
    out.wait(r"^usbgw-share: auth error")
    status = wait_exit(proc, "usbgw-share after the auth error")
    if status != 3:
        fail(f"usbgw-share exited {status} after an auth error, want 3")
    seen = rig.peer_out.matching(r"^(OPEN|HELLO|INTERFACE_INFO|DEVICE_CONNECT|CLOSE) ")
    if seen:
        fail(f"the peer saw channel traffic with a wrong ticket: {seen}")
    rig.stop_peer()


def scenario_reconnect(rig):
    rig.start_peer(via_frame=False)

    # A client that dies: the worker reports the channel closed.
    proc, out = rig.start_share("share1")
    ch, after = expect_device(rig)
    pids = spice_clients.descendants_named(proc.pid, "usbgw-share")
    if len(pids) != 1:
        fail(f"expected one usbgw-share under usbgw-sim, found {pids}")
    os.kill(pids[0], signal.SIGKILL)
    rig.peer_out.wait(rf"^CLOSE {ch}$", after)
    wait_exit(proc, "usbgw-sim after its usbgw-share was killed")

    # The worker still listens: a new client gets the key through again.
    proc, out = rig.start_share("share2")
    _, after = expect_device(rig, after)
    out.wait(r"^usbgw-share: redirecting .*0529:0001")

    # The server goes away for 5 s: attempts at +2 s (refused) and +6 s.
    lost_from = out.count()
    rig.peer_command("restart 5000")
    rig.peer_out.wait(r"^WORKER_EXIT 0$", after)
    i, _ = out.wait(r"^usbgw-share: disconnected from", lost_from)
    lost_at = out.times[i]
    out.wait(r"^usbgw-share: connected to", i, timeout=STEP_TIMEOUT_S)
    expect_device(rig, after)

    attempts = out.times_of(r"^usbgw-share: connecting to .*\(attempt \d+\)$")
    if len(attempts) < 3:
        fail(f"want at least 3 connection attempts (first, refused, success), got {len(attempts)}")
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    print(f"gaps between attempts: {[round(g, 2) for g in gaps]} s, "
          f"first retry {attempts[1] - lost_at:.2f} s after the loss", flush=True)
    short = [g for g in gaps if g < MIN_INTERVAL_S - CLOCK_SLACK_S]
    if short or attempts[1] - lost_at < MIN_INTERVAL_S - CLOCK_SLACK_S:
        fail(f"attempts closer than --min-interval {MIN_INTERVAL_S} s: {gaps}")
    if gaps[-1] < 2 * MIN_INTERVAL_S - CLOCK_SLACK_S:
        fail(f"the second retry came {gaps[-1]:.2f} s after the first, want backoff "
             f">= {2 * MIN_INTERVAL_S} s")

    proc.send_signal(signal.SIGTERM)
    if wait_exit(proc, "usbgw-share after SIGTERM") != 0:
        fail("usbgw-share did not exit 0 after SIGTERM")
    rig.stop_peer()


def scenario_remote_viewer(rig):
    reason = spice_clients.missing_programs()
    if reason:
        print(f"SKIP: {reason}")
        sys.exit(SKIP)
    rig.start_peer(via_frame=True)
    viewer = rig.start_remote_viewer()
    ch, after = expect_device(rig)
    status = viewer.stop()
    if status not in (0, 128 + signal.SIGTERM):  # remote-viewer dies of SIGTERM
        fail(f"remote-viewer under usbgw-sim exited {status} when stopped")
    rig.peer_out.wait(rf"^CLOSE {ch}$", after)
    rig.stop_peer()


def scenario_second_client(rig):
    rig.start_peer(via_frame=True)
    first, first_out = rig.start_share("first")
    ch, after = expect_device(rig)
    _, m = rig.peer_out.wait(r"^CLIENT LOGIN (127\.0\.0\.1:\d+)$")
    first_address = m.group(1)
    first_out.wait(r"^usbgw-share: redirecting .*0529:0001")
    second, second_out = rig.start_share("second")
    second_out.wait(r"^usbgw-share: auth error")
    if wait_exit(second, "the second usbgw-share after its auth error") != 3:
        fail(f"the second usbgw-share exited {second.returncode}, want 3 (auth error)")
    _, m = rig.peer_out.wait(r"^CLIENT REFUSED (127\.0\.0\.1:\d+)$", after)
    if m.group(1) == first_address:
        fail(f"the refused client has the first client's address {first_address}")
    print(f"second client {m.group(1)} refused while {first_address} lends", flush=True)
    dropped = rig.peer_out.matching(rf"^(CLOSE {ch}|CLIENT LEFT|DEVICE_DISCONNECT) ?")
    if dropped or first.poll() is not None or \
            first_out.matching(r"^usbgw-share: disconnected from"):
        fail(f"the first client lost its channel to the second: {dropped}")
    # the first leaves: the ticket works again
    first.send_signal(signal.SIGTERM)
    wait_exit(first, "usbgw-share after SIGTERM")
    i, _ = rig.peer_out.wait(rf"^CLIENT LEFT {re.escape(first_address)}$", after)
    third, third_out = rig.start_share("third")
    expect_device(rig, i)
    rig.peer_out.wait(r"^CLIENT LOGIN 127\.0\.0\.1:\d+$", i)
    third.send_signal(signal.SIGTERM)
    wait_exit(third, "usbgw-share after SIGTERM")
    rig.stop_peer()


SCENARIOS = {
    "redirect": scenario_redirect,
    "wrong-ticket": scenario_wrong_ticket,
    "reconnect": scenario_reconnect,
    "remote-viewer": scenario_remote_viewer,
    "second-client": scenario_second_client,
}


def main():
    if len(sys.argv) != 7 or sys.argv[1] not in SCENARIOS:
        print(__doc__, file=sys.stderr)
        return 2
    scenario, worker, share, peer, sim, acl_helper = sys.argv[1:]
    for path in (worker, share, peer, sim):
        if not os.access(path, os.X_OK):
            print(f"SKIP: {path} is not built")
            return SKIP
    if os.geteuid() == 0:
        try:
            import pwd
            pwd.getpwnam("nobody")
        except KeyError:
            print("SKIP: running as root and there is no user 'nobody' for the worker")
            return SKIP
    with tempfile.TemporaryDirectory(prefix="usbgw-spice-test.") as work:
        rig = Rig(worker, share, peer, sim, acl_helper, work)
        try:
            SCENARIOS[scenario](rig)
        finally:
            for viewer in rig.viewers:
                viewer.stop()
            for proc in PROCS:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    print(f"PASS: {scenario}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
