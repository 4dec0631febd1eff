#!/usr/bin/python3
"""Integration: regression tests of three `nodehost` defects, with real processes, real YAML
files, the real storage plugin and Debian's grpcio on the wire.

Uses the processes, wires and helpers of test_nodehost_interop.py.

Themes:
  ManyClientPeersTest   24 client peers (gorums-node-id 0) on one node: the node stays up (also
                        under ASan) and every "ClientConfig is now [...]" log line lists real
                        client IDs only, with " ..." when more than 16 are connected (the log
                        used to read past its 16-slot array).
  BusyAddressTest       a second node on the listen address of a running one exits non-zero
                        naming the address ("address already in use"); the first keeps serving
                        (gRPC's default SO_REUSEPORT used to let both bind and split clients).
  StorageKeyTest        string fields are checked on the wire before protobuf-c decodes them
                        for a plugin: a key with a NUL ("acct\\0evil", which protobuf-c would
                        hand over as "acct") and keys that are not valid UTF-8 get
                        INVALID_ARGUMENT naming the field; "acct" keeps its value; the node
                        keeps serving.

Run through ctest (sets NH_SOURCE_DIR and NH_BINARY_DIR), or by hand:
  NH_BINARY_DIR=<build> /usr/bin/python3 tests/interop/test_nodehost_hardening.py -v
"""

import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nh_interop_util as nu  # noqa: E402
import test_nodehost_interop as ni  # noqa: E402  (processes, wires, helpers)

WATCHDOG = 240.0  # the whole file, below ctest's 300 s (normal run: a few seconds)
INVALID_ARGUMENT = 3
CLIENT_PEERS = 24  # more than the 16 IDs the ClientConfig log line shows

STORAGE_NODE = """\
version: 1
node: {{ id: 1, listen: "127.0.0.1:{port}" }}
clients: {{ accept: true }}
plugins:
  - name: storage
    path: {plugin}
"""


def setUpModule():
    ni.setUpModule()


def tearDownModule():
    ni.tearDownModule()


class NodeCase(ni.Case):
    """A single storage node per test."""

    def setUp(self):
        self.dir = ni.new_tmp("hardening-")
        self.state = os.path.join(self.dir, "state")
        os.mkdir(self.state, 0o700)
        # Every log line counts here (the 17th-member lines): no rate limit on repeated lines.
        self.env = ni.base_env(NH_STATE_DIR=self.state, NH_LOG_BURST=0)
        self.nodes = []

    def config_for(self, port, name="node"):
        return ni.write_yaml(self.dir, "%s-%d.yaml" % (name, port), STORAGE_NODE.format(
            port=port, plugin=os.path.join(ni.plugin_dir(), "storage.so")))

    def start_node(self, label="node"):
        return self.start_single(lambda port: (["--config", self.config_for(port, label)],
                                               self.env), label, self.dir)


# ---- 1. more client peers than the log line shows -------------------------------------------

CLIENT_LINE = re.compile(r"ClientConfig is now \[([^\]\n]*)\] \((\d+)\)")


class ManyClientPeersTest(NodeCase):

    def test_24_client_peers_log_real_ids_only_and_the_node_stays_up(self):
        node = self.start_node("many")
        peers = []
        for _ in range(CLIENT_PEERS):
            w = self.wire(node.address, metadata=[(ni.NODE_ID_KEY, "0")])
            # One call, so that the node has accepted and classified the stream.
            ni.ok(w.call("proto.Storage.ReadRPC", ni.spb.ReadRequest(Key="x")))
            peers.append(w)
        st = self.wait_status(node.address,
                              lambda s: len(s["client_config"]) == CLIENT_PEERS,
                              "%d client peers in ClientConfig" % CLIENT_PEERS)
        ids = st["client_config"]
        self.assertTrue(all(i >= ni.FIRST_CLIENT_ID for i in ids), ids)
        self.assertTrue(node.wait_log_re(r"ClientConfig is now \[[^\]\n]*\] \(%d\)"
                                         % CLIENT_PEERS),
                        "no ClientConfig line with %d members%s" % (CLIENT_PEERS, self.logs()))
        # Leaving: the ClientConfig shrinks back below 16 (more lines, the node still up).
        for w in peers:
            w.close()
        self.wait_status(node.address, lambda s: s["client_config"] == [],
                         "the client peers leave ClientConfig")
        self.assertTrue(node.alive(), "the node died%s" % self.logs())
        ni.ok(self.wire(node.address).call("proto.Storage.ReadRPC", ni.spb.ReadRequest(Key="x")))

        lines = CLIENT_LINE.findall(node.log())
        sizes = [int(n) for _, n in lines]
        self.assertIn(CLIENT_PEERS, sizes, self.logs())
        self.assertIn(0, sizes, self.logs())
        for shown, n in lines:
            n = int(n)
            listed = shown[:-len(" ...")] if shown.endswith(" ...") else shown
            got = [int(x) for x in listed.split()] if listed else []
            where = "line [%s] (%d)%s" % (shown, n, self.logs())
            self.assertTrue(all(i >= ni.FIRST_CLIENT_ID for i in got),
                            "an ID that is not a client peer's: " + where)
            self.assertEqual(len(set(got)), len(got), "an ID listed twice: " + where)
            self.assertLessEqual(len(got), min(n, 16), where)
            if n > 16:
                self.assertTrue(shown.endswith(" ..."), "no ' ...' with %d members: %s"
                                % (n, where))
            else:
                self.assertFalse(shown.endswith(" ..."), where)
                self.assertEqual(len(got), n, where)
        self.assertStopped(node)


