#!/usr/bin/python3
"""Integration: the `nodehost` program with real processes, real YAML files and real plugins.

Every test starts `$NH_BINARY_DIR/host/nodehost` processes on free loopback ports with YAML
files (the shipped conf/*.yaml, or files written to a temporary directory) and talks to them
on the wire with Debian's grpcio, speaking raw Gorums `stream.Message` envelopes on
/stream.Gorums/NodeStream. The plugins' request/response messages are generated at test time
with the system protoc from plugins/*/*.proto and tests/plugins/plugtest.proto.

Themes (one class each):
  ClusterTest          3 nodes from conf/cluster-3.yaml: status, storage (WriteQC, ReadQC,
                       ReadNestedQC, NotifyClients to client peers), benchmark, bad requests;
                       tearDownClass checks the graceful stop of every node (exit 0, "stopped").
  ClusterFailoverTest  SIGKILL node 3, majority still works, restart node 3, Config heals.
  GracefulStopTest     SIGTERM/SIGINT: exit 0, a slow call in flight finishes, later calls get
                       UNAVAILABLE "node is shutting down"; grace expiry; a second signal.
  CommandLineTest      --check-config on conf/*.yaml and tests/conf/bad/*.yaml, every error
                       of a file listed in file order (and at most 20), --help, --version,
                       usage errors, `status` errors.
  PluginErrorTest      bad test plugins through the program (check and start), bad_init,
                       method conflicts, a handler error reaching the client.
  LogTest              --log-format json (one JSON object per line), log.format in the file,
                       --log-level.

Known program bugs are checked too; while they are there, the test reports itself as skipped
with a reason starting "KNOWN BUG:" (everything before that point is still asserted), and it
passes once the bug is fixed.

Nothing sleeps for correctness: tests wait for conditions (a log line, `nodehost status`, a
reply) with generous limits, scaled up for sanitizer builds. Every process a test starts is
killed at the end, also on failure (and by a watchdog). On failure the nodes' stderr is printed;
NH_KEEP_TMP=1 keeps the temporary directory (configs, logs).

Run through ctest (sets NH_SOURCE_DIR and NH_BINARY_DIR), or by hand:
  NH_BINARY_DIR=<build> /usr/bin/python3 tests/interop/test_nodehost_interop.py -v
  (one test: append e.g. ClusterTest.test_status_shows_config_peers_plugins)
"""

import glob
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import nh_interop_util as nu  # noqa: E402

BIT63 = 1 << 63
NODE_ID_KEY = "gorums-node-id"
FIRST_CLIENT_ID = 1 << 20

# gRPC status codes (numbers, as in stream.Message.status.code).
OK, UNKNOWN, FAILED_PRECONDITION, UNIMPLEMENTED, UNAVAILABLE = 0, 2, 9, 12, 14


def _sanitized_build():
    try:
        with open(os.path.join(nu.binary_dir(), "CMakeCache.txt")) as f:
            text = f.read()
    except (OSError, RuntimeError):
        return False
    return bool(re.search(r"^NH_(SANITIZE|TSAN):BOOL=(ON|1|TRUE)", text, re.M | re.I))


# Time limits. They only bound waiting for a condition (nothing sleeps for correctness);
# sanitizer builds are several times slower, so everything is scaled.
SCALE = 3.0 if _sanitized_build() else 1.0
READY_TIMEOUT = 30.0 * SCALE    # a node (or cluster) becomes ready / a Config change shows
REPLY_TIMEOUT = 15.0 * SCALE    # one reply on the wire
STOP_TIMEOUT = 15.0 * SCALE     # SIGTERM -> exit (idle node: normally well under 1 s)
RUN_TIMEOUT = 30.0 * SCALE      # a short-lived nodehost command (--check-config, status, ...)
STREAM_DEADLINE = 120.0 * SCALE  # gRPC deadline of every NodeStream opened by a test
WATCHDOG = 280.0  # the whole file, hard limit below ctest's 300 s (normal run: about 20 s)

pb = None        # stream_pb2
spb = None       # storage_pb2
bpb = None       # benchmark_pb2
hpb = None       # hello_pb2
tpb = None       # plugtest_pb2
_pb_dir = None
_tmp_root = None
_live = []       # NodeProc objects that may still run
_started = []    # every NodeProc, for the failure report


def setUpModule():
    global pb, spb, bpb, hpb, tpb, _pb_dir, _tmp_root
    pb = nu.load_stream_pb2()
    _tmp_root = tempfile.mkdtemp(prefix="nh-nodehost-itest-")
    _pb_dir = os.path.join(_tmp_root, "pb")
    os.mkdir(_pb_dir)
    src = nu.source_dir()
    protoc = shutil.which("protoc") or "/usr/bin/protoc"
    subprocess.run([protoc, "--python_out=" + _pb_dir,
                    "-I" + os.path.join(src, "plugins", "storage"),
                    "-I" + os.path.join(src, "plugins", "benchmark"),
                    "-I" + os.path.join(src, "plugins", "hello"),
                    "-I" + os.path.join(src, "tests", "plugins"),
                    "-I" + os.path.join(src, "sdk", "proto", "gorums"),
                    "-I/usr/include", "gorums.proto",
                    "storage.proto", "benchmark.proto", "hello.proto", "plugtest.proto"],
                   check=True, timeout=60)
    sys.path.insert(0, _pb_dir)
    import storage_pb2
    import benchmark_pb2
    import hello_pb2
    import plugtest_pb2
    spb, bpb, hpb, tpb = storage_pb2, benchmark_pb2, hello_pb2, plugtest_pb2


def tearDownModule():
    kill_all()


def kill_all():
    for n in list(_live):
        n.kill()


# ---- paths ---------------------------------------------------------------------------------

def nodehost_path():
    return os.path.join(nu.binary_dir(), "host", "nodehost")


def plugin_dir():
    return os.path.join(nu.binary_dir(), "plugins")


def tplugin(name):
    return os.path.join(nu.binary_dir(), "tests", "plugins", name + ".so")


def conf_path(name):
    return os.path.join(nu.source_dir(), "conf", name)


def new_tmp(prefix):
    return tempfile.mkdtemp(prefix=prefix, dir=_tmp_root)


def base_env(**extra):
    """The environment of a nodehost process: ours, without variables a config could pick up
    by accident, plus extra."""
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("NH_PORT") or k in ("NH_PLUGIN_DIR", "NH_LOG_LEVEL", "NH_STATE_DIR"):
            del env[k]
    env.update({k: str(v) for k, v in extra.items()})
    return env


distinct_free_ports = nu.distinct_free_ports


def run_nodehost(args, env=None, timeout=None):
    """Runs a short-lived nodehost command; returns CompletedProcess (text)."""
    return subprocess.run([nodehost_path()] + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env or base_env(),
                          timeout=timeout or RUN_TIMEOUT)


def status(address, env=None, timeout_ms=2000):
    """`nodehost status ADDRESS --json`, parsed; None when the node did not answer."""
    r = run_nodehost(["status", address, "--json", "--timeout-ms", str(timeout_ms)], env=env)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)


