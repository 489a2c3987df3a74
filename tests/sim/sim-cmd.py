#!/usr/bin/env python3
"""One command to usbgw-sim's control socket (plug, unplug, list, ...).

    sim-cmd.py SOCKET COMMAND

Prints the simulator's reply; exits 0 when its last line starts with "ok",
1 on "error", a closed socket or no answer within 10 s."""
import socket
import sys

sock = socket.socket(socket.AF_UNIX)
sock.settimeout(10)
sock.connect(sys.argv[1])
sock.sendall((sys.argv[2] + "\n").encode())
reply = b""
while not reply.endswith(b"\n") or not reply.splitlines()[-1].startswith((b"ok", b"error")):
    chunk = sock.recv(4096)
    if not chunk:
        break
    reply += chunk
print(reply.decode(errors="replace").strip())
sys.exit(0 if reply.splitlines() and reply.splitlines()[-1].startswith(b"ok") else 1)
