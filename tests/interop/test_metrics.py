#!/usr/bin/python3
"""Integration: metrics and health (`metrics: { listen: HOST:PORT }`) of real nodehost
processes, scraped by a real Prometheus server and checked with promtool.

One 3-node storage cluster (in-memory store) for the whole file, every node with its own metrics
port (NH_METRICS_PORT in its environment, one YAML file), under a background load: a thread
running `nh-storage-client write` (WriteQC, majority of 3) in a loop; paused where exact counts
are asserted.

Tests (they run in this order; each leaves the cluster whole again):
  test_1_prometheus_sees_the_load_and_a_killed_node  a Prometheus server (scrape_interval 1s,
        loopback) scraping the 3 endpoints: through its HTTP API, for every node up == 1,
        rate(nodehost_requests_total{method="proto.Storage.WriteQC",code="OK"}[5s]) > 0 and
        nodehost_peer_connected == 1 for both of its peers. SIGKILL node 3: the others'
        nodehost_peer_connected{peer="3"} go to 0 and up{node="3"} to 0 in Prometheus; on the
        survivors nodehost_peer_last_error{peer="3"} is 1 for one code,
        nodehost_peer_reconnects_total{peer="3"} >= 1, nodehost_members_reachable 2, and
        promtool accepts their output. Node 3 restarts: up and connected again.
  test_2_promtool_accepts_every_endpoint_and_garbage_methods_are_no_labels  promtool check
        metrics passes (exit 0, no output) on every endpoint under load; requests for unknown
        methods (odd names: quotes, backslashes, newlines, braces, non-ASCII, empty, 2000
        characters) get UNIMPLEMENTED and are counted exactly under method="(unknown)",
        code="UNIMPLEMENTED"; no garbage name shows anywhere in the output, every method label is
        "(unknown)" or a registered method; promtool still passes.
  test_3_counts_are_exact  load paused, in-flight 0: N sequential `nh-storage-client write`
        calls add exactly N to every node's nodehost_requests_total{method=
        "proto.Storage.WriteQC",code="OK"} (a majority quorum call is sent to all 3 nodes and
        every node answers it); M WriteRPC calls to node 2 only add M there and 0 elsewhere;
        on every node and for every registered method the histogram's _count equals the sum
        of requests_total over the codes, buckets are cumulative (le ascending, counts
        non-decreasing) and end in le="+Inf" == _count; in-flight is 0.
  test_4_readyz_follows_the_majority  /readyz 200 "ready" and `nodehost status --json`
        "ready": true on every node; /healthz 200 "ok"; unknown path 404, POST 405, HEAD 200.
        SIGKILL nodes 2 and 3: node 1's /readyz is 503 "not ready: 1 of 3 members reachable, a
        majority needs 2", status --json has "ready": false with the same reason,
        nodehost_ready 0 and nodehost_members_reachable 1; /healthz stays 200. Restart both:
        200 "ready" again everywhere. (`nodehost status` text: "ready: no - <reason>".)
  test_5_reloads_are_counted_by_outcome  `nodehost reload` on node 1: outcome="ok" +1; the
        YAML made invalid for a moment: the reload fails (exit 1), outcome="failed" +1, "ok"
        unchanged; restored: "ok" +1 again. Node 2's counters do not move; `nodehost status`
        agrees (reloads = ok + failed, reload_failures = failed).
  test_6_a_taken_metrics_port_stops_the_start  a fourth node configured with node 1's
        metrics.listen exits 1 with "cannot serve metrics on 127.0.0.1:P: address already in
        use"; node 1 keeps serving its metrics.
tearDownClass: every node stops on SIGTERM with exit 0 and "node N stopped" (the endpoint is
stopped on the way out).

Skips: the whole file (a SKIP line, exit 0) without grpcio; test 1 without /usr/bin/prometheus;
without promtool, its checks are skipped (a line on stderr says so) and the rest runs.
NH_PROMETHEUS and NH_PROMTOOL name other binaries. Nothing is asserted about timing; every
wait is bounded.

  NH_BINARY_DIR=$PWD/build NH_SOURCE_DIR=$PWD /usr/bin/python3 tests/interop/test_metrics.py -v
"""