def wait_for(pred, timeout, step=0.05):
    """Calls pred() until it returns a true value (returned) or timeout; returns the last
    value on timeout."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)


# ---- nodehost processes --------------------------------------------------------------------

class NodeProc:
    """One nodehost process. stdout and stderr go to files in a temporary directory (a
    restart starts new files; log() reads the current run's stderr)."""

    def __init__(self, args, env, label, workdir):
        self.args = [nodehost_path()] + list(args)
        self.env = env
        self.label = label
        self.workdir = workdir
        self.runs = 0
        self.proc = None
        self.start()
        _started.append(self)

    def start(self):
        self.runs += 1
        base = os.path.join(self.workdir, "%s.%d" % (self.label, self.runs))
        self.err_path, self.out_path = base + ".stderr", base + ".stdout"
        with open(self.err_path, "wb") as err, open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, env=self.env)
        if self not in _live:
            _live.append(self)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError as e:
            return "<no log: %s>" % e

    def log_tail(self, limit=6000):
        return self.log()[-limit:]

    def wait_log(self, text, timeout=READY_TIMEOUT):
        """Waits until the current run's stderr contains text (or the process died)."""
        return wait_for(lambda: text in self.log() or not self.alive(), timeout) and \
            text in self.log()

    def wait_log_re(self, pattern, timeout=READY_TIMEOUT):
        """Waits until the current run's stderr matches pattern; returns the match or None."""
        wait_for(lambda: re.search(pattern, self.log()) or not self.alive(), timeout)
        return re.search(pattern, self.log())

    def send_signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout):
        """Exit code, or None when still running after timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends sig and waits; returns (exit code or None, seconds)."""
        t0 = time.monotonic()
        self.send_signal(sig)
        rc = self.wait(timeout)
        elapsed = time.monotonic() - t0
        if rc is None:
            self.kill()
        else:
            self._forget()
        return rc, elapsed

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        self._forget()

    def _forget(self):
        if self in _live:
            _live.remove(self)


# ---- the wire ------------------------------------------------------------------------------

class WireError(AssertionError):
    pass


class Wire:
    """One NodeStream to a node, with replies routed by message_seq_no (so several calls can
    be in flight) and server-initiated requests (bit 63) answered by handlers:
    handlers[method](request Message) -> bytes (the reply payload) or (code, text)."""

    def __init__(self, address, metadata=None, handlers=None, ready_timeout=None):
        self.address = address
        self.channel = grpc.insecure_channel(address)
        try:
            grpc.channel_ready_future(self.channel).result(timeout=ready_timeout or
                                                           READY_TIMEOUT)
        except grpc.FutureTimeoutError:
            self.channel.close()
            raise WireError("cannot connect to %s" % address)
        self.handlers = dict(handlers or {})
        self.server_requests = queue.Queue()
        self.unexpected = []
        self._lock = threading.Lock()
        self._pending = {}
        self._seq = 0
        self.stream = nu.NodeStream(self.channel, metadata=metadata, deadline=STREAM_DEADLINE,
                                    on_reply=self._on_msg)

    def _on_msg(self, s, m):
        if m.message_seq_no & BIT63:
            self.server_requests.put(m)
            h = self.handlers.get(m.method)
            if h is None:
                return
            result = h(m)
            r = pb.Message()
            r.message_seq_no = m.message_seq_no
            r.method = m.method
            if isinstance(result, tuple):
                r.status.code, r.status.message = result
            else:
                r.payload = result
            s.send(r)
            return
        with self._lock:
            q = self._pending.pop(m.message_seq_no, None)
        if q is None:
            self.unexpected.append(m)
        else:
            q.put(m)

    def start(self, method, payload=b"", oneway=False):
        """Sends a request; returns a handle for wait() (None for one-way)."""
        if not isinstance(payload, (bytes, bytearray)):
            payload = payload.SerializeToString()
        with self._lock:
            self._seq += 1
            seq = self._seq
            q = None
            if not oneway:
                q = queue.Queue()
                self._pending[seq] = q
        self.stream.send(nu.make_message(pb, seq, method, bytes(payload)))
        return None if oneway else (seq, method, q)

    def wait(self, handle, timeout=None):
        seq, method, q = handle
        end = time.monotonic() + (timeout or REPLY_TIMEOUT)
        while True:
            try:
                m = q.get(timeout=0.05)
            except queue.Empty:
                if self.stream.ended.is_set():
                    raise WireError("%s: stream to %s ended (%s %r) before the reply to %d"
                                    % (method, self.address, self.stream.code,
                                       self.stream.details, seq))
                if time.monotonic() > end:
                    raise WireError("%s: no reply from %s within %.0f s"
                                    % (method, self.address, timeout or REPLY_TIMEOUT))
                continue
            if m.method != method:
                raise WireError("reply to %d names method %r, expected %r"
                                % (seq, m.method, method))
            return m

    def call(self, method, payload=b"", timeout=None):
        """The reply Message (check it with ok() or status_of())."""
        return self.wait(self.start(method, payload), timeout)

    def close(self):
        if not self.stream.ended.is_set():
            self.stream.cancel()
        self.channel.close()


def status_of(m):
    """(code, message) of a reply; (0, "") for a success."""
    if m.HasField("status"):
        return m.status.code, m.status.message
    return OK, ""


def ok(m, cls=None):
    code, text = status_of(m)
    if code != OK:
        raise WireError("%s failed: code %d %r" % (m.method, code, text))
    if cls is None:
        return m.payload
    return cls.FromString(m.payload)


def ts(seconds, nanos=0):
    from google.protobuf import timestamp_pb2
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def write_req(key, value, seconds, nanos=0):
    return spb.WriteRequest(Key=key, Value=value, Time=ts(seconds, nanos))


def write_yaml(directory, name, text):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


class Case(unittest.TestCase):
    """Helpers shared by the themes."""

    nodes = ()

    def wires(self):
        if not hasattr(self, "_wires"):
            self._wires = []
        return self._wires

    def wire(self, address, **kw):
        w = Wire(address, **kw)
        self.wires().append(w)
        return w

    def tearDown(self):
        for w in self.wires():
            w.close()

    def logs(self, nodes=None):
        return "".join("\n--- %s (run %d) stderr ---\n%s" % (n.label, n.runs, n.log_tail())
                       for n in (nodes if nodes is not None else self.nodes))

    def wait_status(self, address, pred, what, nodes=None, timeout=READY_TIMEOUT):
        """Polls `nodehost status --json` until pred(status) holds; returns the status."""
        last = {}

        def check():
            st = status(address)
            last["st"] = st
            return st if st is not None and pred(st) else None
        st = wait_for(check, timeout, 0.1)
        if not st:
            self.fail("%s: not within %.0f s; last status of %s: %s%s"
                      % (what, timeout, address, last.get("st"), self.logs(nodes)))
        return st

    def start_single(self, make, label, workdir):
        """Starts one node on a free port: make(port) -> (args, env). Retries with another
        port when the node does not come up (the port may have been taken meanwhile).
        Returns the NodeProc (address set), killed at cleanup."""
        for attempt in range(3):
            port = nu.free_port()
            args, env = make(port)
            node = NodeProc(args, env, "%s-%d" % (label, attempt), workdir)
            self.addCleanup(node.kill)
            self.nodes = [node]
            if node.wait_log("serving on"):
                node.address = "127.0.0.1:%d" % port
                return node
            node.kill()
        self.fail("the node did not start" + self.logs())

    def assertStopped(self, node, sig=signal.SIGTERM, bound=STOP_TIMEOUT):
        rc, elapsed = node.stop(sig, bound)
        self.assertEqual(rc, 0, "%s: exit code %r %.1f s after %s (None: still running)%s"
                         % (node.label, rc, elapsed, sig.name, self.logs([node])))
        self.assertRegex(node.log(), r"node \d+ stopped", "%s: no 'stopped' line%s"
                         % (node.label, self.logs([node])))
        return elapsed


# ---- 1. the cluster ------------------------------------------------------------------------

