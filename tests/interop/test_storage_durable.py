#!/usr/bin/python3
"""Integration: the storage plugin on membership quorums, on disk, catching up. Real nodehost
processes with the storage plugin and `data_dir` (LMDB), driven over Gorums streams by grpcio.

Tests:
  test_lone_node_refuses_then_two_of_three_serve  only node 1 of 3 up: WriteNestedQC and
        ReadNestedQC answer UNAVAILABLE "1 of 3 members reachable, majority needs 2" (it must
        not answer alone); `nodehost status` shows the members beside Config; node 2 starts:
        both succeed; node 3 starts later and catches up the key it missed.
  test_acknowledged_writes_survive_killing_every_node  100 acknowledged WriteNestedQC writes
        (sync: always), SIGKILL all three nodes, restart: every key reads back with its value
        through every node, and every node holds all 100 keys (its own disk plus catch-up).
  test_reload_hands_the_open_store_over  SIGHUP with a new plugin build on node 1: the new
        generation serves the same disk store (keys kept, writes go on).
  test_bad_storage_config_is_refused_with_its_position  sync: sometimes / data_dir: "" fail
        --check-config naming file:line:col and the key.
Nothing is asserted about timing; waits are bounded generously. Catch-up times are printed.
"""

import os
import re
import shutil
import signal
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import grpc  # noqa: F401
except ImportError as _e:
    print("SKIP: test_storage_durable needs grpcio for /usr/bin/python3 (%s)" % _e)
    sys.exit(0)

import test_nodehost_interop as ni  # noqa: E402

UNAVAILABLE = 14
CONF = """\
version: 1
peers:
  - {{ id: 1, address: "127.0.0.1:{p1}" }}
  - {{ id: 2, address: "127.0.0.1:{p2}" }}
  - {{ id: 3, address: "127.0.0.1:{p3}" }}
clients: {{ accept: true }}
plugins:
  - name: storage
    path: {plugin}
    config: {{ data_dir: "{data}", sync: {sync} }}
log: {{ level: info, format: text }}
"""


class DiskCluster:
    """Three nodes from one YAML with data_dir; nodes start only when asked."""

    def __init__(self, label, sync="always", plugin=None):
        self.dir = ni.new_tmp(label + "-")
        self.data = os.path.join(self.dir, "data")
        self.state = os.path.join(self.dir, "state")
        os.mkdir(self.state, 0o700)
        self.plugin = plugin or os.path.join(ni.plugin_dir(), "storage.so")
        ports = ni.distinct_free_ports(3)
        self.ports = dict(zip((1, 2, 3), ports))
        self.conf = ni.write_yaml(self.dir, "cluster.yaml", CONF.format(
            p1=ports[0], p2=ports[1], p3=ports[2], plugin=self.plugin, data=self.data,
            sync=sync))
        self.env = ni.base_env()
        self.nodes = {}

    def start(self, i):
        if i in self.nodes:
            self.nodes[i].start()
        else:
            self.nodes[i] = ni.NodeProc(["--config", self.conf, "--id", str(i),
                                         "--state-dir", self.state], self.env,
                                        "durable-node%d" % i, self.dir)
        if not self.nodes[i].wait_log("serving on"):
            raise AssertionError("node %d did not start:\n%s" % (i, self.nodes[i].log_tail()))

    def address(self, i):
        return "127.0.0.1:%d" % self.ports[i]

    def stop(self):
        for n in self.nodes.values():
            if n.alive():
                n.stop()


