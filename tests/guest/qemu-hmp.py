#!/usr/bin/env python3
"""Send human-monitor (HMP) commands to a QEMU started with
-monitor unix:SOCK,server=on,wait=off, and print what QEMU answers.

    qemu-hmp.py SOCK COMMAND...

Waits up to 10 s for the socket. Exit status 1 when QEMU answers a command
with an error ("Error: ..."), 2 when the monitor cannot be reached or closes
before answering (except after "quit").
"""
import socket
import sys
import time

PROMPT = b"(qemu) "
CONNECT_TIMEOUT_S = 10.0
REPLY_TIMEOUT_S = 10.0


def read_to_prompt(sock):
    buf = b""
    while not buf.endswith(PROMPT):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("QEMU closed the monitor")
        buf += chunk
    # HMP echoes the command line, then the answer, then a new prompt.
    return buf[: -len(PROMPT)].decode(errors="replace").replace("\r", "")


def main():
    if len(sys.argv) < 3:
        print("usage: qemu-hmp.py SOCK COMMAND...", file=sys.stderr)
        return 2
    path, commands = sys.argv[1], sys.argv[2:]
    sock = socket.socket(socket.AF_UNIX)
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while True:
        try:
            sock.connect(path)
            break
        except OSError as e:
            if time.monotonic() > deadline:
                print(f"qemu-hmp: cannot reach the monitor {path}: {e}", file=sys.stderr)
                return 2
            time.sleep(0.1)
    sock.settimeout(REPLY_TIMEOUT_S)
    status = 0
    try:
        read_to_prompt(sock)  # the banner
        for command in commands:
            sock.sendall(command.encode() + b"\n")
            answer = read_to_prompt(sock)
            lines = [l for l in answer.split("\n") if l.strip() and command not in l]
            for line in lines:
                print(line)
            if any(line.startswith("Error") for line in lines):
                print(f"qemu-hmp: '{command}' failed", file=sys.stderr)
                status = 1
    except (OSError, ConnectionError) as e:
        if commands[-1] == "quit" and isinstance(e, ConnectionError):
            return status  # QEMU ends without a prompt: that is the answer
        print(f"qemu-hmp: monitor {path}: {e}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