class Cluster:
    """Three nodes from conf/cluster-3.yaml, one process per --id, on free ports."""

    def __init__(self, label):
        self.dir = new_tmp(label + "-")
        self.state = os.path.join(self.dir, "state")
        os.mkdir(self.state, 0o700)
        self.nodes = {}
        last = None
        for attempt in range(3):  # a free port may be taken meanwhile: retry with new ones
            ports = distinct_free_ports(3)
            self.ports = dict(zip((1, 2, 3), ports))
            self.env = base_env(NH_PLUGIN_DIR=plugin_dir(), NH_STATE_DIR=self.state,
                                NH_PORT_1=ports[0], NH_PORT_2=ports[1], NH_PORT_3=ports[2])
            self.nodes = {i: NodeProc(["--config", conf_path("cluster-3.yaml"), "--id", str(i)],
                                      self.env, "%s-node%d-try%d" % (label, i, attempt),
                                      self.dir)
                          for i in (1, 2, 3)}
            ok_all = all(n.wait_log("serving on") for n in self.nodes.values())
            # The in-memory storage plugin answers reads once it caught up from its peers.
            if ok_all and all(n.wait_log("recovered: caught up") for n in self.nodes.values()):
                return
            last = "".join("\n--- node %d ---\n%s" % (i, n.log_tail())
                           for i, n in self.nodes.items())
            for n in self.nodes.values():
                n.kill()
        raise RuntimeError("the cluster did not start:" + last)

    def address(self, i):
        return "127.0.0.1:%d" % self.ports[i]

    def stop_all(self):
        """SIGTERM to every running node at once; returns {id: (rc, seconds)}."""
        t0 = time.monotonic()
        for n in self.nodes.values():
            n.send_signal(signal.SIGTERM)
        out = {}
        for i, n in self.nodes.items():
            if n.proc.returncode is not None and n not in _live:
                continue
            rc = n.wait(STOP_TIMEOUT)
            out[i] = (rc, time.monotonic() - t0)
            if rc is None:
                n.kill()
            else:
                n._forget()
        return out


def full_config(st):
    return st["config"] == [1, 2, 3] and len(st["plugins"]) == 2


