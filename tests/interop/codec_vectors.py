#!/usr/bin/python3
"""Test vectors for the stream.Message codec, produced by an independent encoder.

Builds stream.Message with Debian's Python protobuf (run with /usr/bin/python3), compiling
sdk/proto/stream.proto and google/rpc/status.proto with protoc into a temporary directory,
and prints one vector per line: `<name> <hex>` (`<name> -` for zero bytes).

The logical messages are fixed here and hard-coded again in tests/unit/test_codec.c, which
encodes its own copy and compares bytes. Name prefixes tell the C test what to do:
  unknown_*  valid `full` bytes with unknown fields appended (fields 6, 7 and 15);
  garbage_*  bytes that Python's ParseFromString rejects (checked here; dropped otherwise).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import warnings

FULL_SEQ = 300
FULL_METHOD = "pkg.Svc.Method"
FULL_STATUS_CODE = 5
FULL_STATUS_MESSAGE = "not found"
FULL_ENTRIES = [("trace-id", "abc123"), ("empty-value", "")]
FULL_PAYLOAD = bytes([0x0A, 0x05]) + b"hello" + bytes([0x00, 0xFF, 0x80])
DETAIL_TYPE_URL = "type.googleapis.com/google.protobuf.StringValue"
DETAIL_VALUE = bytes([0x0A, 0x03]) + b"why"
BIT63_SEQ = 0x8000000000000005
LARGE_SEQ = 7
LARGE_METHOD = "pkg.Svc.Large"
LARGE_LEN = 100 * 1024
UTF8_SEQ = 42
UTF8_METHOD = "pkg.S\u00e9rvice.M\u00e9thod\u2713\u65e5\u672c"
MANY_SEQ = 9
MANY_METHOD = "pkg.Svc.Many"
MANY_COUNT = 50

# Unknown fields: 6 varint 150, 7 length-delimited "abc", 15 fixed64 0x0102030405060708.
UNKNOWN_VARINT = bytes([0x30, 0x96, 0x01])
UNKNOWN_LEN = bytes([0x3A, 0x03]) + b"abc"
UNKNOWN_FIXED64 = bytes([0x79, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01])

GARBAGE = [
    ("garbage_truncated_varint", bytes([0x08, 0x80])),
    ("garbage_truncated_varint_long", bytes([0x08] + [0xFF] * 9)),
    ("garbage_truncated_length_delimited", bytes([0x2A, 0x0A]) + b"abc"),
    ("garbage_truncated_length_prefix", bytes([0x12, 0x80])),
    ("garbage_wrong_wire_type_field2", bytes([0x10, 0x05])),
    ("garbage_wrong_wire_type_field2_fixed32", bytes([0x15, 0, 0, 0, 0])),
    ("garbage_wire_type_7", bytes([0x3F, 0x00])),
    ("garbage_wire_type_6", bytes([0x3E, 0x00])),
    ("garbage_field_number_0", bytes([0x00, 0x00])),
    ("garbage_field_number_0_len", bytes([0x02, 0x00])),
    ("garbage_length_beyond_end", bytes([0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]) + b"abc"),
    ("garbage_length_one_past_end", bytes([0x2A, 0x04]) + b"abc"),
    ("garbage_status_truncated_inside", bytes([0x1A, 0x02, 0x08, 0x80])),
    ("garbage_entry_wire_type_7", bytes([0x22, 0x01, 0x0F])),
    ("garbage_tag_only", bytes([0x12])),
]


def source_dir():
    env = os.environ.get("NH_SOURCE_DIR")
    if env:
        return env
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_modules(tmp):
    proto_dir = os.path.join(source_dir(), "sdk", "proto")
    protoc = shutil.which("protoc") or "/usr/bin/protoc"
    subprocess.run([protoc, "--python_out=" + tmp, "-I" + proto_dir, "-I/usr/include",
                    "stream.proto", "google/rpc/status.proto"], check=True)
    sys.path.insert(0, tmp)
    import stream_pb2  # noqa: E402  (generated above)
    return stream_pb2


def full_message(pb, with_details=False):
    m = pb.Message()
    m.message_seq_no = FULL_SEQ
    m.method = FULL_METHOD
    m.status.code = FULL_STATUS_CODE
    m.status.message = FULL_STATUS_MESSAGE
    if with_details:
        d = m.status.details.add()
        d.type_url = DETAIL_TYPE_URL
        d.value = DETAIL_VALUE
    for k, v in FULL_ENTRIES:
        e = m.entry.add()
        e.key = k
        e.value = v
    m.payload = FULL_PAYLOAD
    return m


def large_payload():
    return bytes((i * 7 + 3) & 0xFF for i in range(LARGE_LEN))


def many_entries():
    return [("key-%02d" % i, "v" * i) for i in range(MANY_COUNT)]


def rejects(pb, data):
    """True when ParseFromString refuses data. The C++ backend does not raise for a tag with
    field number 0 (it reads it as an end-group tag); it warns "Not all data was converted"
    instead, while the pure-Python backend raises. Both count as a rejection."""
    m = pb.Message()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            m.ParseFromString(data)
        except Exception:
            return True
    return any(issubclass(w.category, RuntimeWarning) for w in caught)


def main():
    tmp = tempfile.mkdtemp(prefix="nh-codec-vectors-")
    try:
        pb = load_modules(tmp)
        vectors = []

        vectors.append(("full", full_message(pb).SerializeToString()))
        vectors.append(("status_with_details", full_message(pb, True).SerializeToString()))
        vectors.append(("empty", pb.Message().SerializeToString()))

        m = pb.Message()
        m.message_seq_no = BIT63_SEQ
        vectors.append(("seq_bit63", m.SerializeToString()))

        m = pb.Message()
        m.status.SetInParent()
        vectors.append(("status_code0", m.SerializeToString()))

        m = pb.Message()
        m.message_seq_no = LARGE_SEQ
        m.method = LARGE_METHOD
        m.payload = large_payload()
        vectors.append(("large_payload", m.SerializeToString()))

        m = pb.Message()
        m.message_seq_no = UTF8_SEQ
        m.method = UTF8_METHOD
        vectors.append(("utf8_method", m.SerializeToString()))

        m = pb.Message()
        m.message_seq_no = MANY_SEQ
        m.method = MANY_METHOD
        for k, v in many_entries():
            e = m.entry.add()
            e.key = k
            e.value = v
        vectors.append(("many_entries", m.SerializeToString()))

        full = full_message(pb).SerializeToString()
        unknown = [
            ("unknown_varint", full + UNKNOWN_VARINT),
            ("unknown_length_delimited", full + UNKNOWN_LEN),
            ("unknown_fixed64", full + UNKNOWN_FIXED64),
            ("unknown_all", full + UNKNOWN_VARINT + UNKNOWN_LEN + UNKNOWN_FIXED64),
        ]
        for name, data in unknown:
            m = pb.Message()
            m.ParseFromString(data)  # must parse
            if m.SerializeToString() != data:
                raise SystemExit("python did not preserve unknown fields in " + name)
            vectors.append((name, data))

        # Sanity checks of the fixed expectations the C test relies on.
        if vectors[2][1] != b"":
            raise SystemExit("empty message is not 0 bytes")
        if dict(vectors)["status_code0"] != bytes([0x1A, 0x00]):
            raise SystemExit("status_code0 is not 1a 00")

        dropped = []
        for name, data in GARBAGE:
            if rejects(pb, data):
                vectors.append((name, data))
            else:
                dropped.append(name)
        for name in dropped:
            print("dropped (python accepts): " + name, file=sys.stderr)

        for name, data in vectors:
            print("%s %s" % (name, data.hex() if data else "-"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