class DurableTest(ni.Case):

    def setUp(self):
        self.clusters = []

    def tearDown(self):
        super().tearDown()
        for c in self.clusters:
            c.stop()

    def cluster(self, **kw):
        c = DiskCluster(self.id().split(".")[-1], **kw)
        self.clusters.append(c)
        return c

    def wnested(self, w, key, value):
        return w.call("proto.Storage.WriteNestedQC", ni.spb.WriteRequest(Key=key, Value=value))

    def rnested(self, w, key):
        return w.call("proto.Storage.ReadNestedQC", ni.spb.ReadRequest(Key=key))

    def info_keys(self, address):
        try:
            w = ni.Wire(address)
        except ni.WireError:
            return None
        try:
            return ni.ok(w.call("proto.Storage.Info"), ni.spb.InfoResponse).Keys
        finally:
            w.close()

    def test_lone_node_refuses_then_two_of_three_serve(self):
        c = self.cluster()
        c.start(1)
        w1 = self.wire(c.address(1))
        for m in (self.wnested(w1, "k", "v1"), self.rnested(w1, "k")):
            code, text = ni.status_of(m)
            self.assertEqual(code, UNAVAILABLE, text)
            self.assertIn("1 of 3 members reachable, majority needs 2", text)
        st = ni.status(c.address(1))
        self.assertEqual(st["config"], [1])
        self.assertEqual(st.get("members"), [1, 2, 3], st)
        c.start(2)
        for i in (1, 2):
            self.wait_status(c.address(i), lambda s: s["config"] == [1, 2],
                             "node %d sees nodes 1 and 2" % i)
        self.assertFalse(ni.ok(self.wnested(w1, "k", "v1"), ni.spb.WriteResponse) is None)
        r = ni.ok(self.rnested(w1, "k"), ni.spb.ReadResponse)
        self.assertEqual((r.OK, r.Value), (True, "v1"))
        w2 = self.wire(c.address(2))
        r = ni.ok(self.rnested(w2, "k"), ni.spb.ReadResponse)
        self.assertEqual((r.OK, r.Value), (True, "v1"))
        # Node 3 was never up when k was written: it pulls it from its peers when they join.
        t0 = time.monotonic()
        c.start(3)
        w3 = self.wire(c.address(3))
        got = ni.wait_for(lambda: ni.ok(w3.call("proto.Storage.ReadRPC",
                                                ni.spb.ReadRequest(Key="k")),
                                        ni.spb.ReadResponse).Value == "v1", 20)
        self.assertTrue(got, "node 3 did not catch up:\n" + c.nodes[3].log_tail())
        sys.stderr.write("[durable] node 3 caught up %.2f s after its start\n"
                         % (time.monotonic() - t0))

    def test_acknowledged_writes_survive_killing_every_node(self):
        c = self.cluster(sync="always")
        for i in (1, 2, 3):
            c.start(i)
        for i in (1, 2, 3):
            self.wait_status(c.address(i), lambda s: s["config"] == [1, 2, 3],
                             "node %d sees all" % i)
        w = {i: self.wire(c.address(i)) for i in (1, 2, 3)}
        acked = {}
        for n in range(100):
            key, value = "key%03d" % n, "value-%d" % n
            m = self.wnested(w[1 + n % 3], key, value)
            if ni.status_of(m)[0] == 0:
                acked[key] = value
        self.assertEqual(len(acked), 100)
        for i in (1, 2, 3):
            c.nodes[i].send_signal(signal.SIGKILL)
        for i in (1, 2, 3):
            c.nodes[i].wait(10)
            c.nodes[i]._forget()
        for x in w.values():
            x.close()
        t0 = time.monotonic()
        for i in (1, 2, 3):
            c.start(i)
        for i in (1, 2, 3):
            self.wait_status(c.address(i), lambda s: s["config"] == [1, 2, 3],
                             "node %d sees all after the restart" % i)
        w = {i: self.wire(c.address(i)) for i in (1, 2, 3)}
        for key, value in acked.items():
            for i in (1, 2, 3):
                r = ni.ok(self.rnested(w[i], key), ni.spb.ReadResponse)
                self.assertEqual((r.OK, r.Value), (True, value), "%s via node %d" % (key, i))
        full = ni.wait_for(lambda: all(self.info_keys(c.address(i)) == 100 for i in (1, 2, 3)),
                           20)
        self.assertTrue(full, {i: self.info_keys(c.address(i)) for i in (1, 2, 3)})
        sys.stderr.write("[durable] all 100 keys on all 3 nodes %.2f s after the restart\n"
                         % (time.monotonic() - t0))

    def test_reload_hands_the_open_store_over(self):
        plugdir = ni.new_tmp("plug-")
        plugin = os.path.join(plugdir, "storage.so")
        shutil.copy(os.path.join(ni.plugin_dir(), "storage.so"), plugin)
        c = self.cluster(sync="batch", plugin=plugin)
        for i in (1, 2):
            c.start(i)
        self.wait_status(c.address(1), lambda s: s["config"] == [1, 2], "node 1 sees node 2")
        w1 = self.wire(c.address(1))
        for n in range(20):
            ni.ok(self.wnested(w1, "r%02d" % n, "x%d" % n), ni.spb.WriteResponse)
        tmp = plugin + ".new"
        shutil.copy(ni.tplugin("storage_r2"), tmp)
        os.rename(tmp, plugin)
        c.nodes[1].send_signal(signal.SIGHUP)
        def on_r2():
            i = ni.ok(w1.call("proto.Storage.Info"), ni.spb.InfoResponse)
            return (i.Version, i.Generation, i.Keys) == ("1.0.0+r2", 2, 20)
        self.assertTrue(ni.wait_for(on_r2, 20), c.nodes[1].log_tail())
        # The old generation is finished and unloaded (its code unmapped, outside sanitizer
        # builds): the new one serves the store with its own code and writer.
        self.assertTrue(c.nodes[1].wait_log("generation 1 finished and unloaded"),
                        c.nodes[1].log_tail())
        ni.ok(self.wnested(w1, "after", "reload"), ni.spb.WriteResponse)
        r = ni.ok(w1.call("proto.Storage.ReadRPC", ni.spb.ReadRequest(Key="after")),
                  ni.spb.ReadResponse)
        self.assertEqual(r.Value, "reload")
        r = ni.ok(self.rnested(w1, "r07"), ni.spb.ReadResponse)
        self.assertEqual(r.Value, "x7")
        self.assertNotIn("cannot open", c.nodes[1].log())

    def test_bad_storage_config_is_refused_with_its_position(self):
        d = ni.new_tmp("badstorage-")
        for cfg, want in (('{ sync: sometimes }', r"sync: must be always, batch or none"),
                          ('{ data_dir: "" }', r"data_dir: must be a directory path")):
            path = ni.write_yaml(d, "bad.yaml", """\
version: 1
node: { id: 1, listen: "127.0.0.1:7999" }
plugins:
  - name: storage
    path: %s
    config: %s
""" % (os.path.join(ni.plugin_dir(), "storage.so"), cfg))
            r = ni.run_nodehost(["--config", path, "--check-config"])
            self.assertNotEqual(r.returncode, 0)
            self.assertRegex(r.stderr, r"bad\.yaml:6:\d+: .*" + want)


def setUpModule():
    ni.setUpModule()


def tearDownModule():
    ni.tearDownModule()


if __name__ == "__main__":
    ni.run_main("test_storage_durable", 240.0)
