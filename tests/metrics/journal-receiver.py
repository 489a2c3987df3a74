#!/usr/bin/env python3
"""A stand-in for systemd-journald, for one program under test:

    journal-receiver.py DIR RECORDS.jsonl STDOUT.log -- PROGRAM ARGS...

binds DIR/socket (datagrams in the journal's native protocol) and
DIR/stdout (a stream, journald's stdout protocol), runs PROGRAM with its
stderr connected to DIR/stdout (so that GLib's g_log_writer_is_journald()
says yes, as under systemd's StandardError=journal) and writes every native
record to RECORDS.jsonl as one JSON object per line, until PROGRAM exits.
Its exit status is PROGRAM's. DIR must be /run/systemd/journal (in a
private mount namespace) for GLib to send there.

The native protocol: KEY=VALUE lines, or KEY, a newline, a 64-bit
little-endian length and that many bytes of value, then a newline. A
record too big for a datagram comes as a memfd in SCM_RIGHTS."""
import array
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys


def parse_record(data):
    fields = {}
    i = 0
    while i < len(data):
        nl = data.find(b"\n", i)
        if nl < 0:
            raise ValueError("record without a final newline")
        line = data[i:nl]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            i = nl + 1
        else:
            key = line
            (length,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            value = data[nl + 9:nl + 9 + length]
            if data[nl + 9 + length:nl + 10 + length] != b"\n":
                raise ValueError("binary field %r not ended by a newline" % key)
            i = nl + 10 + length
        fields[key.decode()] = value.decode(errors="replace")
    return fields


def main():
    directory, records_path, stdout_path = sys.argv[1:4]
    if sys.argv[4] != "--":
        sys.exit("usage: journal-receiver.py DIR RECORDS STDOUT -- PROGRAM ARGS...")
    program = sys.argv[5:]
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dgram.bind(os.path.join(directory, "socket"))
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.bind(os.path.join(directory, "stdout"))
    stream.listen(4)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(os.path.join(directory, "stdout"))
    server_end, _ = stream.accept()
    with open(stdout_path, "ab") as out:
        child = subprocess.Popen(program, stderr=client.fileno(), stdout=out)
    client.close()
    # SIGTERM is for the program: it stops, then so does the receiver
    signal.signal(signal.SIGTERM, lambda signum, frame: child.terminate())
    records = open(records_path, "a")
    stream_log = open(stdout_path, "ab")
    watched = [dgram, server_end]
    while True:
        ready, _, _ = select.select(watched, [], [], 0.1)
        if dgram in ready:
            fds = array.array("i")
            data, ancdata, _, _ = dgram.recvmsg(1 << 20, socket.CMSG_SPACE(4 * fds.itemsize))
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(cdata[:len(cdata) - (len(cdata) % fds.itemsize)])
            for fd in fds:
                with os.fdopen(fd, "rb") as memfd:
                    data = memfd.read()
            records.write(json.dumps(parse_record(data)) + "\n")
            records.flush()
        if server_end in ready:
            chunk = server_end.recv(65536)
            if chunk:
                stream_log.write(chunk)
                stream_log.flush()
            else:
                watched.remove(server_end)
        if child.poll() is not None and not ready:
            break
    sys.exit(child.returncode)


if __name__ == "__main__":
    main()