# ---- 2. a listen address already taken ------------------------------------------------------

class BusyAddressTest(NodeCase):

    def test_second_node_on_a_busy_address_fails_naming_it_and_the_first_keeps_serving(self):
        first = self.start_node("first")
        w = self.wire(first.address)
        ni.ok(w.call("proto.Storage.WriteRPC", ni.write_req("busy", "first", 1)))
        port = int(first.address.rsplit(":", 1)[1])
        second = ni.NodeProc(["--config", self.config_for(port, "second")], self.env, "second",
                             self.dir)
        self.addCleanup(second.kill)
        self.nodes = [first, second]
        rc = second.wait(ni.STOP_TIMEOUT)
        if rc is None:
            self.fail("the second node on %s kept running (both bound the port)%s"
                      % (first.address, self.logs()))
        self.assertNotEqual(rc, 0, self.logs())
        self.assertIn("cannot listen on %s: address already in use" % first.address,
                      second.log(), self.logs())
        self.assertNotIn("serving on", second.log())
        # The first node is untouched: status, the same stream, a new stream.
        self.assertTrue(first.alive(), self.logs())
        st = ni.status(first.address)
        self.assertIsNotNone(st, self.logs())
        self.assertEqual(st["node_id"], 1)
        r = ni.ok(w.call("proto.Storage.ReadRPC", ni.spb.ReadRequest(Key="busy")),
                  ni.spb.ReadResponse)
        self.assertEqual((r.OK, r.Value), (True, "first"))
        for _ in range(4):  # with a shared port, some of these would reach nobody's data
            r = ni.ok(self.wire(first.address).call("proto.Storage.ReadRPC",
                                                    ni.spb.ReadRequest(Key="busy")),
                      ni.spb.ReadResponse)
            self.assertEqual((r.OK, r.Value), (True, "first"))
        self.assertStopped(first)


# ---- 3. keys that alias -----------------------------------------------------------------------

def raw_write(key_bytes, value, seconds):
    """A WriteRequest whose Key field holds key_bytes as they are (Python's protobuf refuses to
    encode invalid UTF-8)."""
    rest = ni.write_req("", value, seconds).SerializeToString()  # Key "" is not encoded
    return b"\x0a" + bytes([len(key_bytes)]) + key_bytes + rest


class StorageKeyTest(NodeCase):

    def assertInvalid(self, reply, text):
        code, msg = ni.status_of(reply)
        self.assertEqual((code, msg), (INVALID_ARGUMENT, text))
        self.assertEqual(reply.payload, b"")

    def read(self, w, key):
        r = ni.ok(w.call("proto.Storage.ReadRPC", ni.spb.ReadRequest(Key=key)),
                  ni.spb.ReadResponse)
        return (r.OK, r.Value)

    def test_nul_and_invalid_utf8_keys_are_refused_and_alias_nothing(self):
        node = self.start_node("keys")
        w = self.wire(node.address)
        r = ni.ok(w.call("proto.Storage.WriteRPC", ni.write_req("acct", "mine", 10)),
                  ni.spb.WriteResponse)
        self.assertTrue(r.New)
        nul = "proto.WriteRequest.Key: string field contains a NUL byte (not supported)"
        utf8 = "proto.WriteRequest.Key: string field is not valid UTF-8"
        # A newer write to "acct\0evil" must not overwrite "acct".
        self.assertInvalid(w.call("proto.Storage.WriteRPC",
                                  ni.write_req("acct\0evil", "evil", 20)), nul)
        self.assertInvalid(w.call("proto.Storage.WriteQC",
                                  ni.write_req("acct\0", "evil", 21)), nul)
        self.assertEqual(self.read(w, "acct"), (True, "mine"))
        # Reads too, and a NUL in the value rather than the key.
        self.assertInvalid(w.call("proto.Storage.ReadRPC", ni.spb.ReadRequest(Key="acct\0x")),
                           "proto.ReadRequest.Key: string field contains a NUL byte "
                           "(not supported)")
        self.assertInvalid(w.call("proto.Storage.WriteRPC", ni.write_req("v", "a\0b", 22)),
                           "proto.WriteRequest.Value: string field contains a NUL byte "
                           "(not supported)")
        self.assertEqual(self.read(w, "v"), (False, ""))
        # Invalid UTF-8 keys: a lone byte, an overlong "/", a surrogate, beyond U+10FFFF.
        for key in (b"acct\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                    b"acct\xe2\x82"):
            with self.subTest(key=key):
                self.assertInvalid(w.call("proto.Storage.WriteRPC", raw_write(key, "bad", 30)),
                                   utf8)
        # Valid UTF-8 keys are fine, and the node keeps serving on this stream and others.
        key = "\u043a\u043b\u044e\u0447 \U0001f511"
        ni.ok(w.call("proto.Storage.WriteRPC", ni.write_req(key, "utf8", 40)))
        self.assertEqual(self.read(w, key), (True, "utf8"))
        self.assertEqual(self.read(self.wire(node.address), "acct"), (True, "mine"))
        self.assertTrue(node.alive(), self.logs())
        self.assertStopped(node)


# ---- main --------------------------------------------------------------------------------------

def main():
    ni.run_main("test_nodehost_hardening", WATCHDOG)


if __name__ == "__main__":
    main()