class ClusterTest(Case):
    """One 3-node cluster for the whole class; each test opens its own streams."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster("cluster")
        cls.nodes = list(cls.cluster.nodes.values())

    @classmethod
    def tearDownClass(cls):
        # Theme 3 as well: every node stops on SIGTERM with exit status 0 and says so.
        result = cls.cluster.stop_all()
        problems = []
        for i, (rc, secs) in sorted(result.items()):
            n = cls.cluster.nodes[i]
            if rc != 0:
                problems.append("node %d: exit code %r after %.1f s" % (i, rc, secs))
            elif not re.search(r"node %d stopped" % i, n.log()):
                problems.append("node %d: no 'node %d stopped' line" % (i, i))
        leftovers = [f for f in os.listdir(cls.cluster.state) if f.endswith(".so")]
        if leftovers:
            problems.append("plugin copies left in the state directory: %s" % leftovers)
        if problems:
            raise AssertionError("graceful stop of the cluster: %s%s"
                                 % ("; ".join(problems),
                                    "".join("\n--- node %d ---\n%s" % (i, n.log_tail())
                                            for i, n in cls.cluster.nodes.items())))

    def setUp(self):
        for i in (1, 2, 3):
            self.wait_status(self.cluster.address(i), full_config,
                             "node %d shows Config 1 2 3" % i)

    def peers(self, ids=(1, 2, 3)):
        return {i: self.wire(self.cluster.address(i)) for i in ids}

    def qcall(self, wires, method, payload, cls=None):
        """The same request on every stream (as a Gorums quorum call writes it); returns
        {id: decoded reply} after every node answered successfully."""
        handles = {i: w.start(method, payload) for i, w in wires.items()}
        return {i: ok(wires[i].wait(h), cls) for i, h in handles.items()}

    def test_status_shows_config_peers_plugins(self):
        for i in (1, 2, 3):
            st = status(self.cluster.address(i))
            self.assertIsNotNone(st, self.logs())
            self.assertEqual(st["node_id"], i)
            self.assertEqual(st["listen"], self.cluster.address(i))
            self.assertEqual(st["config"], [1, 2, 3])
            self.assertEqual(st["peers"], [1, 2, 3])
            self.assertEqual([(p["name"], p["generation"], p["methods"])
                              for p in st["plugins"]],
                             [("storage", 1, 10), ("benchmark", 1, 7)])
            self.assertEqual(st["plugins"][0]["path"], os.path.join(plugin_dir(), "storage.so"))
            self.assertGreaterEqual(st["uptime_ms"], 0)
        # The text form names the same.
        r = run_nodehost(["status", self.cluster.address(2)])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"(?m)^Config:\s+1 2 3$")
        self.assertIn("proto.Storage.ReadNestedQC", r.stdout)
        self.assertIn("benchmark.Benchmark.SlowServer", r.stdout)

    def test_storage_write_and_read_quorum_calls_return_the_newest_value(self):
        w = self.peers()
        key = "k-newest"
        news = self.qcall(w, "proto.Storage.WriteQC", write_req(key, "v1", 1000), spb.WriteResponse)
        self.assertEqual({i: r.New for i, r in news.items()}, {1: True, 2: True, 3: True})
        # The same timestamp again is not new anywhere.
        news = self.qcall(w, "proto.Storage.WriteQC", write_req(key, "v1", 1000), spb.WriteResponse)
        self.assertEqual({i: r.New for i, r in news.items()}, {1: False, 2: False, 3: False})
        # A newer value on a majority only (nodes 1 and 2).
        news = self.qcall({i: w[i] for i in (1, 2)}, "proto.Storage.WriteQC",
                          write_req(key, "v2", 1000, 5), spb.WriteResponse)
        self.assertEqual({i: r.New for i, r in news.items()}, {1: True, 2: True})
        reads = self.qcall(w, "proto.Storage.ReadQC", spb.ReadRequest(Key=key), spb.ReadResponse)
        self.assertEqual({i: (r.OK, r.Value) for i, r in reads.items()},
                         {1: (True, "v2"), 2: (True, "v2"), 3: (True, "v1")})
        newest = max(reads.values(), key=lambda r: (r.Time.seconds, r.Time.nanos))
        self.assertEqual((newest.Value, newest.Time.seconds, newest.Time.nanos), ("v2", 1000, 5))
        # ReadNestedQC on node 3 (which holds the old value): the node asks a majority of its
        # Config, which always includes node 1 or 2, and answers the newest.
        r = ok(w[3].call("proto.Storage.ReadNestedQC", spb.ReadRequest(Key=key)),
               spb.ReadResponse)
        self.assertEqual((r.OK, r.Value, r.Time.seconds, r.Time.nanos), (True, "v2", 1000, 5))
        # ReadRPC / WriteRPC on one node, an unknown key.
        r = ok(w[1].call("proto.Storage.ReadRPC", spb.ReadRequest(Key="nope")), spb.ReadResponse)
        self.assertFalse(r.OK)
        r = ok(w[2].call("proto.Storage.WriteRPC", write_req("only-2", "x", 7)),
               spb.WriteResponse)
        self.assertTrue(r.New)
        r = ok(w[1].call("proto.Storage.ReadNestedQC", spb.ReadRequest(Key="only-2")),
               spb.ReadResponse)
        # A majority of node 1's Config may or may not include node 2: both answers are valid,
        # but a found value must be node 2's.
        if r.OK:
            self.assertEqual(r.Value, "x")
        # WriteMulticast is one-way: nothing comes back, and the write is visible afterwards
        # on the same stream (per-stream order).
        w[3].start("proto.Storage.WriteMulticast", write_req("mc", "m", 9), oneway=True)
        r = ok(w[3].call("proto.Storage.ReadRPC", spb.ReadRequest(Key="mc")), spb.ReadResponse)
        self.assertEqual((r.OK, r.Value), (True, "m"))
        self.assertEqual(w[3].unexpected, [], "a one-way call was answered")

    def test_garbage_payload_gets_unknown_and_the_node_keeps_serving(self):
        w = self.peers((1,))[1]
        # A length-delimited field 1 claiming 5 bytes with 2 present: never a valid message.
        m = w.call("proto.Storage.WriteQC", b"\x0a\x05ab")
        code, text = status_of(m)
        self.assertEqual(code, UNKNOWN, text)
        self.assertTrue(text.startswith("gorums: could not unmarshal request: "), text)
        self.assertEqual(m.payload, b"")
        m = w.call("benchmark.Benchmark.QuorumCall", b"\xff\xff\xff")
        self.assertEqual(status_of(m)[0], UNKNOWN, status_of(m))
        # Same stream, next call fine; another stream too.
        r = ok(w.call("proto.Storage.WriteQC", write_req("after-garbage", "ok", 1)),
               spb.WriteResponse)
        self.assertTrue(r.New)
        r = ok(self.wire(self.cluster.address(1)).call("proto.Storage.ReadRPC",
                                                       spb.ReadRequest(Key="after-garbage")),
               spb.ReadResponse)
        self.assertEqual(r.Value, "ok")

    def test_unknown_method_gets_unimplemented_with_gorums_text(self):
        w = self.peers((2,))[2]
        for method in ("proto.Storage.Nope", "nosuch.Service.Method"):
            code, text = status_of(w.call(method, b""))
            self.assertEqual(code, UNIMPLEMENTED, text)
            self.assertEqual(text, "no handler registered for method %s" % method)
        r = ok(w.call("proto.Storage.ReadRPC", spb.ReadRequest(Key="x")), spb.ReadResponse)
        self.assertFalse(r.OK)

    def test_benchmark_echo_multicast_counting_and_slow_server(self):
        w = self.peers()
        echo = bpb.Echo(payload=b"\x00\x01payload" * 20)
        replies = self.qcall(w, "benchmark.Benchmark.QuorumCall", echo)
        for i, raw in replies.items():
            self.assertEqual(raw, echo.SerializeToString(), "node %d" % i)
        self.qcall(w, "benchmark.Benchmark.StartServerBenchmark", bpb.StartRequest())
        counts = {1: 5, 2: 17, 3: 40}
        for i, n in counts.items():
            for k in range(n):
                w[i].start("benchmark.Benchmark.Multicast",
                           bpb.TimedMsg(send_time=time.time_ns(), payload=b"%d" % k), oneway=True)
        results = self.qcall(w, "benchmark.Benchmark.StopServerBenchmark", bpb.StopRequest(),
                             bpb.Result)
        for i, r in results.items():
            self.assertEqual(r.total_ops, counts[i], "node %d: %s" % (i, r))
            self.assertGreater(r.total_time, 0)
            self.assertGreater(r.throughput, 0)
            self.assertGreaterEqual(r.latency_avg, 0)
        for i in (1, 2, 3):
            self.assertEqual(w[i].unexpected, [], "node %d answered a multicast" % i)
        # SlowServer: the configured default 10 ms, then the echo.
        t0 = time.monotonic()
        replies = self.qcall(w, "benchmark.Benchmark.SlowServer", echo, bpb.Echo)
        self.assertGreaterEqual(time.monotonic() - t0, 0.009)
        for r in replies.values():
            self.assertEqual(r.payload, echo.payload)

    def test_client_peer_shows_in_client_config_and_answers_notify(self):
        addr = self.cluster.address(1)
        acked = {"proto.StorageClient.Notify":
                 lambda m: spb.WriteResponse(New=True).SerializeToString()}
        refusing = {"proto.StorageClient.Notify": lambda m: (FAILED_PRECONDITION, "not now")}
        good = self.wire(addr, metadata=[(NODE_ID_KEY, "0")], handlers=acked)
        # One call so that the node has accepted and classified the stream.
        ok(good.call("proto.Storage.ReadRPC", spb.ReadRequest(Key="x")))
        st = self.wait_status(addr, lambda s: len(s["client_config"]) == 1,
                              "the client peer shows in ClientConfig")
        good_id = st["client_config"][0]
        self.assertGreaterEqual(good_id, FIRST_CLIENT_ID)
        self.assertEqual(st["config"], [1, 2, 3])
        bad = self.wire(addr, metadata=[(NODE_ID_KEY, "0")], handlers=refusing)
        ok(bad.call("proto.Storage.ReadRPC", spb.ReadRequest(Key="x")))
        st = self.wait_status(addr, lambda s: len(s["client_config"]) == 2,
                              "the second client peer shows in ClientConfig")
        bad_id = [c for c in st["client_config"] if c != good_id][0]
        # Other nodes have no clients.
        self.assertEqual(status(self.cluster.address(2))["client_config"], [])
        # NotifyClients from a plain client: the node calls Notify on both client peers.
        plain = self.wire(addr)
        req = write_req("note", "hello clients", 42)
        r = ok(plain.call("proto.Storage.NotifyClients", req), spb.NotifyResponse)
        self.assertEqual((r.Acked, list(r.ClientIDs)), (1, [good_id]))
        for w in (good, bad):
            m = w.server_requests.get(timeout=1)
            self.assertTrue(m.message_seq_no & BIT63, str(m))
            self.assertEqual(m.method, "proto.StorageClient.Notify")
            self.assertEqual(spb.WriteRequest.FromString(m.payload), req)
        # A NotifyClients made by the client peer itself reaches itself too.
        r = ok(good.call("proto.Storage.NotifyClients", req), spb.NotifyResponse)
        self.assertEqual(list(r.ClientIDs), [good_id])
        # Leaving: ClientConfig empties, NotifyClients acks nobody.
        good.close()
        bad.close()
        self.wait_status(addr, lambda s: s["client_config"] == [],
                         "the client peers leave ClientConfig")
        r = ok(plain.call("proto.Storage.NotifyClients", req), spb.NotifyResponse)
        self.assertEqual((r.Acked, list(r.ClientIDs)), (0, []))
        # A client peer's ID is never reused.
        again = self.wire(addr, metadata=[(NODE_ID_KEY, "0")], handlers=acked)
        ok(again.call("proto.Storage.ReadRPC", spb.ReadRequest(Key="x")))
        st = self.wait_status(addr, lambda s: len(s["client_config"]) == 1,
                              "a new client peer shows in ClientConfig")
        self.assertGreater(st["client_config"][0], max(good_id, bad_id))


# ---- 2. kill and restart ---------------------------------------------------------------------

class ClusterFailoverTest(Case):

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster("failover")
        cls.nodes = list(cls.cluster.nodes.values())

    @classmethod
    def tearDownClass(cls):
        for n in cls.cluster.nodes.values():
            n.kill()

    def test_sigkill_node3_majority_still_works_then_restart_heals_config(self):
        c = self.cluster
        for i in (1, 2, 3):
            self.wait_status(c.address(i), full_config, "node %d shows Config 1 2 3" % i)
        w = {i: self.wire(c.address(i)) for i in (1, 2, 3)}
        for i in (1, 2, 3):
            ok(w[i].call("proto.Storage.WriteQC", write_req("fk", "before", 10)))
        c.nodes[3].proc.kill()  # SIGKILL
        c.nodes[3].wait(STOP_TIMEOUT)
        self.assertEqual(c.nodes[3].proc.returncode, -signal.SIGKILL)
        for i in (1, 2):
            self.wait_status(c.address(i), lambda s: s["config"] == [1, 2],
                             "node %d shows Config 1 2 after node 3 died" % i)
        # The stream to node 3 has ended; a quorum call over the three still reaches a
        # majority through nodes 1 and 2.
        self.assertTrue(wait_for(lambda: w[3].stream.ended.is_set(), REPLY_TIMEOUT),
                        "the stream to the killed node did not end")
        with self.assertRaises(WireError):
            w[3].call("proto.Storage.WriteQC", write_req("fk", "after", 20))
        handles = {i: w[i].start("proto.Storage.WriteQC", write_req("fk", "after", 20))
                   for i in (1, 2)}
        news = {i: ok(w[i].wait(h), spb.WriteResponse).New for i, h in handles.items()}
        self.assertEqual(news, {1: True, 2: True})
        reads = {i: ok(w[i].call("proto.Storage.ReadQC", spb.ReadRequest(Key="fk")),
                       spb.ReadResponse) for i in (1, 2)}
        self.assertEqual({i: r.Value for i, r in reads.items()}, {1: "after", 2: "after"})
        r = ok(w[1].call("proto.Storage.ReadNestedQC", spb.ReadRequest(Key="fk")),
               spb.ReadResponse)
        self.assertEqual(r.Value, "after")
        # Restart node 3 with the same command.
        c.nodes[3].start()
        self.assertTrue(c.nodes[3].wait_log("serving on"), self.logs())
        for i in (1, 3):
            self.wait_status(c.address(i), full_config,
                             "node %d shows Config 1 2 3 after the restart" % i)
        self.wait_status(c.address(2), full_config, "node 2 shows Config 1 2 3 again")
        # Node 3 starts empty (in memory: no data_dir) and catches up from its peers as they
        # join its Config; a nested read through it finds the majority's value at once.
        w3 = self.wire(c.address(3))
        r = ok(w3.call("proto.Storage.ReadNestedQC", spb.ReadRequest(Key="fk")),
               spb.ReadResponse)
        self.assertEqual((r.OK, r.Value), (True, "after"))
        # Until it caught up from both peers it refuses reads (UNAVAILABLE, "restarted without
        # data_dir"), then answers with the value it pulled.
        def node3_has_it():
            m = w3.call("proto.Storage.ReadRPC", spb.ReadRequest(Key="fk"))
            code, text = status_of(m)
            if code != OK:
                self.assertIn("restarted without data_dir", text)
                return False
            return spb.ReadResponse.FromString(m.payload).Value == "after"
        self.assertTrue(wait_for(node3_has_it, 10), "node 3 did not catch up the write it missed")
        for i in (1, 2, 3):
            self.assertStopped(c.nodes[i])
        self.assertEqual([f for f in os.listdir(c.state) if f.endswith(".so")], [],
                         "plugin copies left after every node stopped")


# ---- 3. graceful stop --------------------------------------------------------------------------

SINGLE_BENCH = """\
version: 1
node: {{ id: 1, listen: "127.0.0.1:{port}" }}
plugins:
  - name: benchmark
    path: {plugins}/benchmark.so
    config: {{ slow_server_ms: {slow} }}
