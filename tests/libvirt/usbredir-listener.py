#!/usr/bin/env python3
"""A unix-socket listener in the place of usbgwd, for the libvirt rig test.

    usbredir-listener.py SOCK

Creates SOCK, prints LISTENING, accepts one connection (QEMU's usb-redir
chardev), prints CONNECTED, then reads the first usbredir packet and prints
    HELLO type=<t> length=<n> version=<QEMU's version string>
It checks nothing itself (the test asserts on those lines), keeps the
connection open until the peer closes it or 60 s pass, and prints CLOSED.
A usbredir header is three little-endian u32 (type, length, id) before
capabilities are exchanged; usb_redir_hello (type 0) carries a 64-byte
version string and the capability words.
"""
import os
import socket
import struct
import sys
import time

HEADER = struct.Struct("<III")
VERSION_LEN = 64
ACCEPT_TIMEOUT_S = 60.0
HOLD_S = 60.0


def say(*words):
    print(*words, flush=True)


def read_exactly(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def main():
    if len(sys.argv) != 2:
        print("usage: usbredir-listener.py SOCK", file=sys.stderr)
        return 2
    path = sys.argv[1]
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)
    server.settimeout(ACCEPT_TIMEOUT_S)
    say("LISTENING", path)
    try:
        conn, _ = server.accept()
    except socket.timeout:
        say("NO-CONNECTION within", ACCEPT_TIMEOUT_S, "s")
        return 1
    say("CONNECTED %.3f" % time.time())
    conn.settimeout(HOLD_S)
    try:
        header = read_exactly(conn, HEADER.size)
        if len(header) < HEADER.size:
            say("SHORT-HEADER", header.hex())
            return 1
        ptype, length, _ = HEADER.unpack(header)
        body = read_exactly(conn, min(length, 4096))
        version = body[:VERSION_LEN].split(b"\0", 1)[0].decode(errors="replace")
        say("HELLO type=%d length=%d version=%s" % (ptype, length, version.replace(" ", "_")))
        while conn.recv(4096):  # hold the connection: QEMU would reconnect
            pass
    except socket.timeout:
        pass
    say("CLOSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
