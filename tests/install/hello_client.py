#!/usr/bin/python3
"""Calls the hello plugin of a running nodehost node with Debian's grpcio, the way a Gorums
client does: one /stream.Gorums/NodeStream call carrying stream.Message envelopes.

  hello_client.py ADDRESS NAME GREETING NODE_ID

Sends hello.Greeter.SayHello and hello.Greeter.SayHelloQC with HelloRequest{name = NAME} and
checks that each reply is "<GREETING>, <NAME>! (from node <NODE_ID>)". HelloRequest and HelloReply
are encoded by hand (each is one string field, number 1). Exit 0 when both replies are right, 1
with a message otherwise. Used by tests/install/test_install.sh (NH_SOURCE_DIR must be set, or
this file must be in the source tree: it reuses tests/interop/nh_interop_util.py).
"""

import os
import queue
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
_here = os.path.dirname(os.path.abspath(__file__))
_src = os.environ.get("NH_SOURCE_DIR") or os.path.dirname(os.path.dirname(_here))
sys.path.insert(0, os.path.join(_src, "tests", "interop"))

try:
    import grpc  # noqa: E402
except ImportError as e:
    print("hello_client: grpcio is missing (%s); install python3-grpcio" % e, file=sys.stderr)
    sys.exit(1)

import nh_interop_util as nu  # noqa: E402


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(buf, i):
    n = shift = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def encode_string_field1(text):
    """A message whose only field is `string <x> = 1` (HelloRequest)."""
    data = text.encode("utf-8")
    return b"\x0a" + varint(len(data)) + data


def decode_string_field1(buf):
    """Field 1 (length-delimited) of a message such as HelloReply; other fields are skipped."""
    i, value = 0, ""
    while i < len(buf):
        key, i = read_varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, i = read_varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = read_varint(buf, i)
            if i + n > len(buf):
                raise ValueError("truncated field %d" % field)
            if field == 1:
                value = buf[i:i + n].decode("utf-8")
            i += n
        else:
            raise ValueError("unexpected wire type %d" % wire)
    return value


def main(argv):
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    address, name, greeting, node_id = argv[1:]
    expected = "%s, %s! (from node %s)" % (greeting, name, node_id)
    pb = nu.load_stream_pb2()
    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=10)
    except grpc.FutureTimeoutError:
        print("hello_client: cannot connect to %s within 10 s" % address, file=sys.stderr)
        return 1
    stream = nu.NodeStream(channel, deadline=30.0)
    ok = True
    try:
        for seq, method in ((1, "hello.Greeter.SayHello"), (2, "hello.Greeter.SayHelloQC")):
            stream.send(nu.make_message(pb, seq, method, encode_string_field1(name)))
            try:
                reply = stream.recv(timeout=10.0)
            except (queue.Empty, nu.StreamEnded) as e:
                print("hello_client: %s: no reply: %s" % (method, e), file=sys.stderr)
                return 1
            if reply.message_seq_no != seq or reply.method != method:
                print("hello_client: %s: reply for seq %d method %r, expected seq %d" %
                      (method, reply.message_seq_no, reply.method, seq), file=sys.stderr)
                ok = False
                continue
            if reply.HasField("status") and reply.status.code != 0:
                print("hello_client: %s: error status %d %r" %
                      (method, reply.status.code, reply.status.message), file=sys.stderr)
                ok = False
                continue
            text = decode_string_field1(reply.payload)
            if text != expected or greeting not in text or name not in text:
                print("hello_client: %s: reply %r, expected %r" % (method, text, expected),
                      file=sys.stderr)
                ok = False
                continue
            print("%s -> %r" % (method, text))
        stream.close_send()
        try:
            code, details = stream.wait_end(10.0)
            if code != grpc.StatusCode.OK:
                print("hello_client: stream ended with %s %r" % (code, details), file=sys.stderr)
                ok = False
        except queue.Empty:
            print("hello_client: the server did not end the stream after the half-close",
                  file=sys.stderr)
            ok = False
    finally:
        stream.cancel()
        channel.close()
        nu.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
