#!/usr/bin/python3
"""Integration: how fast a 3-node `nodehost` cluster notices peers that die, stall or come back.

Real nodehost processes (conf/cluster-3.yaml, or a copy with a `keepalive` section) on free
loopback ports; Config is read with `nodehost status ADDR --json`.

Themes:
  RejoinTest      SIGKILL node 3, keep it down long enough for its peers' reconnect backoff to
                  grow, restart it: nodes 1 and 2 list 3 in Config, and node 3 lists 1 and 2,
                  soon after the restart (the peers redial a known peer as soon as its stream
                  arrives instead of waiting for their backoff).
  PartitionTest   SIGSTOP node 3: keepalive makes nodes 1 and 2 drop it from Config (default
                  keepalive, then a faster one from the YAML); SIGCONT: it comes back into both
                  Configs and lists 1 and 2 again. A reload that changes `keepalive` is
                  refused (restart needed) and changes nothing.

The measured times are printed (stderr); the bounds are generous (2-core shared machine) and
scaled up for sanitizer builds.

Run through ctest (sets NH_SOURCE_DIR and NH_BINARY_DIR), or by hand:
  NH_BINARY_DIR=<build> /usr/bin/python3 tests/interop/test_nodehost_liveness.py -v
"""

import os
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nh_interop_util as nu  # noqa: E402
import test_nodehost_interop as ni  # noqa: E402  (processes and helpers)

WATCHDOG = 240.0  # the whole file, below ctest's 300 s (normal run: about 30 s)
REJOIN_BOUND = 3.0 * ni.SCALE     # restart -> full Config on every node
DETECT_BOUND = 10.0 * ni.SCALE    # SIGSTOP -> the stopped node leaves both peers' Config
RETURN_BOUND = 10.0 * ni.SCALE    # SIGCONT -> full Config on every node


def setUpModule():
    ni.setUpModule()


def tearDownModule():
    ni.tearDownModule()


def log(msg):
    sys.stderr.write("[liveness] %s\n" % msg)
    sys.stderr.flush()


def config_of(address, timeout_ms=1000):
    st = ni.status(address, timeout_ms=timeout_ms)
    return None if st is None else st["config"]


class Cluster:
    """Three nodes from one YAML file (the nodes pick their identity with --id N), on free
    ports. extra is appended to conf/cluster-3.yaml."""

    def __init__(self, label, extra=""):
        self.dir = ni.new_tmp(label + "-")
        self.state = os.path.join(self.dir, "state")
        os.mkdir(self.state, 0o700)
        with open(ni.conf_path("cluster-3.yaml")) as f:
            text = f.read()
        self.path = ni.write_yaml(self.dir, "cluster.yaml", text + extra)
        last = ""
        for attempt in range(3):  # a free port may be taken meanwhile: retry with new ones
            ports = ni.distinct_free_ports(3)
            self.ports = dict(zip((1, 2, 3), ports))
            env = ni.base_env(NH_PLUGIN_DIR=ni.plugin_dir(), NH_STATE_DIR=self.state,
                              NH_PORT_1=ports[0], NH_PORT_2=ports[1], NH_PORT_3=ports[2])
            self.nodes = {i: ni.NodeProc(["--config", self.path, "--id", str(i)], env,
                                         "%s-node%d-try%d" % (label, i, attempt), self.dir)
                          for i in (1, 2, 3)}
            if all(n.wait_log("serving on") for n in self.nodes.values()):
                return
            last = "".join("\n--- node %d ---\n%s" % (i, n.log_tail())
                           for i, n in self.nodes.items())
            self.kill()
        raise RuntimeError("the cluster did not start:" + last)

    def address(self, i):
        return "127.0.0.1:%d" % self.ports[i]

    def kill(self):
        for n in self.nodes.values():
            if n.alive():
                n.send_signal(signal.SIGCONT)  # a stopped process must be able to die
            n.kill()


class LivenessCase(ni.Case):

    def start_cluster(self, label, extra=""):
        c = Cluster(label, extra)
        self.addCleanup(c.kill)
        self.nodes = list(c.nodes.values())
        for i in (1, 2, 3):
            self.wait_status(c.address(i), lambda s: s["config"] == [1, 2, 3],
                             "node %d shows Config 1 2 3" % i)
        return c

    def wait_configs(self, c, want, ids, t0, bound, what):
        """Polls the Config of the nodes ids until each equals want; returns {id: seconds
        since t0 when it first did}. Fails after bound seconds, naming the last Configs."""
        seen, last = {}, {}
        end = t0 + bound
        while len(seen) < len(ids) and time.monotonic() < end:
            for i in ids:
                if i in seen:
                    continue
                cfg = config_of(c.address(i))
                last[i] = cfg
                if cfg == want:
                    seen[i] = time.monotonic() - t0
            time.sleep(0.02)
        if len(seen) < len(ids):
            self.fail("%s: not within %.1f s (seen %s; last Configs %s)%s"
                      % (what, bound, seen, last, self.logs()))
        return seen