import http.client
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import grpc  # noqa: F401
except ImportError as _e:
    print("SKIP: test_metrics needs grpcio for /usr/bin/python3 (%s)" % _e)
    sys.exit(0)

import test_nodehost_interop as ni  # noqa: E402

# NH_PROMETHEUS / NH_PROMTOOL: other binaries (a path that does not exist skips their tests).
PROMETHEUS = os.environ.get("NH_PROMETHEUS", "/usr/bin/prometheus")
PROMTOOL = os.environ.get("NH_PROMTOOL", shutil.which("promtool") or "/usr/bin/promtool")
HAVE_PROMETHEUS = os.access(PROMETHEUS, os.X_OK)
HAVE_PROMTOOL = os.access(PROMTOOL, os.X_OK)

UNIMPLEMENTED = 12
WRITEQC = "proto.Storage.WriteQC"
WAIT = ni.READY_TIMEOUT  # bound of every wait for a condition
NOT_READY = "1 of 3 members reachable, a majority needs 2"

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
reload: {{ watch: false }}
metrics: {{ listen: "127.0.0.1:${{NH_METRICS_PORT}}" }}
log: {{ level: info, format: text }}
"""


def client_path():
    return os.path.join(ni.nu.binary_dir(), "plugins", "storage", "nh-storage-client")


# ---- HTTP and the text format -------------------------------------------------------------------

def fetch(port, path, method="GET", timeout=5.0):
    """(status, body text) of one HTTP request to 127.0.0.1:port; (None, why) when it failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as e:
        return None, str(e)
    finally:
        conn.close()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def parse_metrics(text):
    """[(name, {label: value}, float)] of a Prometheus text exposition (asserting its shape)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise AssertionError("not a sample line: %r" % line)
        name, labels, value = m.groups()
        ld = {}
        if labels:
            pos = 0
            for lm in _LABEL.finditer(labels):
                if lm.start() != pos:
                    raise AssertionError("bad labels in %r" % line)
                ld[lm.group(1)] = lm.group(2)
                pos = lm.end()
            if pos != len(labels):
                raise AssertionError("bad labels in %r" % line)
        out.append((name, ld, float(value)))
    return out


def pick(samples, name, **labels):
    """The values of the samples named name whose labels include labels."""
    return [v for n, ld, v in samples
            if n == name and all(ld.get(k) == want for k, want in labels.items())]


def value(samples, name, **labels):
    """The one value of name{labels}; None when there is no such sample."""
    vs = pick(samples, name, **labels)
    if len(vs) > 1:
        raise AssertionError("%s %s: %d samples" % (name, labels, len(vs)))
    return vs[0] if vs else None


def promtool_check(text):
    """(exit code, output) of `promtool check metrics` on text."""
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).strip()


# ---- the cluster and its load -------------------------------------------------------------------

class MetricsCluster:
    """Three nodes from one YAML file; node i has its metrics on mports[i]."""

    def __init__(self, label):
        self.label = label
        self.dir = ni.new_tmp(label + "-")
        self.state = os.path.join(self.dir, "state")
        os.mkdir(self.state, 0o700)
        self.nodes = {}
        last = ""
        for attempt in range(3):  # a free port may be taken meanwhile: retry with new ones
            ports = ni.distinct_free_ports(6)
            self.ports = dict(zip((1, 2, 3), ports[:3]))
            self.mports = dict(zip((1, 2, 3), ports[3:]))
            self.text = CONF.format(p1=ports[0], p2=ports[1], p3=ports[2],
                                    plugin=os.path.join(ni.plugin_dir(), "storage.so"))
            self.conf = ni.write_yaml(self.dir, "cluster.yaml", self.text)
            self.nodes = {i: ni.NodeProc(["--config", self.conf, "--id", str(i),
                                          "--state-dir", self.state],
                                         ni.base_env(NH_METRICS_PORT=self.mports[i]),
                                         "%s-node%d-try%d" % (label, i, attempt), self.dir)
                          for i in (1, 2, 3)}
            if all(self.wait_up(i) for i in (1, 2, 3)):
                return
            last = self.logs()
            for n in self.nodes.values():
                n.kill()
        raise RuntimeError("the cluster did not start:" + last)

    def wait_up(self, i):
        """Node i serves, its metrics endpoint too, and its in-memory store caught up."""
        n = self.nodes[i]
        return (n.wait_log("serving on") and n.wait_log("metrics and health on") and
                n.wait_log("recovered: caught up"))

    def restart(self, i):
        self.nodes[i].start()
        if not self.wait_up(i):
            raise AssertionError("node %d did not restart:%s" % (i, self.logs()))

    def address(self, i):
        return "127.0.0.1:%d" % self.ports[i]

    def addresses(self):
        return ",".join(self.address(i) for i in (1, 2, 3))

    def metrics(self, i):
        status, body = fetch(self.mports[i], "/metrics")
        if status != 200:
            raise AssertionError("GET /metrics of node %d: %s %s" % (i, status, body))
        return body

    def samples(self, i):
        return parse_metrics(self.metrics(i))

    def logs(self):
        return "".join("\n--- %s (run %d) stderr ---\n%s" % (n.label, n.runs, n.log_tail())
                       for n in self.nodes.values())


class Load(threading.Thread):
    """`nh-storage-client write` in a loop (each call a new process: WriteQC, majority of 3).
    pause() returns once no call is running; resume() goes on."""

    def __init__(self, nodes):
        super().__init__(daemon=True)
        self.nodes = nodes
        self.cv = threading.Condition()
        self.paused = False
        self.busy = False
        self.stopped = False
        self.calls = 0
        self.ok = 0

    def run(self):
        k = 0
        while True:
            with self.cv:
                while self.paused and not self.stopped:
                    self.cv.wait(0.1)
                if self.stopped:
                    return
                self.busy = True
            try:
                r = subprocess.run([client_path(), "--nodes", self.nodes, "--timeout-ms", "1000",
                                    "write", "load%d" % (k % 50), "v%d" % k],
                                   stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
                self.calls += 1
                self.ok += r.returncode == 0
            except subprocess.TimeoutExpired:
                pass
            k += 1
            with self.cv:
                self.busy = False
                self.cv.notify_all()
            time.sleep(0.02)

    def pause(self):
        with self.cv:
            self.paused = True
            if not self.cv.wait_for(lambda: not self.busy, 30):
                raise AssertionError("the load's call did not end within 30 s")

    def resume(self):
        with self.cv:
            self.paused = False
            self.cv.notify_all()

    def stop(self):
        with self.cv:
            self.stopped = True
            self.cv.notify_all()
        self.join(30)


# ---- Prometheus ---------------------------------------------------------------------------------

PROM_CONF = """\
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: nodehost
    static_configs:
{targets}
"""


class Prometheus:
    """A Prometheus server on loopback scraping the cluster's endpoints every second (target
    label node="<id>")."""

    def __init__(self, cluster):
        self.dir = ni.new_tmp("prometheus-")
        targets = "".join('      - targets: ["127.0.0.1:%d"]\n        labels: { node: "%d" }\n'
                          % (cluster.mports[i], i) for i in (1, 2, 3))
        conf = ni.write_yaml(self.dir, "prometheus.yml", PROM_CONF.format(targets=targets))
        self.proc = None
        for attempt in range(3):
            self.port = ni.nu.free_port()
            self.log_path = os.path.join(self.dir, "prometheus.%d.log" % attempt)
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    [PROMETHEUS, "--config.file=" + conf,
                     "--storage.tsdb.path=" + os.path.join(self.dir, "data%d" % attempt),
                     "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            if ni.wait_for(lambda: self.proc.poll() is not None or
                           fetch(self.port, "/-/ready", timeout=1)[0] == 200, WAIT, 0.1) and \
                    self.proc.poll() is None:
                return
            self.stop()
        raise RuntimeError("prometheus did not start:\n" + self.log())

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError as e:
            return "<no log: %s>" % e

    def query(self, q):
        """{node label: float value} of an instant query (raises on an API error)."""
        status, body = fetch(self.port, "/api/v1/query?" + urllib.parse.urlencode({"query": q}))
        if status != 200:
            raise AssertionError("query %r: %s %s" % (q, status, body))
        data = json.loads(body)
        if data.get("status") != "success":
            raise AssertionError("query %r: %s" % (q, body))
        return {r["metric"].get("node"): float(r["value"][1]) for r in data["data"]["result"]}

    def query_by(self, q, *labels):
        """{(label values...): float} of an instant query."""
        status, body = fetch(self.port, "/api/v1/query?" + urllib.parse.urlencode({"query": q}))
        data = json.loads(body) if status == 200 else {}
        if data.get("status") != "success":
            raise AssertionError("query %r: %s %s" % (q, status, body))
        return {tuple(r["metric"].get(k) for k in labels): float(r["value"][1])
                for r in data["data"]["result"]}

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# ---- the tests ----------------------------------------------------------------------------------

class MetricsTest(ni.Case):

    @classmethod
    def setUpClass(cls):
        cls.cluster = MetricsCluster("metrics")
        cls.nodes = list(cls.cluster.nodes.values())
        cls.load = Load(cls.cluster.addresses())
        cls.load.start()
        cls.prom = Prometheus(cls.cluster) if HAVE_PROMETHEUS else None

    @classmethod
    def tearDownClass(cls):
        cls.load.stop()
        if cls.prom:
            cls.prom.stop()
        problems = []
        t0 = time.monotonic()
        for n in cls.cluster.nodes.values():
            n.send_signal(signal.SIGTERM)
        for i, n in cls.cluster.nodes.items():
            rc = n.wait(ni.STOP_TIMEOUT)
            secs = time.monotonic() - t0
            if rc is None:
                n.kill()
            else:
                n._forget()
            if rc != 0:
                problems.append("node %d: exit code %r after %.1f s" % (i, rc, secs))
            elif not re.search(r"node %d stopped" % i, n.log()):
                problems.append("node %d: no 'node %d stopped' line" % (i, i))
        if problems:
            raise AssertionError("graceful stop with metrics on: %s%s"
                                 % ("; ".join(problems), cls.cluster.logs()))

    def setUp(self):
        # Every test starts with the whole cluster: every node sees its two peers.
        for i in (1, 2, 3):
            self.wait_status(self.cluster.address(i), lambda s: s["config"] == [1, 2, 3],
                             "node %d sees Config 1 2 3" % i)

    def wait_samples(self, i, pred, what, step=0.1):
        """Scrapes node i every step seconds until pred(samples) holds; returns the samples."""
        last = {}

        def check():
            last["s"] = self.cluster.samples(i)
            return last["s"] if pred(last["s"]) else None
        s = ni.wait_for(check, WAIT, step)
        if not s:
            self.fail("node %d: %s: not within %.0f s; last scrape:\n%s%s"
                      % (i, what, WAIT, self.cluster.metrics(i), self.cluster.logs()))
        return s

    def wait_query(self, q, pred, what):
        last = {}

        def check():
            last["r"] = self.prom.query(q)
            return pred(last["r"])
        if not ni.wait_for(check, WAIT, 0.25):
            self.fail("%s: not within %.0f s; last result of %s: %s\nprometheus log:\n%s%s"
                      % (what, WAIT, q, last.get("r"), self.prom.log(), self.cluster.logs()))
        return last["r"]

    def assertPromtoolPasses(self, i, what):
        if not HAVE_PROMTOOL:
            return
        text = self.cluster.metrics(i)
        rc, out = promtool_check(text)
        self.assertEqual((rc, out), (0, ""), "promtool check metrics on node %d (%s):\n%s"
                         % (i, what, text))

    # ---- 1 --------------------------------------------------------------------------------------

    @unittest.skipUnless(HAVE_PROMETHEUS, "needs %s" % PROMETHEUS)
    def test_1_prometheus_sees_the_load_and_a_killed_node(self):
        p = self.prom
        self.wait_query('up{job="nodehost"}', lambda r: r == {"1": 1, "2": 1, "3": 1},
                        "every target up")
        self.wait_query('rate(nodehost_requests_total{method="%s",code="OK"}[5s]) > 0' % WRITEQC,
                        lambda r: set(r) == {"1", "2", "3"}, "WriteQC rate > 0 on every node")
        want = {(str(i), str(j)): 1.0 for i in (1, 2, 3) for j in (1, 2, 3) if i != j}
        self.assertTrue(ni.wait_for(
            lambda: p.query_by("nodehost_peer_connected", "node", "peer") == want, WAIT, 0.25),
            "nodehost_peer_connected: %s" % p.query_by("nodehost_peer_connected", "node", "peer"))
        self.assertEqual(p.query("nodehost_ready"), {"1": 1, "2": 1, "3": 1})
        self.assertEqual(p.query("nodehost_members_reachable"), {"1": 3, "2": 3, "3": 3})

        self.cluster.nodes[3].send_signal(signal.SIGKILL)
        self.assertIsNotNone(self.cluster.nodes[3].wait(10))
        self.cluster.nodes[3]._forget()
        self.wait_query('nodehost_peer_connected{peer="3"}', lambda r: r == {"1": 0, "2": 0},
                        "nodes 1 and 2 see node 3 disconnected")
        self.wait_query('up{node="3"}', lambda r: r == {"3": 0}, "node 3's target down")
        self.assertEqual(p.query('up{node=~"1|2"}'), {"1": 1, "2": 1})
        for i in (1, 2):
            # The broken stream leaves its gRPC code: one code of peer 3 at 1, any others 0.
            s = self.wait_samples(i, lambda s: sorted(pick(s, "nodehost_peer_last_error",
                                                           peer="3"))[-1:] == [1],
                                  "a last error for peer 3")
            self.assertEqual(sum(pick(s, "nodehost_peer_last_error", peer="3")), 1)
            self.assertEqual(value(s, "nodehost_peer_connected", peer="3"), 0)
            self.assertEqual(value(s, "nodehost_peer_connected", peer=str(3 - i)), 1)
            self.assertGreaterEqual(value(s, "nodehost_peer_reconnects_total", peer="3"), 1)
            self.assertEqual(value(s, "nodehost_members_reachable"), 2)
            self.assertPromtoolPasses(i, "node 3 killed")

        self.cluster.restart(3)
        self.wait_query('up{node="3"}', lambda r: r == {"3": 1}, "node 3's target up again")
        self.wait_query('nodehost_peer_connected{peer="3"}', lambda r: r == {"1": 1, "2": 1},
                        "nodes 1 and 2 see node 3 again")

    # ---- 2 --------------------------------------------------------------------------------------

    def test_2_promtool_accepts_every_endpoint_and_garbage_methods_are_no_labels(self):
        # Under load (the load thread runs) ...
        self.assertTrue(ni.wait_for(lambda: self.load.ok >= 3, WAIT), "the load made no call")
        for i in (1, 2, 3):
            self.assertPromtoolPasses(i, "under load")
        # ... and after requests for unknown methods with odd names.
        garbage = ['zzgarbage"quote', "zzgarbage\\back\\slash", "zzgarbage\nnewline",
                   'zzgarbage{method="x",code="OK"} 1', "zzgarbage.ünïcødé.Ω", "",
                   "proto.Storage.WriteQC.zzgarbage", "zzgarbage" + "x" * 2000]
        before = self.cluster.samples(1)
        unknown0 = value(before, "nodehost_requests_total", method="(unknown)",
                         code="UNIMPLEMENTED") or 0
        w = self.wire(self.cluster.address(1))
        for method in garbage:
            code, text = ni.status_of(w.call(method, b"\x01\x02"))
            self.assertEqual(code, UNIMPLEMENTED, "%r: %s" % (method, text))
        text = self.cluster.metrics(1)
        s = parse_metrics(text)
        self.assertEqual(value(s, "nodehost_requests_total", method="(unknown)",
                               code="UNIMPLEMENTED"), unknown0 + len(garbage))
        self.assertNotIn("zzgarbage", text)
        self.assertNotIn("ünïcødé", text)
        methods = {ld["method"] for _, ld, _ in s if "method" in ld}
        for m in methods:
            self.assertRegex(m, r"^(\(unknown\)|proto\.Storage\.[A-Za-z]+|"
                                r"nodehost\.Admin\.[A-Za-z]+)$")
        self.assertIn(WRITEQC, methods)
        for i in (1, 2, 3):
            self.assertPromtoolPasses(i, "after unknown methods")

    # ---- 3 --------------------------------------------------------------------------------------

    def test_3_counts_are_exact(self):
        self.load.pause()
        try:
            self._exact_counts()
        finally:
            self.load.resume()

    def _quiet(self, i):
        """Node i's samples once nothing is in flight and two scrapes 0.3 s apart agree on the
        request counts."""
        prev = {}

        def counts(s):
            return sorted((tuple(sorted(ld.items())), v) for n, ld, v in s
                          if n == "nodehost_requests_total")

        def pred(s):
            c = counts(s)
            same = prev.get("c") == c
            prev["c"] = c
            return same and value(s, "nodehost_requests_in_flight") == 0
        return self.wait_samples(i, pred, "no request in flight, counts stable", 0.3)

    def _exact_counts(self):
        n_writes, n_rpc = 12, 7
        before = {i: self._quiet(i) for i in (1, 2, 3)}
        wq0 = {i: value(before[i], "nodehost_requests_total", method=WRITEQC, code="OK") or 0
               for i in (1, 2, 3)}
        for k in range(n_writes):
            r = subprocess.run([client_path(), "--nodes", self.cluster.addresses(), "write",
                                "exact%d" % k, "value%d" % k], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn(": ok (majority of 3)", r.stdout)
        # WriteRPC to node 2 only.
        w2 = self.wire(self.cluster.address(2))
        rpc0 = {i: value(before[i], "nodehost_requests_total", method="proto.Storage.WriteRPC",
                         code="OK") or 0 for i in (1, 2, 3)}
        for k in range(n_rpc):
            ni.ok(w2.call("proto.Storage.WriteRPC", ni.write_req("rpc%d" % k, "x", 100 + k)))
        after = {}
        for i in (1, 2, 3):
            after[i] = self.wait_samples(
                i, lambda s, i=i: value(s, "nodehost_requests_total", method=WRITEQC,
                                        code="OK") == wq0[i] + n_writes and
                value(s, "nodehost_requests_in_flight") == 0,
                "WriteQC OK count +%d" % n_writes)
        for i in (1, 2, 3):
            after[i] = self._quiet(i)
            s = after[i]
            self.assertEqual(value(s, "nodehost_requests_total", method=WRITEQC, code="OK"),
                             wq0[i] + n_writes, "node %d" % i)
            self.assertEqual(sum(pick(s, "nodehost_requests_total", method=WRITEQC)) -
                             sum(pick(before[i], "nodehost_requests_total", method=WRITEQC)),
                             n_writes, "node %d: WriteQC under another code" % i)
            self.assertEqual((value(s, "nodehost_requests_total", method="proto.Storage.WriteRPC",
                                    code="OK") or 0) - rpc0[i], n_rpc if i == 2 else 0,
                             "node %d: WriteRPC" % i)
            self.assertEqual(value(s, "nodehost_requests_in_flight"), 0)
            self.check_histograms(i, s)

    def check_histograms(self, i, s):
        methods = {ld["method"] for n, ld, _ in s
                   if n == "nodehost_request_duration_seconds_count"}
        self.assertIn(WRITEQC, methods)
        for m in sorted(methods - {"(unknown)"}):
            count = value(s, "nodehost_request_duration_seconds_count", method=m)
            total = sum(pick(s, "nodehost_requests_total", method=m))
            self.assertEqual(count, total, "node %d, %s: histogram _count against "
                             "requests_total summed over the codes" % (i, m))
            buckets = [(ld["le"], v) for n, ld, v in s
                       if n == "nodehost_request_duration_seconds_bucket" and
                       ld.get("method") == m]
            self.assertGreaterEqual(len(buckets), 2)
            les = [float(le) for le, _ in buckets]
            self.assertEqual(les, sorted(les), "node %d, %s: le not ascending" % (i, m))
            self.assertEqual(len(set(les)), len(les))
            self.assertEqual(buckets[-1][0], "+Inf")
            self.assertTrue(math.isinf(les[-1]))
            counts = [v for _, v in buckets]
            self.assertEqual(counts, sorted(counts), "node %d, %s: buckets not cumulative: %s"
                             % (i, m, buckets))
            self.assertEqual(counts[-1], count, "node %d, %s: +Inf bucket != _count" % (i, m))
            total_s = value(s, "nodehost_request_duration_seconds_sum", method=m)
            self.assertGreaterEqual(total_s, 0)
            if count:
                self.assertGreater(total_s, 0)

    # ---- 4 --------------------------------------------------------------------------------------

    def test_4_readyz_follows_the_majority(self):
        c = self.cluster
        for i in (1, 2, 3):
            self.assertTrue(ni.wait_for(lambda: fetch(c.mports[i], "/readyz")[0] == 200, WAIT))
            self.assertEqual(fetch(c.mports[i], "/readyz"), (200, "ready\n"))
            self.assertEqual(fetch(c.mports[i], "/healthz"), (200, "ok\n"))
            st = ni.status(c.address(i))
            self.assertEqual((st["ready"], st["not_ready_reason"]), (True, ""), st)
        m = c.mports[1]
        self.assertEqual(fetch(m, "/nope")[0], 404)
        self.assertEqual(fetch(m, "/metrics/x")[0], 404)
        self.assertEqual(fetch(m, "/metrics", "POST")[0], 405)
        self.assertEqual(fetch(m, "/readyz", "DELETE")[0], 405)
        self.assertEqual(fetch(m, "/readyz", "HEAD")[0], 200)

        for i in (2, 3):
            c.nodes[i].send_signal(signal.SIGKILL)
        for i in (2, 3):
            self.assertIsNotNone(c.nodes[i].wait(10))
            c.nodes[i]._forget()
        self.assertTrue(ni.wait_for(lambda: fetch(m, "/readyz")[0] == 503, WAIT),
                        "node 1 stays ready alone: %s%s" % (fetch(m, "/readyz"), c.logs()))
        self.assertEqual(fetch(m, "/readyz"), (503, "not ready: %s\n" % NOT_READY))
        st = ni.status(c.address(1))
        self.assertEqual((st["ready"], st["not_ready_reason"]), (False, NOT_READY), st)
        self.assertEqual(st["members_reachable"], 1)
        s = c.samples(1)
        self.assertEqual(value(s, "nodehost_ready"), 0)
        self.assertEqual(value(s, "nodehost_members_reachable"), 1)
        self.assertEqual(value(s, "nodehost_members"), 3)
        self.assertEqual(value(s, "nodehost_config_nodes"), 1)
        self.assertEqual(fetch(m, "/healthz"), (200, "ok\n"))
        r = ni.run_nodehost(["status", c.address(1)])
        self.assertRegex(r.stdout, r"(?m)^ready:\s+no - %s$" % re.escape(NOT_READY))

        for i in (2, 3):
            c.nodes[i].start()
        for i in (2, 3):
            self.assertTrue(c.wait_up(i), "node %d did not restart:%s" % (i, c.logs()))
        for i in (1, 2, 3):
            self.assertTrue(ni.wait_for(lambda: fetch(c.mports[i], "/readyz") ==
                                        (200, "ready\n"), WAIT),
                            "node %d: %s" % (i, fetch(c.mports[i], "/readyz")))
            self.assertEqual(fetch(c.mports[i], "/healthz"), (200, "ok\n"))
        st = self.wait_status(c.address(1), lambda s: s["ready"], "node 1 ready again")
        self.assertEqual(st["not_ready_reason"], "")

    # ---- 5 --------------------------------------------------------------------------------------

    def test_5_reloads_are_counted_by_outcome(self):
        c = self.cluster

        def reloads(i):
            s = c.samples(i)
            return (value(s, "nodehost_reloads_total", outcome="ok"),
                    value(s, "nodehost_reloads_total", outcome="failed"))
        ok0, failed0 = reloads(1)
        other0 = reloads(2)
        self.assertIsNotNone(ok0)
        self.assertIsNotNone(failed0)
        r = ni.run_nodehost(["reload", c.address(1)])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(reloads(1), (ok0 + 1, failed0))
        try:
            with open(c.conf, "a") as f:
                f.write("plugins: [ this is not valid\n")
            r = ni.run_nodehost(["reload", c.address(1)])
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("cluster.yaml", r.stderr)
            self.assertEqual(reloads(1), (ok0 + 1, failed0 + 1))
        finally:
            ni.write_yaml(c.dir, "cluster.yaml", c.text)
        r = ni.run_nodehost(["reload", c.address(1)])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(reloads(1), (ok0 + 2, failed0 + 1))
        self.assertEqual(reloads(2), other0)
        st = ni.status(c.address(1))
        self.assertEqual((st["reloads"], st["reload_failures"]), (ok0 + failed0 + 3,
                                                                 failed0 + 1), st)

    # ---- 6 --------------------------------------------------------------------------------------

    def test_6_a_taken_metrics_port_stops_the_start(self):
        c = self.cluster
        d = ni.new_tmp("taken-")
        mport = c.mports[1]
        conf = ni.write_yaml(d, "solo.yaml", """\
version: 1
node: {{ id: 7, listen: "127.0.0.1:{port}" }}
plugins:
  - name: storage
    path: {plugin}
metrics: {{ listen: "127.0.0.1:{mport}" }}
""".format(port=ni.nu.free_port(), mport=mport,
           plugin=os.path.join(ni.plugin_dir(), "storage.so")))
        r = ni.run_nodehost(["--config", conf, "--state-dir", os.path.join(d, "state")])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("cannot serve metrics on 127.0.0.1:%d: address already in use" % mport,
                      r.stderr)
        self.assertEqual(fetch(mport, "/healthz"), (200, "ok\n"))
        self.assertIn("nodehost_build_info", c.metrics(1))


def setUpModule():
    if not HAVE_PROMTOOL:
        sys.stderr.write("test_metrics: no %s: the promtool checks are skipped\n" % PROMTOOL)
    ni.setUpModule()


def tearDownModule():
    ni.tearDownModule()


if __name__ == "__main__":
    ni.run_main("test_metrics", 240.0)
