#!/usr/bin/python3
"""Integration: hot reload of the storage plugin on a live 3-node `nodehost` cluster under load.

Real processes, real files: each test copies build/plugins/storage.so into a temporary
directory as the configured plugin path, writes a 3-node cluster YAML (free loopback ports) and
starts three `nodehost --config FILE --id N --state-dir DIR` processes. A driver thread keeps
one long-lived Gorums NodeStream per node (opened once, never reopened; a broken stream is
counted) and sends about 200 calls/s over them with Debian's grpcio: WriteQC frames to all
three nodes (a unique key, an increasing timestamp; every node must answer New) and ReadRPC
frames of keys written before (every answer must have the value). Every failure (error status,
wrong answer, timeout, broken stream) is recorded with the latency of every call.

A "rebuild" lands another build of the plugin the way a linker or `mv` does: the file is copied
next to the configured path under a temporary name and os.rename()d over it. The builds are
build/tests/plugins/storage_r2.so, _r3.so, _r4.so (tests/reload/CMakeLists.txt): the same
sources with the versions 1.0.0+r2, +r3, +r4, which proto.Storage.Info reports together with
the generation serving and the number of keys.

Tests:
  test_three_reloads_under_load  r2 on node 1 only (SIGHUP), r3 on all nodes (`nodehost reload`
                       for node 2, SIGHUP for 1 and 3), r4 on all nodes (nodehost.Admin.Reload
                       over grpcio: changed 1, summary naming the versions). No failed call, no
                       broken stream, every key on a majority of nodes (all of them in fact),
                       exact generations (node 1: 4; nodes 2, 3: 3), "serving (was version"
                       log lines, no old generations left in `nodehost status --json`.
  test_sighup_storm    100 SIGHUPs to node 1 within about 1 s with r2 renamed in halfway: the
                       node lives, reloads are coalesced (1 <= count < 100), the generation
                       serving is the file on disk (r2, generation 2), no failed call.
  test_calls_in_flight_finish_on_the_old_generation  nodes 2 and 3 SIGSTOPped, so that 20
                       ReadNestedQC calls on node 1 stay open (deferred replies); r2 lands and
                       node 1 reloads (Admin.Reload): new calls get r2 while status shows one old
                       generation with the open calls; SIGCONT: they all finish with the right
                       value, then generation 1 is unloaded. No failed call.
  test_broken_reload_keeps_the_old_generation  a text file, then tests' bad_init.so renamed
                       over the path: nodehost.Admin.Reload answers an error naming the plugin
                       and the cause, Info still answers 1.0.0 generation 1, calls keep
                       succeeding; r3 renamed in: the reload succeeds (generation 2).
Every test ends with SIGTERM to every node: exit status 0, "stopped", no sanitizer report in
the logs (the processes are sanitized in an NH_SANITIZE build), no plugin copy left behind.

The measured numbers (calls, p50/p99 latency before and during the reload windows, reload
counts) are printed on stderr, so they show in `ctest --output-on-failure -V`. Nothing is
asserted about timing: waits are bounded by generous limits (scaled for sanitizer builds).
Skips (exit 0, "SKIP: ...") only when grpcio is missing.

Run through ctest (sets NH_SOURCE_DIR and NH_BINARY_DIR), or by hand:
  NH_BINARY_DIR=<build> /usr/bin/python3 tests/interop/test_nodehost_reload.py -v
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import grpc  # noqa: F401  (test_nodehost_interop needs it)
except ImportError as _e:
    print("SKIP: test_nodehost_reload needs grpcio for /usr/bin/python3 (%s)" % _e)
    sys.exit(0)

import nh_interop_util as nu  # noqa: E402
import test_nodehost_interop as ni  # noqa: E402  (processes, status, helpers)

INFO = "proto.Storage.Info"
WRITE_QC = "proto.Storage.WriteQC"
READ_RPC = "proto.Storage.ReadRPC"
READ_NESTED = "proto.Storage.ReadNestedQC"
RELOAD = "nodehost.Admin.Reload"
BIT63 = 1 << 63

WATCHDOG = 270.0                       # the whole file (normal run: about 30 s)
CALL_TIMEOUT = 10.0 * ni.SCALE         # one driver call without a reply = failed
RELOAD_TIMEOUT = 20.0 * ni.SCALE       # one reload (admin RPC, CLI)
TICK = 0.010                           # driver: one write (3 frames) or one read per tick
RUN_SECONDS = 12.0                     # the driver's run in the main test

SANITIZER_REPORT = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|"
                              r"WARNING: ThreadSanitizer|SUMMARY: \w+Sanitizer")

apb = None  # nodehost/admin_pb2


def setUpModule():
    global apb
    ni.setUpModule()
    protoc = shutil.which("protoc") or "/usr/bin/protoc"
    subprocess.run([protoc, "--python_out=" + ni._pb_dir,
                    "-I" + os.path.join(nu.source_dir(), "host", "proto"),
                    "nodehost/admin.proto"], check=True, timeout=60)
    from nodehost import admin_pb2  # generated above, in ni._pb_dir (on sys.path)
    apb = admin_pb2


def tearDownModule():
    ni.tearDownModule()


def say(fmt, *args):
    sys.stderr.write((fmt % args if args else fmt) + "\n")
    sys.stderr.flush()


def reload_build(rev):
    """build/tests/plugins/storage_<rev>.so (tests/reload/CMakeLists.txt)."""
    return ni.tplugin("storage_" + rev)


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


def stopped(pid):
    """True when the process is stopped (SIGSTOP): state T in /proc/PID/stat."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except OSError:
        return False