limits: {{ shutdown_grace_ms: {grace} }}
"""


class GracefulStopTest(Case):

    def start_node(self, slow_ms=10, grace_ms=5000, extra_args=()):
        d = new_tmp("stop-")
        state = os.path.join(d, "state")
        os.mkdir(state, 0o700)

        def make(port):
            path = write_yaml(d, "node.yaml", SINGLE_BENCH.format(
                port=port, plugins=plugin_dir(), slow=slow_ms, grace=grace_ms))
            return ["--config", path] + list(extra_args), base_env(NH_STATE_DIR=state)
        node = self.start_single(make, "stop", d)
        node.state = state
        return node

    def test_sigterm_and_sigint_stop_an_idle_node_with_status_0(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            node = self.start_node()
            ok(self.wire(node.address).call("benchmark.Benchmark.QuorumCall", bpb.Echo()))
            elapsed = self.assertStopped(node, sig)
            self.assertLess(elapsed, 5.0 * SCALE, "%s took %.1f s" % (sig.name, elapsed))
            # (A call counts as open until the node has finished sending its reply, so the
            # call just answered may still be counted.)
            self.assertRegex(node.log(), r"draining \([01] call\(s\) open, grace 5000 ms\)")
            self.assertEqual([f for f in os.listdir(node.state) if f.endswith(".so")], [])

    def test_sigterm_lets_the_call_in_flight_finish_and_refuses_new_calls(self):
        # Long enough for the signal and the two refused calls below to happen meanwhile.
        slow_ms = 2500 if SCALE == 1 else 4000
        node = self.start_node(slow_ms=slow_ms, grace_ms=int(20000 * SCALE))
        a = self.wire(node.address)
        b = self.wire(node.address)  # open before the signal, used after it
        ok(b.call("benchmark.Benchmark.QuorumCall", bpb.Echo(payload=b"b")))
        slow = a.start("benchmark.Benchmark.SlowServer", bpb.Echo(payload=b"slow"))
        # SlowServer releases the stream's order: a later request on the same stream is
        # dispatched (and answered) only after SlowServer's handler ran, so once this reply is
        # here, the slow call is in flight on the node.
        ok(a.call("benchmark.Benchmark.QuorumCall", bpb.Echo(payload=b"a")))
        node.send_signal(signal.SIGTERM)
        self.assertTrue(node.wait_log_re(r"draining \([12] call\(s\) open"),
                        "no draining line with the slow call open" + self.logs())
        # Calls arriving after the signal: on a stream opened before it, and on a new one.
        for w in (b, self.wire(node.address, ready_timeout=REPLY_TIMEOUT)):
            code, text = status_of(w.call("benchmark.Benchmark.QuorumCall", bpb.Echo()))
            self.assertEqual((code, text), (UNAVAILABLE, "node is shutting down"))
        self.assertTrue(node.alive(), "the node exited before the slow call finished")
        # The slow call finishes with its reply.
        r = ok(a.wait(slow, timeout=slow_ms / 1000.0 + REPLY_TIMEOUT), bpb.Echo)
        self.assertEqual(r.payload, b"slow")
        rc = node.wait(STOP_TIMEOUT)
        self.assertEqual(rc, 0, "exit code %r%s" % (rc, self.logs()))
        node._forget()
        self.assertRegex(node.log(), r"node 1 stopped")
        self.assertNotIn("stopping anyway", node.log())

    def test_grace_expiry_stops_the_node_with_a_call_still_open(self):
        # The slow call takes well past the grace, also on a slow machine (ThreadSanitizer
        # builds take most of a second from the signal to the end of the streams).
        node = self.start_node(slow_ms=3000, grace_ms=200)
        a = self.wire(node.address)
        slow = a.start("benchmark.Benchmark.SlowServer", bpb.Echo(payload=b"slow"))
        ok(a.call("benchmark.Benchmark.QuorumCall", bpb.Echo(payload=b"a")))
        rc, elapsed = node.stop(signal.SIGTERM)
        self.assertEqual(rc, 0, "exit code %r%s" % (rc, self.logs()))
        log = node.log()
        self.assertRegex(log, r"[12] call\(s\) still open after 200 ms; stopping anyway")
        self.assertRegex(log, r"node 1 stopped")
        # The slow call's reply is dropped: its stream ends without it (or carries an error).
        try:
            m = a.wait(slow, timeout=REPLY_TIMEOUT)
            self.assertNotEqual(status_of(m)[0], OK, "the slow call succeeded after the "
                                "grace expired: %s" % m)
        except WireError:
            pass

    def test_second_signal_stops_without_waiting_for_the_call_in_flight(self):
        slow_ms = 3000
        node = self.start_node(slow_ms=slow_ms, grace_ms=60000)
        a = self.wire(node.address)
        slow = a.start("benchmark.Benchmark.SlowServer", bpb.Echo(payload=b"slow"))
        ok(a.call("benchmark.Benchmark.QuorumCall", bpb.Echo(payload=b"a")))  # slow is running
        node.send_signal(signal.SIGTERM)
        self.assertTrue(node.wait_log_re(r"draining \([12] call\(s\) open"), self.logs())
        t0 = time.monotonic()
        node.send_signal(signal.SIGTERM)
        self.assertTrue(node.wait_log_re(r"second stop signal: not waiting for [12] call\(s\)"),
                        self.logs())
        # The streams are cancelled at once: the slow call's client is not left waiting.
        with self.assertRaises(WireError):
            a.wait(slow, timeout=REPLY_TIMEOUT)
        rc = node.wait(slow_ms / 1000.0 + STOP_TIMEOUT)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, "exit code %r%s" % (rc, self.logs()))
        node._forget()
        self.assertRegex(node.log(), r"node 1 stopped")
        if elapsed > slow_ms / 1000.0 * 0.8:
            # KNOWN BUG: nh_run_node() frees the runtime, which joins the worker threads, so
            # the process waits for offloaded work however long it blocks (here SlowServer's
            # sleep), after the grace period or a second signal as well.
            self.skipTest("KNOWN BUG: the node exited %.1f s after the second signal, i.e. "
                          "only when the %d ms SlowServer call on a worker finished"
                          % (elapsed, slow_ms))


# ---- 4. command line and --check-config ------------------------------------------------------

def parse_bad_header(path):
    """The `# key: value` lines at the top of a tests/conf/bad file (tests/conf/README.md):
    expect (LINE:COL: message, ${DIR} = the file's absolute directory, ${NH_TEST_PLUGIN_DIR} =
    the test plugins' directory), env (NAME=value), unset (NAME), id (N), stage (plugins: the
    error comes from loading the plugins); env and unset may repeat."""
    spec = {"expect": None, "env": {}, "unset": [], "id": None, "stage": None}
    with open(path) as f:
        for line in f:
            m = re.match(r"#\s*(expect|env|unset|id|stage):\s?(.*?)\s*$", line)
            if not m:
                if line.startswith("#"):
                    continue
                break
            key, val = m.groups()
            if key == "expect":
                spec["expect"] = val
            elif key == "env":
                k, _, v = val.partition("=")
                spec["env"][k] = v
            elif key == "unset":
                spec["unset"].append(val)
            elif key == "stage":
                spec["stage"] = val
            else:
                spec["id"] = val
    return spec


# The longest message a normal start can print for a plugin error (it goes through nh_error,
# NH_ERROR_MESSAGE_MAX - 1 characters); --check-config prints them whole.
NH_ERROR_MESSAGE_MAX = 320


class CommandLineTest(Case):

    def test_every_shipped_conf_file_passes_check_config(self):
        files = sorted(glob.glob(conf_path("*.yaml")))
        self.assertGreaterEqual(len(files), 3, files)
        state = new_tmp("check-state-")
        # Files with a tls section read NH_TLS_DIR and NH_NODE: test certificates for them.
        certs = os.path.join(new_tmp("check-certs-"), "certs")
        subprocess.run(["bash", os.path.join(nu.source_dir(), "tests", "tls", "make_certs.sh"),
                        certs], check=True, capture_output=True)
        for path in files:
            with open(path) as f:
                text = f.read()
            has_node_id = re.search(r"(?m)^node:.*\bid:|^node:\s*\n(\s+.*\n)*?\s+id:",
                                    text) is not None
            ids = [None] if has_node_id else ["1", "2", "3"]
            for node_id in ids:
                with self.subTest(file=os.path.basename(path), id=node_id):
                    args = ["--config", path, "--check-config"]
                    if node_id:
                        args += ["--id", node_id]
                    r = run_nodehost(args, env=base_env(NH_PLUGIN_DIR=plugin_dir(),
                                                        NH_STATE_DIR=state, NH_TLS_DIR=certs,
                                                        NH_NODE=node_id or "1"))
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertIn("OK", r.stdout)
                    self.assertTrue(r.stdout.startswith(path + ": OK"), r.stdout)
        self.assertEqual(os.listdir(state), [], "--check-config left plugin copies")

    def test_every_bad_conf_file_fails_with_its_declared_message(self):
        files = sorted(glob.glob(os.path.join(nu.source_dir(), "tests", "conf", "bad",
                                              "*.yaml")))
        self.assertGreater(len(files), 0)
        state = new_tmp("bad-state-")
        plugins = os.path.dirname(tplugin("good_echo"))
        for path in files:
            path = os.path.realpath(path)
            spec = parse_bad_header(path)
            with self.subTest(file=os.path.basename(path)):
                self.assertIsNotNone(spec["expect"], "no '# expect:' line in the header")
                expected = "%s:%s" % (path, spec["expect"].replace(
                    "${DIR}", os.path.dirname(path)).replace("${NH_TEST_PLUGIN_DIR}", plugins))
                env = base_env(NH_STATE_DIR=state, NH_TEST_PLUGIN_DIR=plugins, **spec["env"])
                for k in spec["unset"]:
                    env.pop(k, None)
                args = ["--config", path]
                if spec["id"]:
                    args += ["--id", spec["id"]]
                # --check-config, then a normal start: both stop at the same error, the only
                # one of the file. A start reports a plugin error in its log.
                for extra in (["--check-config"], []):
                    r = run_nodehost(args + extra, env=env)
                    self.assertEqual(r.returncode, 1, "%s: %s / %s"
                                     % (extra, r.stdout, r.stderr))
                    if spec["stage"] == "plugins" and not extra:
                        self.assertIn(expected[:NH_ERROR_MESSAGE_MAX - 1], r.stderr)
                        continue
                    self.assertEqual(r.stderr.strip(), expected, extra)
                    self.assertEqual(r.stdout, "", extra)
        self.assertEqual(os.listdir(state), [], "plugin copies left")

    def test_check_config_lists_every_error_in_file_order(self):
        d = new_tmp("multi-")
        text = """\
