#!/usr/bin/env python3
"""An independent Hadoop IPC client for testing the shim's DIGEST-MD5 server.

The digest arithmetic comes from the `pure-sasl` package, not from our Rust
code; the framing and the few protobuf fields are hand-encoded below.

usage: pure_sasl_client.py HOST PORT IDENTIFIER_HEX PASSWORD_HEX
Prints one line: `OK <echoed text>` or `REMOTE <class>: <message>`.
"""
import base64
import socket
import struct
import sys

from puresasl.client import SASLClient


def varint(n):
    out = b""
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field_varint(num, value):
    return varint(num << 3) + varint(value)


def field_bytes(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint((num << 3) | 2) + varint(len(data)) + data


def zigzag(n):
    return (n << 1) ^ (n >> 31)


def delimited(msg):
    return varint(len(msg)) + msg


def frame(*msgs):
    body = b"".join(delimited(m) for m in msgs)
    return struct.pack(">I", len(body)) + body


def rpc_header(call_id, client_id):
    return (field_varint(1, 2) + field_varint(2, 0) + field_varint(3, zigzag(call_id))
            + field_bytes(4, client_id) + field_varint(5, zigzag(-1)))


def read_varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def parse(msg):
    """Field number -> list of values (ints or bytes)."""
    fields, i = {}, 0
    while i < len(msg):
        key, i = read_varint(msg, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = read_varint(msg, i)
        elif wire == 2:
            n, i = read_varint(msg, i)
            v, i = msg[i:i + n], i + n
        else:
            raise ValueError("unexpected wire type %d" % wire)
        fields.setdefault(num, []).append(v)
    return fields


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data


def read_frame(sock):
    (n,) = struct.unpack(">I", recv_exact(sock, 4))
    body = recv_exact(sock, n)
    msgs, i = [], 0
    while i < len(body):
        n, i = read_varint(body, i)
        msgs.append(body[i:i + n])
        i += n
    return msgs


def check(header):
    h = parse(header)
    if h.get(2, [0])[0] != 0:
        cls = h.get(4, [b""])[0].decode()
        msg = h.get(5, [b""])[0].decode()
        print("REMOTE %s: %s" % (cls, msg))
        sys.exit(0)
    return h


def main():
    host, port, ident_hex, pw_hex = sys.argv[1:5]
    ident, pw = bytes.fromhex(ident_hex), bytes.fromhex(pw_hex)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"hrpc\x09\x00\xdf")
    sasl_hdr = rpc_header(-33, b"")
    sock.sendall(frame(sasl_hdr, field_varint(2, 1)))  # NEGOTIATE
    msgs = read_frame(sock)
    check(msgs[0])
    sasl = msgs[1]
    auths = parse(sasl).get(4, [])
    auth = next(parse(a) for a in auths if parse(a)[1][0] == b"TOKEN")
    challenge = auth[5][0]
    client = SASLClient(
        host=auth[4][0].decode(),  # serverId "default"
        service=auth.get(3, [b""])[0].decode(),  # protocol ""
        mechanism="DIGEST-MD5",
        username=base64.b64encode(ident).decode(),
        password=base64.b64encode(pw).decode(),
    )
    response = client.process(challenge)
    chosen = field_bytes(1, "TOKEN") + field_bytes(2, "DIGEST-MD5") + field_bytes(3, "") + field_bytes(4, "default")
    sock.sendall(frame(sasl_hdr, field_varint(2, 2) + field_bytes(3, response) + field_bytes(4, chosen)))
    msgs = read_frame(sock)
    check(msgs[0])
    sasl = msgs[1]
    done = parse(sasl)
    assert done[2][0] == 0, "expected SASL SUCCESS"
    client.process(done[3][0])  # verifies rspauth; raises if wrong
    assert client.complete, "pure-sasl did not accept the server's rspauth"

    client_id = b"\x07" * 16
    user = field_bytes(2, field_bytes(1, "pysasl"))
    sock.sendall(frame(rpc_header(-3, client_id), user + field_bytes(3, "test.EchoProtocolPB")))
    method = field_bytes(1, "echo") + field_bytes(2, "test.EchoProtocolPB") + field_varint(3, 1)
    sock.sendall(frame(rpc_header(0, client_id), method, b"hello from pure-sasl"))
    msgs = read_frame(sock)
    h = check(msgs[0])
    payload = msgs[1]
    assert h[1][0] == 0, "response to the wrong call id"
    print("OK " + payload.decode())


if __name__ == "__main__":
    main()