def cli_has_reload():
    r = ni.run_nodehost(["--help"])
    return r.returncode == 0 and "nodehost reload" in r.stdout


# ---- one call and one long-lived stream ------------------------------------------------------

class Call:
    """One request on a Link: done(call) runs on the stream's reader thread (or the sweeper's)
    when the reply arrives or the call failed (timeout, broken stream)."""

    __slots__ = ("method", "sent", "latency", "reply", "error", "done", "event", "tag")

    def __init__(self, method, done, tag):
        self.method = method
        self.done = done
        self.tag = tag
        self.sent = 0.0
        self.latency = None
        self.reply = None
        self.error = None
        self.event = threading.Event()

    def finish(self, reply, error):
        self.latency = time.monotonic() - self.sent
        self.reply, self.error = reply, error
        if self.done is not None:
            try:
                self.done(self)
            except Exception as e:  # pragma: no cover - a bug in the test
                say("callback of %s raised %r", self.method, e)
        self.event.set()


class Link:
    """One NodeStream to one node, opened once and never reopened. Any number of calls may be
    in flight; replies are matched by message_seq_no."""

    def __init__(self, node_id, address):
        self.node_id = node_id
        self.address = address
        self.channel = grpc.insecure_channel(address)
        grpc.channel_ready_future(self.channel).result(timeout=ni.READY_TIMEOUT)
        self._lock = threading.Lock()
        self._pending = {}
        self._seq = 0
        self.unexpected = 0
        self.stream = nu.NodeStream(self.channel, deadline=ni.STREAM_DEADLINE,
                                    on_reply=self._on_reply)

    def start(self, method, payload=b"", done=None, tag=None):
        if not isinstance(payload, (bytes, bytearray)):
            payload = payload.SerializeToString()
        call = Call(method, done, tag)
        with self._lock:
            self._seq += 1
            seq = self._seq
            self._pending[seq] = call
            call.sent = time.monotonic()
        if self.stream.ended.is_set():
            self.sweep(time.monotonic(), CALL_TIMEOUT)
        else:
            self.stream.send(nu.make_message(ni.pb, seq, method, bytes(payload)))
        return call

    def call(self, method, payload=b"", timeout=None):
        """Waits for the reply Message; raises AssertionError when the call failed."""
        c = self.start(method, payload)
        if not c.event.wait((timeout or CALL_TIMEOUT) + 5.0):
            raise AssertionError("%s on node %d: no outcome" % (method, self.node_id))
        if c.error:
            raise AssertionError("%s on node %d: %s" % (method, self.node_id, c.error))
        return c.reply

    def _on_reply(self, stream, m):
        if m.message_seq_no & BIT63:
            return  # nothing here serves requests from the node
        with self._lock:
            c = self._pending.pop(m.message_seq_no, None)
        if c is None:
            self.unexpected += 1
            return
        if m.method != c.method:
            c.finish(m, "reply names method %r" % m.method)
        else:
            c.finish(m, None)

    def sweep(self, now, timeout):
        """Fails calls older than timeout, and every open call once the stream ended."""
        ended = self.stream.ended.is_set()
        with self._lock:
            if ended:
                gone = list(self._pending.values())
                self._pending.clear()
            else:
                gone = [c for c in self._pending.values() if now - c.sent > timeout]
                for k in [k for k, c in self._pending.items() if c in gone]:
                    del self._pending[k]
        for c in gone:
            c.finish(None, "stream ended (%s %r)" % (self.stream.code, self.stream.details)
                     if ended else "no reply within %.0f s" % timeout)

    def open_calls(self):
        with self._lock:
            return len(self._pending)

    def close(self):
        if not self.stream.ended.is_set():
            self.stream.cancel()
        self.channel.close()


def info(link, timeout=None):
    """(version, generation, keys) from proto.Storage.Info."""
    m = link.call(INFO, b"", timeout)
    r = ni.ok(m, ni.spb.InfoResponse)
    return r.Version, r.Generation, r.Keys


# ---- the load ----------------------------------------------------------------------------------