class RejoinTest(LivenessCase):

    def test_sigkilled_node_is_back_in_every_config_soon_after_its_restart(self):
        c = self.start_cluster("rejoin")
        n3 = c.nodes[3]
        n3.proc.kill()  # SIGKILL
        n3.wait(ni.STOP_TIMEOUT)
        self.wait_status(c.address(1), lambda s: s["config"] == [1, 2], "node 1 drops node 3")
        self.wait_status(c.address(2), lambda s: s["config"] == [1, 2], "node 2 drops node 3")
        # Long enough for the peers' reconnect backoff to node 3 to reach several seconds
        # (100 ms growing 1.6x: 5 s after about 9 failed attempts, 12 s in all).
        time.sleep(6.0)
        t0 = time.monotonic()
        n3.start()
        self.assertTrue(n3.wait_log("serving on"), self.logs())
        serving = time.monotonic() - t0
        peers = self.wait_configs(c, [1, 2, 3], (1, 2), t0, REJOIN_BOUND,
                                  "nodes 1 and 2 list node 3 again")
        own = self.wait_configs(c, [1, 2, 3], (3,), t0, REJOIN_BOUND,
                                "the restarted node 3 lists nodes 1 and 2")
        log("rejoin after SIGKILL: node 3 serving %.3f s after its restart; in Config of "
            "node 1 at %.3f s, node 2 at %.3f s; node 3 lists 1 and 2 at %.3f s (bound %.1f s)"
            % (serving, peers[1], peers[2], own[3], REJOIN_BOUND))
        total = max(peers[1], peers[2], own[3])
        self.assertLess(total, REJOIN_BOUND)


class PartitionTest(LivenessCase):

    def stop_and_continue(self, c, label):
        n3 = c.nodes[3]
        t0 = time.monotonic()
        n3.send_signal(signal.SIGSTOP)
        gone = self.wait_configs(c, [1, 2], (1, 2), t0, DETECT_BOUND,
                                 "%s: nodes 1 and 2 drop the stopped node 3" % label)
        log("%s: SIGSTOP node 3 -> left Config of node 1 after %.3f s, node 2 after %.3f s "
            "(bound %.1f s)" % (label, gone[1], gone[2], DETECT_BOUND))
        # Node 1 and 2 still see each other, and serve.
        self.assertEqual(config_of(c.address(1)), [1, 2])
        t1 = time.monotonic()
        n3.send_signal(signal.SIGCONT)
        back = self.wait_configs(c, [1, 2, 3], (1, 2, 3), t1, RETURN_BOUND,
                                 "%s: node 3 back in every Config after SIGCONT" % label)
        log("%s: SIGCONT node 3 -> in Config of node 1 after %.3f s, node 2 after %.3f s; "
            "node 3 lists 1 2 3 after %.3f s (bound %.1f s)"
            % (label, back[1], back[2], back[3], RETURN_BOUND))
        self.assertTrue(n3.alive(), self.logs())
        return gone, back

    def test_stopped_node_leaves_config_and_comes_back_default_keepalive(self):
        c = self.start_cluster("partition-default")
        self.stop_and_continue(c, "default keepalive (1000/2000 ms)")

    def test_keepalive_from_the_yaml_is_used(self):
        c = self.start_cluster("partition-fast",
                               "keepalive: { time_ms: 300, timeout_ms: 600 }\n")
        gone, _ = self.stop_and_continue(c, "keepalive 300/600 ms")
        # Generous: far below the default's detection time would be flaky on a shared machine,
        # but it must stay well under the bound of the default.
        self.assertLess(max(gone.values()), DETECT_BOUND)

    def test_reload_refuses_a_keepalive_change(self):
        c = self.start_cluster("keepalive-reload", "keepalive: { time_ms: 800 }\n")
        with open(c.path) as f:
            text = f.read()
        ni.write_yaml(c.dir, "cluster.yaml", text.replace("time_ms: 800", "time_ms: 900"))
        r = ni.run_nodehost(["reload", c.address(1)])
        out = r.stdout + r.stderr
        self.assertNotEqual(r.returncode, 0, out)
        self.assertIn("keepalive.time_ms and keepalive.timeout_ms cannot be changed by a "
                      "reload; restart the node", out)
        # Nothing changed: the node serves with its full Config.
        self.assertEqual(config_of(c.address(1)), [1, 2, 3])


def main():
    ni.run_main("test_nodehost_liveness", WATCHDOG)


if __name__ == "__main__":
    main()
