#!/usr/bin/env python3
"""Holds as many idle connections to usbgwd's control socket as it can.

    control-flood.py SOCKET REPORT [MAX]

Opens connections until MAX, or until connect() fails or hangs (backlog
full, out of file descriptors), sends nothing, then after a short pause
sorts them into the ones still open and the ones usbgwd closed (with the
reply line it sent first, if any). Writes the REPORT file as JSON
{"opened", "stopped" (why it stopped opening), "open", "closed", "replies": [first distinct reply lines]}, then
keeps the open ones idle and writes REPORT.idle when usbgwd closed them
all (with how long that took), or waits until killed.
"""
import json
import os
import resource
import socket
import sys
import time

path, report = sys.argv[1], sys.argv[2]
limit = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

conns = []
stopped = "max"
start = time.monotonic()
for _ in range(limit):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    # the listen backlog is full (EAGAIN) while usbgwd accepts: try again
    for _ in range(200):
        try:
            s.connect(path)
            break
        except BlockingIOError:
            time.sleep(0.01)
        except OSError as e:
            stopped = str(e)
            break
    else:
        stopped = "connect: backlog full for 2 s"
    if stopped != "max":
        s.close()
        break
    conns.append(s)
time.sleep(0.5)


def state(s):
    """'open', or the bytes usbgwd sent before it closed."""
    s.setblocking(False)
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data or b"EOF"
            data += chunk
    except BlockingIOError:
        return "open" if not data else data
    except OSError as e:
        return ("error: %s" % e).encode()


still_open, replies, closed = [], [], 0
for s in conns:
    st = state(s)
    if st == "open":
        still_open.append(s)
    else:
        closed += 1
        line = st.decode(errors="replace").strip()
        if line not in replies and len(replies) < 5:
            replies.append(line)
        s.close()
with open(report + ".tmp", "w") as f:
    json.dump({"opened": len(conns), "stopped": stopped, "open": len(still_open), "closed": closed,
               "replies": replies}, f)
os.rename(report + ".tmp", report)

# idle: wait for usbgwd to close the rest (or for our killer)
while still_open:
    left = []
    for s in still_open:
        st = state(s)
        if st == "open":
            left.append(s)
        else:
            line = st.decode(errors="replace").strip()
            if line not in replies and len(replies) < 10:
                replies.append(line)
    still_open = left
    time.sleep(0.1)
with open(report + ".idle.tmp", "w") as f:
    json.dump({"after": round(time.monotonic() - start, 1), "replies": replies}, f)
os.rename(report + ".idle.tmp", report + ".idle")