version: 1
node: {{ id: 1, listen: "127.0.0.1:7001" }}
colour: blue
peers:
  - {{ id: 1, address: "127.0.0.1:7001" }}
  - {{ id: 2, address: "127.0.0.1" }}
plugins:
  - name: storage
    path: {storage}
    config: {{ max_keys: 0 }}
  - name: echo
    path: {echo}
  - name: other
    path: {other}
  - name: admin
    path: {reserved}
log: {{ level: loud }}
keepalive: {{ time_ms: 5 }}
""".format(storage=os.path.join(plugin_dir(), "storage.so"), echo=tplugin("good_echo"),
           other=tplugin("good_other"), reserved=tplugin("bad_reserved"))
        path = write_yaml(d, "multi.yaml", text)
        state = new_tmp("multi-state-")
        want = [
            "3:1: unknown key 'colour' (expected one of: version, node, peers, clients, "
            "plugins, reload, limits, keepalive, log, tls, admin, metrics, threads)",
            '6:23: peers[1].address: bad address "127.0.0.1" (expected host:port)',
            "8:5: plugins[0]: plugin 'storage': config: %s:10:25: plugins[0].config.max_keys: "
            "must be between 1 and 1000000000, got 0" % path,
            "13:5: plugins[2]: method 'plugtest.Echo.Echo' is declared by plugin 'echo' (%s) "
            "and by plugin 'other' (%s); plugin 'echo' is plugins[1], line 11"
            % (tplugin("good_echo"), tplugin("good_other")),
            "15:5: plugins[3]: plugin 'admin': method 'nodehost.Admin.Status' is reserved for "
            "the host (names starting with 'nodehost.')",
            '17:15: log.level: must be one of error, warn, info, debug, got "loud"',
            "18:23: keepalive.time_ms: must be between 100 and 3600000, got 5",
        ]
        r = run_nodehost(["--config", path, "--check-config"], env=base_env(NH_STATE_DIR=state))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertEqual(r.stderr.splitlines(),
                         ["%s:%s" % (path, w) for w in want] + ["%s: 7 errors" % path])
        self.assertEqual(os.listdir(state), [], "--check-config left plugin copies")
        # A normal start reports every error of the file itself (its plugins are not loaded
        # when the file is wrong).
        r = run_nodehost(["--config", path], env=base_env(NH_STATE_DIR=state))
        self.assertEqual(r.returncode, 1, r.stderr)
        file_errors = [w for w in want if "plugins[" not in w]
        self.assertEqual(r.stderr.splitlines(), ["%s:%s" % (path, w) for w in file_errors]
                         + ["%s: %d errors" % (path, len(file_errors))])

    def test_check_config_stops_listing_after_20_errors(self):
        d = new_tmp("many-")
        peers = "".join('  - { id: %d, address: "h%d" }\n' % (i, i) for i in range(1, 31))
        path = write_yaml(d, "many.yaml", "version: 1\nnode: { id: 1 }\npeers:\n" + peers)
        r = run_nodehost(["--config", path, "--check-config"],
                         env=base_env(NH_STATE_DIR=new_tmp("many-state-")))
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 21, r.stderr)
        for i, line in enumerate(lines[:20], 1):
            self.assertEqual(line, '%s:%d:%d: peers[%d].address: bad address "h%d" (expected '
                             'host:port)' % (path, 3 + i, 22 + len(str(i)), i - 1, i))
        self.assertEqual(lines[20], "%s: ... and 10 more errors (30 in all)" % path)

    def test_help_and_version(self):
        for flag in ("--help", "-h"):
            r = run_nodehost([flag])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("--check-config", r.stdout)
            self.assertIn("status ADDRESS", r.stdout)
            self.assertIn("--config", r.stdout)
        r = run_nodehost(["status", "--help"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("status", r.stdout)
        for flag in ("--version", "-V"):
            r = run_nodehost([flag])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertRegex(r.stdout, r"^nodehost \d+\.\d+\.\d+\S*\n$")

    def test_usage_errors_exit_2(self):
        cases = [
            (["--bogus"], "unrecognized option"),
            ([], "missing --config"),
            (["--check-config"], "missing --config"),
            (["--config"], "requires an argument"),
            (["--config", conf_path("single-node.yaml"), "extra"], "unexpected argument"),
            (["--config", conf_path("single-node.yaml"), "--id", "0"], "--id must be"),
            (["--config", conf_path("single-node.yaml"), "--id", "1048576"], "--id must be"),
            (["--config", conf_path("single-node.yaml"), "--id", "x"], "--id must be"),
            (["--config", conf_path("single-node.yaml"), "--log-format", "xml"],
             "--log-format must be"),
            (["--config", conf_path("single-node.yaml"), "--log-level", "loud"],
             "--log-level must be"),
            (["status"], "missing ADDRESS"),
            (["status", "127.0.0.1:1", "--bogus"], "unexpected argument"),
            (["status", "127.0.0.1:1", "--timeout-ms", "0"], "--timeout-ms"),
        ]
        for args, text in cases:
            with self.subTest(args=args):
                r = run_nodehost(args)
                self.assertEqual(r.returncode, 2, "%s / %s" % (r.stdout, r.stderr))
                self.assertIn(text, r.stderr)

    def test_missing_config_file_and_unreachable_status_exit_1(self):
        r = run_nodehost(["--config", "/nonexistent/nodehost.yaml", "--check-config"])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("/nonexistent/nodehost.yaml", r.stderr)
        port = nu.free_port()  # nobody listens there
        r = run_nodehost(["status", "127.0.0.1:%d" % port, "--timeout-ms", "300"])
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("nodehost status: 127.0.0.1:%d: " % port, r.stderr)
        self.assertEqual(r.stdout, "")


# ---- 5. plugins through the program ----------------------------------------------------------

PLUGIN_NODE = """\
version: 1
node: {{ id: 1, listen: "127.0.0.1:{port}" }}
plugins:
{plugins}"""


def plugin_entry(name, path):
    return "  - name: %s\n    path: %s\n" % (name, path)


# name -> (file, distinctive substrings of the error)
BAD_PLUGINS = {
    "bad_no_entry": ("missing entry symbol 'nh_plugin_entry'",),
    "bad_entry_null": ("entry function 'nh_plugin_entry' returned NULL",),
    "bad_magic": ("descriptor magic is 0x12345678",),
    "bad_abi": ("plugin ABI version is 99",),
    "bad_truncated": ("truncated descriptor: size 16",),
    "bad_dup_method": ("method 'plugtest.Echo.Echo' is declared twice",),
    "bad_null_handler": ("'plugtest.Echo.Nothing': handler is NULL",),
    "bad_method_name": ("name 'NoDots' is not of the form pkg.Service.Method",),
    "bad_request_desc": ("'plugtest.Echo.Echo': request descriptor is NULL",),
    "bad_state_hooks": ("export_state but no import_state",),
}


class PluginErrorTest(Case):

    def setUp(self):
        self.dir = new_tmp("plugins-")
        self.state = os.path.join(self.dir, "state")
        os.mkdir(self.state, 0o700)
        self.env = base_env(NH_STATE_DIR=self.state)
        self.nodes = []

    def config(self, name, entries, port=None):
        self.port = port or nu.free_port()
        return write_yaml(self.dir, name + ".yaml", PLUGIN_NODE.format(
            port=self.port, plugins="".join(plugin_entry(n, p) for n, p in entries)))

    def assert_fails(self, path, substrings, check_passes=False):
        """--check-config and a normal start of path: exit 1 with every substring on stderr
        (check_passes: --check-config succeeds instead); nothing left in the state dir."""
        r = run_nodehost(["--config", path, "--check-config"], env=self.env)
        if check_passes:
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(": OK", r.stdout)
        else:
            self.assertEqual(r.returncode, 1, "%s / %s" % (r.stdout, r.stderr))
            for s in substrings:
                self.assertIn(s, r.stderr, "--check-config")
        try:
            r = run_nodehost(["--config", path], env=self.env)
        except subprocess.TimeoutExpired:
            self.fail("a node with a bad plugin kept running")
        self.assertEqual(r.returncode, 1, "normal start: %s / %s" % (r.stdout, r.stderr))
        for s in substrings:
            self.assertIn(s, r.stderr, "normal start")
        self.assertEqual([f for f in os.listdir(self.state) if not f.startswith(".")], [],
                         "plugin copies left after a failed start")

    def test_each_bad_plugin_fails_check_and_start_naming_plugin_and_field(self):
        for name, subs in sorted(BAD_PLUGINS.items()):
            with self.subTest(plugin=name):
                path = self.config(name, [(name, tplugin(name))])
                self.assert_fails(path, ("%s.yaml:4:5: plugins[0]: " % name,
                                         "plugin '%s' (%s)" % (name, tplugin(name))) + subs)

    def test_garbage_file_and_missing_file(self):
        garbage = os.path.join(self.dir, "garbage.so")
        with open(garbage, "wb") as f:
            f.write(b"\x7fELF not really" + bytes(range(256)) * 8)
        path = self.config("garbage", [("garbage", garbage)])
        self.assert_fails(path, ("plugins[0]: plugin 'garbage'", "cannot load %s" % garbage))
        missing = os.path.join(self.dir, "missing.so")
        path = self.config("missing", [("missing", missing)])
        self.assert_fails(path, ("missing.yaml:5:11: plugins[0].path: plugin file '%s' not found"
                                 % missing,))

    def test_bad_init_passes_check_but_fails_to_start(self):
        path = self.config("init", [("good_echo", tplugin("good_echo")),
                                    ("bad_init", tplugin("bad_init"))])
        self.assert_fails(path, ("plugins[1]: plugin 'bad_init'",
                                 "init failed: cannot open database /nonexistent"),
                          check_passes=True)

    def test_two_plugins_declaring_one_method_fail_naming_both(self):
        path = self.config("conflict", [("good_echo", tplugin("good_echo")),
                                        ("good_other", tplugin("good_other"))])
        # At the second plugin's entry, naming the first one's.
        self.assert_fails(path, (
            "conflict.yaml:6:5: plugins[1]: method 'plugtest.Echo.Echo' is declared by plugin "
            "'good_echo' (%s) and by plugin 'good_other' (%s)"
            % (tplugin("good_echo"), tplugin("good_other")),))
        r = run_nodehost(["--config", path, "--check-config"], env=self.env)
        self.assertTrue(r.stderr.rstrip().endswith("; plugin 'good_echo' is plugins[0], line 4"),
                        r.stderr)

    def test_handler_error_reaches_the_client_and_the_node_keeps_serving(self):
        node = self.start_single(
            lambda port: (["--config", self.config("echo", [("good_echo", tplugin("good_echo"))],
                                                   port)], self.env), "echo", self.dir)
        w = self.wire(node.address)
        req = tpb.EchoMsg(text="h\u00e9llo", n=7)
        for _ in range(2):
            code, text = status_of(w.call("plugtest.Echo.Fail", req))
            self.assertEqual((code, text), (FAILED_PRECONDITION, "good_echo: Fail always fails"))
            self.assertEqual(ok(w.call("plugtest.Echo.Echo", req), tpb.EchoMsg), req)
        code, text = status_of(w.call("plugtest.Echo.Echo", b"\x0a\x05ab"))
        self.assertEqual((code, text), (UNKNOWN, "gorums: could not unmarshal request: "
                                                 "not a valid plugtest.EchoMsg"))
        self.assertEqual(ok(w.call("plugtest.Echo.Echo", req), tpb.EchoMsg), req)
        st = status(node.address)
        self.assertEqual([(p["name"], p["version"], p["methods"]) for p in st["plugins"]],
                         [("good_echo", "1.0.0", 2)])
        self.assertStopped(node)
        self.assertEqual([f for f in os.listdir(self.state) if f.endswith(".so")], [])

    def test_status_json_escapes_strings(self):
        odd = os.path.join(self.dir, 'we"ird\\dir')
        os.mkdir(odd)
        shutil.copy(tplugin("good_echo"), odd)
        plugin = os.path.join(odd, "good_echo.so")
        text = ('version: 1\nnode: {{ id: 1, listen: "127.0.0.1:{port}" }}\n'
                "plugins:\n  - name: echo\n    path: '%s'\n" % plugin)
        node = self.start_single(
            lambda port: (["--config", write_yaml(self.dir, "odd.yaml", text.format(port=port))],
                          self.env), "odd", self.dir)
        r = run_nodehost(["status", node.address, "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("good_echo.so", r.stdout)
        try:
            st = json.loads(r.stdout)
        except ValueError as e:
            # KNOWN BUG: print_status() in host/admin/admin.c prints names, versions, paths and
            # the listen address into the JSON without escaping them.
            self.skipTest("KNOWN BUG: `nodehost status --json` prints invalid JSON for a path "
                          "with '\"' or '\\\\' (%s): %s" % (e, r.stdout.strip()))
        self.assertEqual(st["plugins"][0]["path"], plugin)
        self.assertEqual(st["plugins"][0]["name"], "echo")


# ---- 6. logs -----------------------------------------------------------------------------------

class LogTest(Case):

    def start(self, text_or_path, args, label, port_env=None, **env):
        """A node from a config text ("{port}" replaced) or the path of a file reading its
        port from the variable port_env."""
        def make(port):
            e = base_env(NH_PLUGIN_DIR=plugin_dir(), NH_STATE_DIR=self.state, **env)
            if port_env:
                e[port_env] = str(port)
                path = text_or_path
            else:
                path = write_yaml(self.dir, label + ".yaml", text_or_path.replace("{port}",
                                                                                  str(port)))
            return ["--config", path] + list(args), e
        return self.start_single(make, label, self.dir)

    def setUp(self):
        self.dir = new_tmp("logs-")
        self.state = os.path.join(self.dir, "state")
        os.mkdir(self.state, 0o700)
        self.nodes = []

    def json_lines(self, node):
        out = []
        for line in node.log().splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                self.fail("not a JSON object: %r%s" % (line, self.logs()))
            self.assertIsInstance(obj, dict, line)
            for k in ("ts", "level", "component", "msg"):
                self.assertIn(k, obj, line)
            self.assertIn(obj["level"], ("error", "warn", "info", "debug"), line)
            out.append(obj)
        return out

    def test_log_format_json_flag_single_node_with_hello(self):
        node = self.start(conf_path("single-node.yaml"), ["--log-format", "json"], "json",
                          port_env="NH_PORT")
        w = self.wire(node.address)
        r = ok(w.call("hello.Greeter.SayHello", hpb.HelloRequest(name="py")), hpb.HelloReply)
        self.assertEqual(r.message, "Hello, py! (from node 1)")
        r = ok(w.call("hello.Greeter.SayHelloQC", hpb.HelloRequest(name="qc")), hpb.HelloReply)
        self.assertEqual(r.message, "Hello, qc! (from node 1)")
        self.assertStopped(node)
        lines = self.json_lines(node)
        loaded = [o for o in lines if o["component"] == "plugins" and
                  o["msg"].startswith("plugin 'hello' version 1.0.0 generation 1 loaded from ")]
        self.assertEqual(len(loaded), 1, lines)
        self.assertTrue(loaded[0]["msg"].endswith(os.path.join(plugin_dir(), "hello.so")),
                        loaded[0])
        self.assertEqual(loaded[0]["level"], "info")
        self.assertTrue(any(o["component"] == "host" and "serving on %s" % node.address
                            in o["msg"] for o in lines), lines)
        self.assertEqual(lines[-1]["msg"], "node 1 stopped", lines[-1])

    def test_log_format_json_from_the_file_and_log_level_flag(self):
        text = ('version: 1\nnode: { id: 5, listen: "127.0.0.1:{port}" }\n'
                "plugins:\n  - { name: echo, path: %s }\nlog: { format: json, level: debug }\n"
                % tplugin("good_echo"))
        node = self.start(text, [], "json-file")
        ok(self.wire(node.address).call("plugtest.Echo.Echo", tpb.EchoMsg(text="x")))
        self.assertStopped(node)
        lines = self.json_lines(node)
        self.assertTrue(any(o["component"] == "plugins" and "plugin 'echo'" in o["msg"]
                            for o in lines), lines)
        self.assertTrue(any(o["level"] == "debug" for o in lines), "log.level debug: no debug")
        # --log-level error overrides the file: a clean run says nothing at all. (No "serving
        # on" line to wait for: wait until status lists the plugin.)
        port = nu.free_port()
        path = write_yaml(self.dir, "quiet.yaml", text.replace("{port}", str(port)))
        quiet = NodeProc(["--config", path, "--log-level", "error"],
                         base_env(NH_STATE_DIR=self.state), "quiet", self.dir)
        self.nodes = [quiet]
        self.addCleanup(quiet.kill)
        address = "127.0.0.1:%d" % port
        self.wait_status(address, lambda st: len(st["plugins"]) == 1, "the quiet node is up")
        ok(self.wire(address).call("plugtest.Echo.Echo", tpb.EchoMsg(text="x")))
        rc, _ = quiet.stop()
        self.assertEqual(rc, 0, self.logs())
        self.assertEqual(quiet.log(), "")

    def test_text_log_names_component_and_level(self):
        node = self.start(conf_path("single-node.yaml"), [], "text", port_env="NH_PORT")
        self.assertStopped(node)
        for line in node.log().splitlines():
            self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
                                   r"(error|warn|info|debug) [a-z]+: ")
        self.assertIn("info plugins: plugin 'hello' version 1.0.0 generation 1 loaded from ",
                      node.log())


# ---- main --------------------------------------------------------------------------------------

def _report_logs():
    for n in _started:
        sys.stderr.write("--- %s (exit %r) stderr tail ---\n%s\n"
                         % (n.label, n.proc.returncode if n.proc else None, n.log_tail(3000)))


def _watchdog(name, seconds):
    sys.stderr.write("%s: watchdog fired after %.0f s; killing nodes\n" % (name, seconds))
    _report_logs()
    kill_all()
    sys.stderr.flush()
    nu.cleanup()
    os._exit(3)


def run_main(name, watchdog_s):
    """Runs the unittest cases of __main__ under a watchdog of watchdog_s seconds, reports the
    nodes' logs on failure, stops every node, removes the temporary files (kept on failure
    with NH_KEEP_TMP) and exits 0 or 1 (also used by the other nodehost interop files)."""
    timer = threading.Timer(watchdog_s, _watchdog, (name, watchdog_s))
    timer.daemon = True
    timer.start()
    ok_run = False
    try:
        prog = unittest.main(module="__main__", exit=False, verbosity=2)
        ok_run = prog.result.wasSuccessful()
        if not ok_run:
            _report_logs()
    finally:
        timer.cancel()
        kill_all()
        if _tmp_root:
            if ok_run or not os.environ.get("NH_KEEP_TMP"):
                shutil.rmtree(_tmp_root, True)
            else:
                sys.stderr.write("temporary files kept in %s\n" % _tmp_root)
        sys.stderr.flush()
        nu.cleanup()
    # grpcio threads must not keep a failing run alive or turn it into success.
    os._exit(0 if ok_run else 1)


def main():
    run_main("test_nodehost_interop", WATCHDOG)


if __name__ == "__main__":
    main()
