#!/usr/bin/env python3
"""A stand-in for usbgwd's control socket, for testing usbgw-hook.

    hook-test-server.py SOCKET MODE LOG [MESSAGE]

It speaks docs/control.md: newline-delimited JSON, one reply line per
request line, `bad-request` for a line over 64 KiB, a line that is not a
JSON object or a `hook` request with a missing or non-string argument,
`unknown-command` for other commands; a `sockets` member, when there is
one, must be an array of strings. MODE says how it answers a valid
`hook` request:

    ok            {"ok": true, "result": {}}
    veto          error `veto` with MESSAGE when op is prepare, else ok
    veto-any      error `veto` with MESSAGE whatever the op
    error         error `internal` with MESSAGE
    garbage       a line that is not JSON
    close         no reply: closes the connection
    silent        no reply: keeps the connection open until the client goes
    no-accept     listens, never accepts (connects succeed, nothing is read)
    backlog-full  listens with a full backlog: connects fail with EAGAIN

It prints "ready" on stdout once it listens, serves connections one after
the other until killed, and appends one JSON object per connection to LOG:
{"peer_pid", "peer_uid", "raw" (the request line, newline included),
"trailing" (what the client sent after its first line), "reply"}.
"""
import json
import socket
import struct
import sys
import time

MAX_LINE = 64 * 1024
HOOK_ARGUMENTS = ("domain", "uuid", "op", "sub_op")


def error_reply(code, message):
    return {"ok": False, "error": {"code": code, "message": message}}


def answer(line, mode, message):
    """The reply object for one request line (bytes, without newline)."""
    if len(line) > MAX_LINE:
        return error_reply("bad-request", "request line longer than 64 KiB")
    try:
        request = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return error_reply("bad-request", "not JSON: %s" % exc)
    if not isinstance(request, dict):
        return error_reply("bad-request", "not a JSON object")
    if request.get("command") != "hook":
        return error_reply("unknown-command", "unknown command %r" % request.get("command"))
    for name in HOOK_ARGUMENTS:
        if not isinstance(request.get(name), str):
            return error_reply("bad-request", "missing or wrong-typed argument: %s" % name)
    sockets = request.get("sockets", [])
    if not isinstance(sockets, list) or not all(isinstance(s, str) for s in sockets):
        return error_reply("bad-request", "wrong-typed argument: sockets")
    if mode == "veto-any" or (mode == "veto" and request["op"] == "prepare"):
        return error_reply("veto", message)
    if mode == "error":
        return error_reply("internal", message)
    return {"ok": True, "result": {}}


def read_line(conn):
    data = b""
    while b"\n" not in data and len(data) <= MAX_LINE:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def read_rest(conn):
    rest = b""
    while True:
        chunk = conn.recv(4096)
        if not chunk:
            return rest
        rest += chunk


def serve(conn, mode, message, log):
    pid, uid, _gid = struct.unpack("3i", conn.getsockopt(
        socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    data = read_line(conn)
    line, _, trailing = data.partition(b"\n")
    record = {"peer_pid": pid, "peer_uid": uid,
              "raw": data[:len(line) + 1].decode("utf-8", "replace"), "reply": None}
    reply = answer(line, mode, message)
    if mode == "garbage":
        conn.sendall(b"this is not JSON\n")
    elif mode in ("close", "silent") and reply.get("ok"):
        pass
    else:
        conn.sendall(json.dumps(reply).encode("utf-8") + b"\n")
        record["reply"] = reply
    if mode != "close":
        # the client's end of the conversation: it must send nothing more
        trailing += read_rest(conn)
    record["trailing"] = trailing.decode("utf-8", "replace")
    with open(log, "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    path, mode, log = sys.argv[1:4]
    message = sys.argv[4] if len(sys.argv) == 5 else "a required device is missing"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    if mode == "backlog-full":
        listener.listen(0)
        fillers = []
        while True:
            filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            filler.setblocking(False)
            try:
                filler.connect(path)
            except BlockingIOError:
                filler.close()
                break
            fillers.append(filler)
    else:
        listener.listen(16)
    print("ready", flush=True)
    if mode in ("no-accept", "backlog-full"):
        while True:
            time.sleep(3600)
    while True:
        conn, _ = listener.accept()
        with conn:
            serve(conn, mode, message, log)


if __name__ == "__main__":
    main()
