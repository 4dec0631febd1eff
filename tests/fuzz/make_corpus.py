#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (run once; the outputs are checked in).

    python3 tests/fuzz/make_corpus.py

The protobuf encodings are written by hand here (no protobuf library needed), so edge cases the
encoders would never produce (repeated fields, unknown fields, overlong varints, truncation,
bad UTF-8, NUL bytes) can be seeds too. The config corpus copies the YAML files of conf/ and
tests/conf/ (good and bad).
"""
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def tag(num, wt):
    return varint(num << 3 | wt)


def vfield(num, v):
    return tag(num, 0) + varint(v)


def lfield(num, b):
    if isinstance(b, str):
        b = b.encode()
    return tag(num, 2) + varint(len(b)) + b


def write(name, files):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for fname, data in files.items():
        with open(os.path.join(d, fname), "wb") as f:
            f.write(data)


def envelope():
    def entry(k, v):
        return lfield(4, lfield(1, k) + lfield(2, v))

    def status(code, msg, details=b""):
        return lfield(3, vfield(1, code) + lfield(2, msg) + details)

    any_detail = lfield(3, lfield(1, "type.googleapis.com/x.Y") + lfield(2, b"\x08\x01"))
    return {
        "empty": b"",
        "request": vfield(1, 1) + lfield(2, "storage.Storage.Read") + lfield(5, b"\x0a\x03key"),
        "request-md": vfield(1, 42) + lfield(2, "proto.Hello.SayHello") + entry("trace-id", "abc")
        + entry("k", "") + lfield(5, b"\x0a\x05world"),
        "server-bit": vfield(1, (1 << 63) | 7) + lfield(2, "cb.Client.Ping"),
        "error-reply": vfield(1, 3) + status(5, "not found"),
        "error-neg-code": vfield(1, 4) + status(-1, "negative"),
        "status-details": vfield(1, 5) + status(13, "internal", any_detail),
        "status-empty": vfield(1, 6) + lfield(3, b""),
        "status-nul": vfield(1, 7) + status(2, "a\x00b"),
        "repeated-fields": vfield(1, 1) + vfield(1, 2) + lfield(2, "a.B.C") + lfield(2, "d.E.F")
        + lfield(5, b"x") + lfield(5, b"yz") + status(1, "m") + lfield(3, vfield(1, 9)),
        "unknown-fields": vfield(1, 8) + vfield(9, 1) + tag(10, 1) + b"\0" * 8 + tag(11, 5)
        + b"\0" * 4 + lfield(12, b"junk") + lfield(2, "x.Y.Z"),
        "overlong-varint": tag(1, 0) + b"\xff" * 9 + b"\x7f",
        "tag-5-bytes": b"\x88\x80\x80\x80\x00" + varint(1),
        "truncated": vfield(1, 1) + tag(2, 2) + varint(10) + b"abc",
        "bad-utf8-method": vfield(1, 1) + lfield(2, b"\xc0\xafx"),
        "nul-in-key": vfield(1, 1) + entry("a\x00b", "v"),
        "field-zero": b"\x00\x01",
        "group": tag(6, 3) + tag(6, 4),
        "wrong-wiretype": tag(2, 0) + varint(1),
        "big-payload": vfield(1, 1) + lfield(5, bytes(range(256)) * 4),
    }


def wire_check():
    # The first byte selects the descriptor: 0 StatusResponse, 1 PluginStatus, 2 ReloadResponse,
    # 3 StatusRequest, 4 fuzz.Node (recursive: child = 1, name = 2, repeated kids = 3).
    plugin = (lfield(1, "storage") + lfield(2, "1.0.0") + lfield(3, "/x/storage.so")
              + vfield(4, 1) + vfield(5, 1700000000000000000) + lfield(6, "proto.Storage.Read")
              + lfield(6, "proto.Storage.Write") + lfield(7, "ab" * 32) + vfield(8, 0))
    status = (vfield(1, 1) + lfield(2, "127.0.0.1:7001") + lfield(3, "0.1.0")
              + lfield(4, b"\x01\x02\x03") + lfield(6, plugin) + vfield(7, 12345)
              + lfield(8, b"\x02\x03") + vfield(9, 2) + lfield(11, "storage: bad"))

    def node(depth, name="n"):
        m = lfield(2, name)
        for _ in range(depth):
            m = lfield(1, m)
        return m

    return {
        "status-response": b"\x00" + status,
        "plugin-status": b"\x01" + plugin,
        "reload-response": b"\x02" + vfield(1, 3) + vfield(2, 1) + vfield(3, 99)
        + lfield(4, "storage 1.0.0 -> 1.0.1 (gen 2)") + lfield(5, plugin),
        "status-request-empty": b"\x03",
        "utf8-ok": b"\x00" + lfield(2, "h\u00e9llo \u4e16\u754c \U0001f600"),
        "utf8-surrogate": b"\x00" + lfield(2, b"\xed\xa0\x80"),
        "utf8-overlong": b"\x01" + lfield(1, b"\xe0\x80\xaf"),
        "utf8-above-max": b"\x01" + lfield(1, b"\xf4\x90\x80\x80"),
        "utf8-truncated": b"\x02" + lfield(4, b"ok\xe4\xb8"),
        "nul-in-string": b"\x01" + lfield(1, b"acct\x00evil"),
        "nested-bad": b"\x00" + lfield(6, lfield(6, b"\xff")),
        "string-as-varint": b"\x00" + vfield(2, 5),
        "unknown-fields": b"\x00" + vfield(100, 1) + lfield(101, b"\xff\xfe") + tag(102, 5)
        + b"1234",
        "truncated": b"\x00" + tag(2, 2) + varint(50) + b"abc",
        "node-deep-99": b"\x04" + node(99),
        "node-deep-101": b"\x04" + node(101),
        "node-kids": b"\x04" + lfield(3, node(2, "a")) + lfield(3, node(1, b"\xff")),
    }


def metadata():
    return {
        "empty": b"",
        "id": b"gorums-node-id:3",
        "id-zero": b"gorums-node-id:0",
        "id-leading-zeros": b"gorums-node-id:0007",
        "id-max": b"gorums-node-id:4294967295",
        "id-overflow": b"gorums-node-id:4294967296",
        "id-sign": b"gorums-node-id:+5",
        "id-space": b"gorums-node-id: 5",
        "id-hex": b"gorums-node-id:0x10",
        "id-empty": b"gorums-node-id:",
        "first-wins": b"user-agent:grpc-go\ngorums-node-id:2\ngorums-node-id:3",
        "regular": b"user-agent:grpc-c/1.51\ncontent-type:application/grpc\n:path:/x",
        "upper-key": b"Gorums-Node-Id:4",
        "client-first": b"gorums-node-id:abc\ngorums-node-id:5",
        "key-nul": b"gorums-node-id\x00:1\nbad key:v",
    }


def config():
    files = {}
    for d, prefix in ((os.path.join(ROOT, "conf"), "conf-"),
                      (os.path.join(ROOT, "tests", "conf", "good"), "good-"),
                      (os.path.join(ROOT, "tests", "conf", "bad"), "bad-")):
        for name in sorted(os.listdir(d)):
            if name.endswith(".yaml"):
                with open(os.path.join(d, name), "rb") as f:
                    files[prefix + name] = f.read()
    files["env-var"] = b"version: 1\nnode: { id: 1, listen: \"127.0.0.1:${NH_FUZZ_VAR}\" }\n"
    files["flow-style"] = (b"version: 1\nnode: {id: 1}\npeers: [ {id: 1, address: 'h:1'},"
                           b" {id: 2, address: \"[::1]:2\"} ]\nlimits: {max_message_size: 1Mi}\n")
    files["anchor-refused"] = b"version: 1\nnode: &n {id: 1, listen: 'h:1'}\nx: *n\n"
    return files


if __name__ == "__main__":
    for d in ("envelope", "wire_check", "metadata", "config"):
        shutil.rmtree(os.path.join(HERE, "corpus", d), ignore_errors=True)
    write("envelope", envelope())
    write("wire_check", wire_check())
    write("metadata", metadata())
    write("config", config())