class Driver(threading.Thread):
    """About 200 calls/s over the links: each tick of 10 ms either a WriteQC frame to every node
    (a new key, a timestamp larger than every earlier one) or a read of a key that every node
    already took, to the next node in turn: ReadRPC, or every other time ReadNestedQC (the node
    reads from its peers; the plugin defers the reply, so such a call can still be open on the
    old generation when a reload switches). With flood set, every tick also sends a
    ReadNestedQC to every node (300 more calls/s)."""

    def __init__(self, links):
        super().__init__(daemon=True)
        self.links = links
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.t0 = None
        self.sent = 0
        self.answered = 0
        self.failures = []         # (seconds since t0, text)
        self.samples = []          # (sent at, seconds since t0; latency in ms; method)
        self.written = {}          # key -> value, every write sent
        self.acks = {}             # key -> number of nodes that answered New
        self.confirmed = []        # keys every node took, in order
        self.n_write = 0
        self.n_read = 0
        self.behind = 0            # ticks the driver could not keep up with (sanitizer builds)
        self.flood = threading.Event()
        self.sweeper = threading.Thread(target=self._sweep, daemon=True)

    # -- outcomes (reader threads) --

    def _record(self, call, problem=None):
        with self.lock:
            self.answered += 1
            sent_at = call.sent - self.t0
            if call.error or problem:
                self.failures.append((sent_at, "node %d %s %s: %s"
                                      % (call.tag[0], call.method, call.tag[1],
                                         call.error or problem)))
            else:
                self.samples.append((sent_at, call.latency * 1000.0, call.method))

    def _write_done(self, call):
        node_id, key = call.tag
        problem = None
        if not call.error:
            code, text = ni.status_of(call.reply)
            if code != ni.OK:
                problem = "status %d %r" % (code, text)
            elif not ni.spb.WriteResponse.FromString(call.reply.payload).New:
                problem = "answered New = false for a new key"
        self._record(call, problem)
        if not call.error and problem is None:
            with self.lock:
                self.acks[key] += 1
                if self.acks[key] == len(self.links):
                    self.confirmed.append(key)

    def _read_done(self, call):
        node_id, key = call.tag
        problem = None
        if not call.error:
            code, text = ni.status_of(call.reply)
            if code != ni.OK:
                problem = "status %d %r" % (code, text)
            else:
                r = ni.spb.ReadResponse.FromString(call.reply.payload)
                if not r.OK or r.Value != self.written[key]:
                    problem = "read (%s, %r), expected %r" % (r.OK, r.Value, self.written[key])
        self._record(call, problem)

    # -- sending --

    def _write(self):
        i = self.n_write
        self.n_write += 1
        key = "reload-key-%06d" % i
        value = "value-%06d-%x" % (i, (i * 2654435761) & 0xffffffff)
        with self.lock:
            self.written[key] = value
            self.acks[key] = 0
        # Increasing timestamps: 1 ms apart, from a fixed origin.
        req = ni.write_req(key, value, 1700000000 + i // 1000, (i % 1000) * 1000000)
        payload = req.SerializeToString()
        for link in self.links:
            with self.lock:
                self.sent += 1
            link.start(WRITE_QC, payload, self._write_done, (link.node_id, key))

    def _read(self, link=None, method=None):
        with self.lock:
            if not self.confirmed:
                return
            # Mostly recent keys (written around the current generation), sometimes old ones.
            n = len(self.confirmed)
            key = self.confirmed[-1 - (self.n_read * 7) % min(n, 50)] if self.n_read % 4 \
                else self.confirmed[(self.n_read * 131) % n]
            self.sent += 1
        if link is None:
            link = self.links[self.n_read % len(self.links)]
        if method is None:
            method = READ_NESTED if (self.n_read // len(self.links)) % 2 else READ_RPC
        self.n_read += 1
        link.start(method, ni.spb.ReadRequest(Key=key), self._read_done, (link.node_id, key))

    def run(self):
        tick = 0
        nxt = time.monotonic()
        while not self.stop_flag.is_set():
            if tick % 2 == 0:
                self._write()
            else:
                self._read()
            if self.flood.is_set():
                for link in self.links:
                    self._read(link, READ_NESTED)
            tick += 1
            nxt += TICK
            now = time.monotonic()
            if nxt > now:
                time.sleep(nxt - now)
            elif now - nxt > 0.1:  # far behind: do not burst to catch up
                self.behind += 1
                nxt = now

    def _sweep(self):
        while not self.stop_flag.is_set():
            now = time.monotonic()
            for link in self.links:
                link.sweep(now, CALL_TIMEOUT)
            time.sleep(0.1)

    def begin(self):
        self.t0 = time.monotonic()
        self.start()
        self.sweeper.start()

    def now(self):
        return time.monotonic() - self.t0

    def finish(self):
        """Stops sending and waits until every call has an outcome."""
        self.stop_flag.set()
        self.join(10)
        self.sweeper.join(5)
        end = time.monotonic() + CALL_TIMEOUT + 5.0
        while any(link.open_calls() for link in self.links) and time.monotonic() < end:
            for link in self.links:
                link.sweep(time.monotonic(), CALL_TIMEOUT)
            time.sleep(0.02)

    def latencies(self, lo, hi):
        with self.lock:
            return [ms for (t, ms, _) in self.samples if lo <= t < hi]

    def report(self, title, windows):
        """Prints calls made and p50/p99 latency before the first window and in each window
        ((label, start, end) in seconds since t0)."""
        with self.lock:
            sent, answered, nfail = self.sent, self.answered, len(self.failures)
            keys = len(self.written)
        dur = self.now()
        by_method = {}
        with self.lock:
            for (_, _, m) in self.samples:
                by_method[m] = by_method.get(m, 0) + 1
        say("[%s] %d calls in %.1f s (%.0f/s): %d writes x %d nodes, %d reads; %d answered, "
            "%d failed; %d keys written, driver behind schedule %d time(s)",
            title, sent, dur, sent / dur if dur else 0, self.n_write, len(self.links),
            self.n_read, answered, nfail, keys, self.behind)
        say("[%s]   answered by method: %s", title, ", ".join(
            "%s %d" % (m.split(".")[-1], n) for m, n in sorted(by_method.items())))
        first = min([w[1] for w in windows] or [dur])
        rows = [("before the first reload", 0.0, first)] + list(windows)
        for label, lo, hi in rows:
            lat = self.latencies(lo, hi)
            say("[%s]   %-34s %5.2f-%5.2f s: %5d calls, p50 %7.2f ms, p99 %7.2f ms, max %7.2f ms",
                title, label, lo, hi, len(lat), pct(lat, 50), pct(lat, 99),
                max(lat) if lat else float("nan"))


# ---- the cluster -------------------------------------------------------------------------------

CLUSTER_YAML = """\
version: 1
peers:
  - {{ id: 1, address: "127.0.0.1:{p1}" }}
  - {{ id: 2, address: "127.0.0.1:{p2}" }}
  - {{ id: 3, address: "127.0.0.1:{p3}" }}
clients: {{ accept: true, max: 10000 }}
plugins:
  - name: storage
    path: {plugin}
    config: {{ max_keys: 100000 }}
log: {{ level: info, format: text }}
# The in-flight test keeps two nodes SIGSTOPped across a reload: keepalive must not declare
# them dead meanwhile (a sanitizer build's reload can take seconds).
keepalive: {{ time_ms: 10000, timeout_ms: 20000 }}
"""


class ReloadCluster:
    """Three nodes serving a copy of build/plugins/storage.so at <tmp>/plugin/storage.so."""

    def __init__(self, label):
        self.dir = ni.new_tmp(label + "-")
        self.state = os.path.join(self.dir, "state")
        os.mkdir(self.state, 0o700)
        self.plugin_dir = os.path.join(self.dir, "plugin")
        os.mkdir(self.plugin_dir)
        self.plugin = os.path.join(self.plugin_dir, "storage.so")
        shutil.copy(os.path.join(ni.plugin_dir(), "storage.so"), self.plugin)
        self.landed = 0
        self.nodes = {}
        last = ""
        for attempt in range(3):  # a free port may be taken meanwhile: retry with new ones
            ports = ni.distinct_free_ports(3)
            self.ports = dict(zip((1, 2, 3), ports))
            self.config = ni.write_yaml(self.dir, "cluster.yaml", CLUSTER_YAML.format(
                p1=ports[0], p2=ports[1], p3=ports[2], plugin=self.plugin))
            self.nodes = {i: ni.NodeProc(["--config", self.config, "--id", str(i),
                                          "--state-dir", self.state], ni.base_env(),
                                         "%s-node%d-try%d" % (label, i, attempt), self.dir)
                          for i in (1, 2, 3)}
            if all(n.wait_log("serving on") for n in self.nodes.values()):
                return
            last = self.logs()
            for n in self.nodes.values():
                n.kill()
        raise RuntimeError("the cluster did not start:" + last)

    def address(self, i):
        return "127.0.0.1:%d" % self.ports[i]

    def land(self, src):
        """A new build arrives: copied to a temporary name in the same directory, then renamed
        over the configured path (as a linker or `mv` lands it)."""
        self.landed += 1
        tmp = os.path.join(self.plugin_dir, ".storage.so.tmp%d" % self.landed)
        shutil.copyfile(src, tmp)
        os.rename(tmp, self.plugin)

    def land_bytes(self, data):
        self.landed += 1
        tmp = os.path.join(self.plugin_dir, ".storage.so.tmp%d" % self.landed)
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, self.plugin)

    def logs(self):
        return "".join("\n--- node %d (%s) stderr ---\n%s" % (i, n.label, n.log_tail())
                       for i, n in sorted(self.nodes.items()))

    def kill(self):
        for n in self.nodes.values():
            n.kill()


class ReloadTest(unittest.TestCase):

    def setUp(self):
        self.cluster = ReloadCluster(self.id().split(".")[-1].replace("test_", ""))
        self.addCleanup(self.cluster.kill)
        for i in (1, 2, 3):
            st = ni.wait_for(lambda: (lambda s: s if s and s["config"] == [1, 2, 3] else None)(
                ni.status(self.cluster.address(i))), ni.READY_TIMEOUT, 0.05)
            self.assertTrue(st, "node %d does not show Config [1, 2, 3]%s"
                            % (i, self.cluster.logs()))
        # In-memory storage answers reads once it caught up from its peers after the start.
        for i in (1, 2, 3):
            self.assertTrue(self.cluster.nodes[i].wait_log("recovered: caught up"),
                            "node %d did not recover%s" % (i, self.cluster.logs()))
        self.links = [Link(i, self.cluster.address(i)) for i in (1, 2, 3)]
        self.addCleanup(self._close_links)
        self.driver = Driver(self.links)

    def _close_links(self):
        self.driver.stop_flag.set()
        for link in self.links:
            link.close()

    # -- helpers --

    def fail_with_logs(self, msg):
        self.fail(msg + self.cluster.logs())

    def infos(self):
        return {link.node_id: info(link) for link in self.links}

    def wait_versions(self, want, what):
        """Polls Info on every node until {node: (version, generation)} equals want; returns
        the seconds it took."""
        t0 = time.monotonic()
        last = {}

        def check():
            for link in self.links:
                v, g, _ = info(link)
                last[link.node_id] = (v, g)
            return last == want
        if not ni.wait_for(check, ni.READY_TIMEOUT, 0.02):
            self.fail_with_logs("%s: Info answers %s, expected %s" % (what, last, want))
        return time.monotonic() - t0

    def sighup(self, i):
        self.cluster.nodes[i].send_signal(signal.SIGHUP)

    def reload_cli(self, i):
        r = ni.run_nodehost(["reload", self.cluster.address(i), "--timeout-ms",
                             str(int(RELOAD_TIMEOUT * 1000))], timeout=RELOAD_TIMEOUT + 10)
        self.assertEqual(r.returncode, 0, "nodehost reload node %d: %s%s%s"
                         % (i, r.stdout, r.stderr, self.cluster.logs()))
        return r.stdout

    def reload_rpc(self, i):
        """nodehost.Admin.Reload on node i's long-lived stream: the reply Message."""
        return self.links[i - 1].call(RELOAD, apb.ReloadRequest(), RELOAD_TIMEOUT)

    def status(self, i):
        st = ni.status(self.cluster.address(i))
        self.assertIsNotNone(st, "no status from node %d%s" % (i, self.cluster.logs()))
        return st

    def wait_no_old_generations(self):
        """Waits until no node has an earlier generation left (its calls drained); returns
        {node: status}."""
        out = {}
        for i in (1, 2, 3):
            def done():
                st = ni.status(self.cluster.address(i))
                if st and all(p["old_generations"] == 0 and p["old_calls"] == 0
                              for p in st["plugins"]):
                    return st
                out[i] = st
                return None
            st = ni.wait_for(done, ni.READY_TIMEOUT, 0.05)
            if not st:
                self.fail_with_logs("node %d still has old generations: %s" % (i, out.get(i)))
            out[i] = st
        return out

    def assert_no_failures(self):
        d = self.driver
        self.assertEqual(d.failures, [], "%d failed call(s), first ones: %s%s"
                         % (len(d.failures), d.failures[:10], self.cluster.logs()))
        broken = [(link.node_id, link.stream.code, link.stream.details)
                  for link in self.links if link.stream.ended.is_set()]
        self.assertEqual(broken, [], "broken streams" + self.cluster.logs())
        self.assertEqual(sum(link.unexpected for link in self.links), 0, "unexpected replies")
        self.assertEqual(d.answered, d.sent, "calls without an outcome")

    def read_back_everything(self):
        """Every key written, read with ReadRPC on every node: asserts each is on a majority
        with its value; returns (keys, keys on all nodes)."""
        d = self.driver
        calls = []
        for key in d.written:
            for link in self.links:
                calls.append((key, link.node_id,
                              link.start(READ_RPC, ni.spb.ReadRequest(Key=key))))
        good = {}
        bad = []
        for key, node_id, c in calls:
            if not c.event.wait(CALL_TIMEOUT + 5.0) or c.error:
                bad.append("%s on node %d: %s" % (key, node_id, c.error or "no outcome"))
                continue
            code, text = ni.status_of(c.reply)
            r = ni.spb.ReadResponse.FromString(c.reply.payload) if code == ni.OK else None
            if r is not None and r.OK and r.Value == d.written[key]:
                good[key] = good.get(key, 0) + 1
            else:
                bad.append("%s on node %d: %s" % (key, node_id, (code, text) if r is None
                                                  else (r.OK, r.Value)))
        minority = [k for k in d.written if good.get(k, 0) < 2]
        self.assertEqual(minority, [], "keys not on a majority (%d); reads that missed: %s%s"
                         % (len(minority), bad[:10], self.cluster.logs()))
        return len(d.written), sum(1 for k in d.written if good.get(k) == 3)

    def stop_cluster(self):
        """SIGTERM to every node: exit 0, "stopped", no sanitizer report, no plugin copy left
        in the state directory."""
        for link in self.links:
            link.close()
        for n in self.cluster.nodes.values():
            n.send_signal(signal.SIGTERM)
        problems = []
        for i, n in sorted(self.cluster.nodes.items()):
            rc = n.wait(ni.STOP_TIMEOUT)
            if rc is None:
                n.kill()
            log = n.log()
            if rc != 0:
                problems.append("node %d: exit code %r" % (i, rc))
            if not re.search(r"node %d stopped" % i, log):
                problems.append("node %d: no 'stopped' line" % i)
            m = SANITIZER_REPORT.search(log)
            if m:
                problems.append("node %d: sanitizer report (%s)" % (i, m.group(0)))
        left = [f for f in os.listdir(self.cluster.state) if f.endswith(".so")]
        if left:
            problems.append("plugin copies left in the state directory: %s" % left)
        if problems:
            self.fail("stopping the cluster: %s%s" % ("; ".join(problems), self.cluster.logs()))

    # -- tests --

    def test_three_reloads_under_load(self):
        c = self.cluster
        self.assertEqual(self.infos(), {i: ("1.0.0", 1, 0) for i in (1, 2, 3)})
        use_cli = cli_has_reload()
        d = self.driver
        d.begin()
        windows = []

        def at(t):
            while d.now() < t:
                time.sleep(0.01)

        # a. r2 lands; only node 1 reloads (SIGHUP).
        at(2.0)
        t = d.now()
        c.land(reload_build("r2"))
        self.sighup(1)
        took_a = self.wait_versions({1: ("1.0.0+r2", 2), 2: ("1.0.0", 1), 3: ("1.0.0", 1)},
                                    "r2 on node 1 only")
        windows.append(("a: r2 on node 1 (SIGHUP)", t, d.now() + 0.2))

        # b. r3 lands; every node reloads (the CLI for node 2, SIGHUP for nodes 1 and 3).
        at(max(5.0, d.now() + 0.5))
        t = d.now()
        c.land(reload_build("r3"))
        self.sighup(1)
        self.sighup(3)
        cli_out = None
        if use_cli:
            cli_out = self.reload_cli(2)
        else:
            self.sighup(2)
        took_b = self.wait_versions({1: ("1.0.0+r3", 3), 2: ("1.0.0+r3", 2),
                                     3: ("1.0.0+r3", 2)}, "r3 on every node")
        windows.append(("b: r3 on all (%s)" % ("SIGHUP+CLI" if use_cli else "SIGHUP"), t,
                        d.now() + 0.2))
        if cli_out is not None:
            self.assertRegex(cli_out, r"^reload \d+: 1 plugin\(s\) changed in [\d.]+ ms: "
                                      r"storage 1\.0\.0 -> 1\.0\.0\+r3 \(gen 2\)")

        # c. r4 lands; every node reloads through nodehost.Admin.Reload over grpcio, while
        # extra ReadNestedQC calls (deferred replies) are in flight.
        at(max(8.0, d.now() + 0.5))
        d.flood.set()
        at(d.now() + 0.1)
        t = d.now()
        c.land(reload_build("r4"))
        replies = {}
        threads = [threading.Thread(target=lambda i=i: replies.__setitem__(i, self.reload_rpc(i)))
                   for i in (1, 2, 3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(RELOAD_TIMEOUT + 10)
        at(d.now() + 0.2)
        d.flood.clear()
        windows.append(("c: r4 on all (Admin.Reload RPC)", t, d.now()))
        summaries = {}
        for i in (1, 2, 3):
            self.assertIn(i, replies, "no Reload reply from node %d" % i)
            r = ni.ok(replies[i], apb.ReloadResponse)
            gen = 4 if i == 1 else 3
            self.assertEqual(r.changed, 1, "node %d: %s" % (i, r))
            self.assertIn("storage 1.0.0+r3 -> 1.0.0+r4 (gen %d)" % gen, r.summary)
            self.assertEqual([(p.name, p.version, p.generation) for p in r.plugins],
                             [("storage", "1.0.0+r4", gen)])
            summaries[i] = (r.reload, r.summary, r.took_ns / 1e6)
        self.wait_versions({1: ("1.0.0+r4", 4), 2: ("1.0.0+r4", 3), 3: ("1.0.0+r4", 3)},
                           "r4 on every node")

        # The load goes on for at least 2 more seconds.
        at(max(RUN_SECONDS, d.now() + 2.0))
        d.finish()
        d.report("three reloads", windows)
        say("[three reloads] confirmed after the reload: a %.0f ms, b %.0f ms; Reload replies: %s",
            took_a * 1000, took_b * 1000,
            "; ".join("node %d: reload %d %r in %.1f ms" % ((i,) + summaries[i])
                      for i in sorted(summaries)))
        self.assert_no_failures()
        self.assertGreater(len(d.confirmed), 0)

        # Data kept across the reloads: every key on a majority (every node took every write).
        keys, on_all = self.read_back_everything()
        say("[three reloads] %d keys read back: %d on all 3 nodes, %d on 2", keys, on_all,
            keys - on_all)
        for i, (v, g, k) in self.infos().items():
            self.assertEqual((v, g, k), ("1.0.0+r4", 4 if i == 1 else 3, keys), "node %d" % i)

        # The logs tell the switches; no earlier generation is left once its calls drained.
        expect = {1: [("1.0.0+r2", 2, "1.0.0", 1), ("1.0.0+r3", 3, "1.0.0+r2", 2),
                      ("1.0.0+r4", 4, "1.0.0+r3", 3)],
                  2: [("1.0.0+r3", 2, "1.0.0", 1), ("1.0.0+r4", 3, "1.0.0+r3", 2)]}
        expect[3] = expect[2]
        for i, switches in expect.items():
            log = c.nodes[i].log()
            self.assertEqual(len(re.findall(r"serving \(was version", log)), len(switches),
                             "node %d%s" % (i, c.logs()))
            for nv, ng, ov, og in switches:
                self.assertIn("plugin 'storage' version %s generation %d serving (was version %s "
                              "generation %d, " % (nv, ng, ov, og), log, "node %d" % i)
        open_at_switch = {i: [int(n) for n in re.findall(
            r"serving \(was version \S+ generation \d+, (\d+) call\(s\) still open on it\)",
            c.nodes[i].log())] for i in (1, 2, 3)}
        say("[three reloads] calls still open on the old generation at each switch: %s",
            "; ".join("node %d %s" % (i, v) for i, v in sorted(open_at_switch.items())))
        statuses = self.wait_no_old_generations()
        for i, st in statuses.items():
            self.assertEqual((st["reloads"], st["reload_failures"], st["last_reload_error"]),
                             (3 if i == 1 else 2, 0, ""), "node %d: %s" % (i, st))
            p = st["plugins"][0]
            self.assertEqual((p["version"], p["generation"]), ("1.0.0+r4", 4 if i == 1 else 3))
        say("[three reloads] status: %s", "; ".join(
            "node %d reloads %d, last took %.1f ms, old generations %d" % (
                i, st["reloads"], st["last_reload_took_ns"] / 1e6,
                st["plugins"][0]["old_generations"]) for i, st in sorted(statuses.items())))
        self.stop_cluster()

    def test_sighup_storm(self):
        c = self.cluster
        d = self.driver
        d.begin()
        while d.now() < 1.0:
            time.sleep(0.01)
        node = c.nodes[1]
        d.flood.set()  # deferred ReadNestedQC replies in flight across the switch
        t = d.now()
        # 100 SIGHUPs within about 1 s: bursts of 5, 50 ms apart; r2 lands after the 50th.
        for k in range(100):
            if k == 50:
                c.land(reload_build("r2"))
            os.kill(node.proc.pid, signal.SIGHUP)
            if k % 5 == 4:
                time.sleep(0.05)
        storm = d.now() - t
        d.flood.clear()
        self.assertTrue(node.alive(), "node 1 died in the SIGHUP storm" + c.logs())

        # The reloads settle: the generation serving is the file on disk (r2).
        self.wait_versions({1: ("1.0.0+r2", 2), 2: ("1.0.0", 1), 3: ("1.0.0", 1)},
                           "r2 on node 1 after the storm")
        last = {}

        def settled():
            st = self.status(1)
            same = last.get("st") is not None and st["reloads"] == last["st"]["reloads"]
            last["st"] = st
            return st if same else None
        st = None
        for _ in range(int(ni.READY_TIMEOUT / 0.3)):
            st = settled()
            if st:
                break
            time.sleep(0.3)
        self.assertIsNotNone(st, "node 1's reload count does not settle: %s" % last)
        t_end = d.now()
        while d.now() < t_end + 1.0:
            time.sleep(0.01)
        d.finish()
        d.report("SIGHUP storm", [("100 SIGHUPs to node 1", t, t + storm + 0.3)])
        say("[SIGHUP storm] 100 SIGHUPs in %.2f s -> %d reload(s) (%d failed), last took %.1f ms",
            storm, st["reloads"], st["reload_failures"], st["last_reload_took_ns"] / 1e6)
        self.assertTrue(node.alive(), "node 1 died" + c.logs())
        self.assertGreaterEqual(st["reloads"], 1)
        self.assertLess(st["reloads"], 100, "SIGHUPs were not coalesced")
        self.assertEqual((st["reload_failures"], st["last_reload_error"]), (0, ""), st)
        p = st["plugins"][0]
        self.assertEqual((p["version"], p["generation"]), ("1.0.0+r2", 2), st)
        self.assert_no_failures()
        for i in (2, 3):
            self.assertEqual(self.status(i)["reloads"], 0, "node %d reloaded" % i)
        self.assertEqual(len(re.findall(r"serving \(was version", node.log())), 1, c.logs())
        keys, on_all = self.read_back_everything()
        self.assertEqual(on_all, keys)
        self.wait_no_old_generations()
        self.stop_cluster()

    def test_calls_in_flight_finish_on_the_old_generation(self):
        c = self.cluster
        d = self.driver
        d.begin()
        while d.now() < 1.0 or len(d.confirmed) < 5:
            time.sleep(0.01)
        key = d.confirmed[-1]
        link = self.links[0]
        # Nodes 2 and 3 stopped: a ReadNestedQC on node 1 waits for one of them (a majority of
        # its Config), so its deferred reply keeps the call open on the generation it started on.
        self.addCleanup(lambda: [c.nodes[i].send_signal(signal.SIGCONT) for i in (2, 3)])
        for i in (2, 3):
            c.nodes[i].send_signal(signal.SIGSTOP)
        # kill() returns before the process has stopped: wait until the kernel says it has
        # (state T), so that no reply of theirs can still be on its way.
        for i in (2, 3):
            self.assertTrue(ni.wait_for(lambda: stopped(c.nodes[i].proc.pid), 10),
                            "node %d did not stop" % i)
        time.sleep(0.05)
        t = d.now()
        nested = [link.start(READ_NESTED, ni.spb.ReadRequest(Key=key)) for _ in range(20)]
        time.sleep(0.3)
        self.assertEqual([x for x in nested if x.event.is_set()], [],
                         "ReadNestedQC answered with nodes 2 and 3 stopped")
        c.land(reload_build("r2"))
        r = ni.ok(self.reload_rpc(1), apb.ReloadResponse)
        self.assertEqual(r.changed, 1, r)
        self.assertIn("storage 1.0.0 -> 1.0.0+r2 (gen 2)", r.summary)
        # New calls go to the new generation while the old one still has the open calls.
        self.assertEqual(info(link)[:2], ("1.0.0+r2", 2))
        st = self.status(1)
        p = st["plugins"][0]
        self.assertEqual((p["version"], p["generation"], p["old_generations"]),
                         ("1.0.0+r2", 2, 1), st)
        self.assertGreaterEqual(p["old_calls"], len(nested), st)
        m = re.search(r"generation 2 serving \(was version 1\.0\.0 generation 1, (\d+) call\(s\) "
                      r"still open on it\)", c.nodes[1].log())
        self.assertTrue(m, c.logs())
        open_calls = int(m.group(1))
        self.assertGreaterEqual(open_calls, len(nested))
        self.assertNotIn("generation 1 finished and unloaded", c.nodes[1].log())
        for i in (2, 3):
            c.nodes[i].send_signal(signal.SIGCONT)
        # The old generation's calls finish (the old code answers them), then it is unloaded.
        for x in nested:
            self.assertTrue(x.event.wait(CALL_TIMEOUT + 5.0), "a ReadNestedQC never finished")
            self.assertIsNone(x.error, x.error)
            rr = ni.ok(x.reply, ni.spb.ReadResponse)
            self.assertEqual((rr.OK, rr.Value), (True, d.written[key]))
        self.assertTrue(c.nodes[1].wait_log("version 1.0.0 generation 1 finished and unloaded"),
                        c.logs())
        window = ("nodes 2, 3 stopped; reload node 1", t, d.now())
        self.wait_no_old_generations()
        t_end = d.now() + 1.0
        while d.now() < t_end:
            time.sleep(0.01)
        d.finish()
        d.report("in-flight calls", [window])
        say("[in-flight calls] %d call(s) open on generation 1 at the switch (%d ReadNestedQC "
            "sent by the test), old_calls in status %d", open_calls, len(nested), p["old_calls"])
        self.assert_no_failures()
        keys, on_all = self.read_back_everything()
        self.assertEqual(on_all, keys)
        self.stop_cluster()

    def test_broken_reload_keeps_the_old_generation(self):
        c = self.cluster
        d = self.driver
        d.begin()
        windows = []
        while d.now() < 1.0:
            time.sleep(0.01)
        link = self.links[0]
        bad = [("a text file", None, "cannot load %s" % c.plugin)]
        if os.path.exists(ni.tplugin("bad_init")):
            bad.append(("bad_init.so", ni.tplugin("bad_init"),
                        "init failed: cannot open database /nonexistent"))
        for what, src, cause in bad:
            t = d.now()
            if src:
                c.land(src)
            else:
                c.land_bytes(b"this is not a plugin, just a text file\n" * 4)
            m = self.reload_rpc(1)
            code, text = ni.status_of(m)
            windows.append(("failed reload (%s)" % what, t, d.now() + 0.2))
            say("[broken reload] %s: status %d %r", what, code, text)
            self.assertNotEqual(code, ni.OK, "%s: the reload succeeded" % what)
            self.assertIn("plugin 'storage'", text)
            self.assertIn(cause, text)
            self.assertEqual(info(link)[:2], ("1.0.0", 1), "after the failed reload (%s)" % what)
            self.assertTrue(c.nodes[1].alive(), c.logs())
            t_next = d.now() + 0.5
            while d.now() < t_next:
                time.sleep(0.01)
        st = self.status(1)
        self.assertEqual((st["reloads"], st["reload_failures"]), (len(bad), len(bad)), st)
        self.assertIn("storage", st["last_reload_error"])
        self.assertEqual(st["plugins"][0]["generation"], 1, st)

        # A good build again: the reload succeeds and takes the data over.
        t = d.now()
        c.land(reload_build("r3"))
        r = ni.ok(self.reload_rpc(1), apb.ReloadResponse)
        windows.append(("good reload (r3)", t, d.now() + 0.2))
        self.assertEqual(r.changed, 1, r)
        self.assertIn("storage 1.0.0 -> 1.0.0+r3 (gen 2)", r.summary)
        self.wait_versions({1: ("1.0.0+r3", 2), 2: ("1.0.0", 1), 3: ("1.0.0", 1)},
                           "r3 on node 1 after the failed reloads")
        t_end = d.now() + 1.0
        while d.now() < t_end:
            time.sleep(0.01)
        d.finish()
        d.report("broken reload", windows)
        self.assert_no_failures()
        st = self.status(1)
        self.assertEqual((st["reloads"], st["reload_failures"], st["last_reload_error"]),
                         (len(bad) + 1, len(bad), ""), st)
        keys, on_all = self.read_back_everything()
        self.assertEqual(on_all, keys)
        self.assertEqual(info(link), ("1.0.0+r3", 2, keys))
        self.wait_no_old_generations()
        self.stop_cluster()


# ---- main --------------------------------------------------------------------------------------

def main():
    for rev in ("r2", "r3", "r4"):
        if not os.path.exists(reload_build(rev)):
            sys.stderr.write("test_nodehost_reload: %s is missing (build the target "
                             "nh_reload_plugins)\n" % reload_build(rev))
            os._exit(1)
    ni.run_main("test_nodehost_reload", WATCHDOG)


if __name__ == "__main__":
    main()
