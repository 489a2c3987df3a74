#!/usr/bin/env python3
"""A usbgw-spice-worker that breaks the socketpair protocol, for usbgwd's
tests: usbgwd must end the share with a reason and carry on.

usbgwd runs it as it runs the real worker (--fd=3 --port=... ...); what it
does wrong is read from the file $USBGW_BAD_WORKER_MODE_FILE:

  exit          exits 1 before READY (as when its port is taken)
  garbage       READY, then bytes that are no frame
  bad-version   READY with version 99
  open-twice    READY, OPEN 0, OPEN 0
  data-closed   READY, DATA on channel 0, which no client opened
  huge          READY, a frame header announcing 16 MiB
  channel       READY, OPEN for channel 200
  client        READY, a CLIENT frame whose address holds a newline
"""
import os
import re
import socket
import struct
import sys
import time


def frame(kind, channel=0, payload=b""):
    return struct.pack("<IBBH", len(payload), kind, channel, 0) + payload


READY, OPEN, DATA, CLIENT = 1, 3, 5, 7
VERSION = 2  # SW_FRAME_VERSION


def main():
    fd = int(next(a for a in sys.argv if a.startswith("--fd=")).split("=")[1])
    channels = int(next(a for a in sys.argv if a.startswith("--channels=")).split("=")[1])
    with open(os.environ["USBGW_BAD_WORKER_MODE_FILE"]) as f:
        mode = f.read().strip()
    sock = socket.socket(fileno=fd)
    ready = frame(READY, 0, struct.pack("<II", VERSION, channels))
    sends = {
        "garbage": [ready, b"\xff" * 64],
        "bad-version": [frame(READY, 0, struct.pack("<II", 99, channels))],
        "open-twice": [ready, frame(OPEN, 0), frame(OPEN, 0)],
        "data-closed": [ready, frame(DATA, 0, b"hello")],
        "huge": [ready, struct.pack("<IBBH", 16 << 20, DATA, 0, 0)],
        "channel": [ready, frame(OPEN, 200)],
        "client": [ready, frame(CLIENT, 0, b"\x01127.0.0.1:1\n")],
    }
    if mode == "exit":
        return 1
    for data in sends[mode]:
        sock.sendall(data)
        time.sleep(0.05)
    # stay until usbgwd closes the socketpair or kills us
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
