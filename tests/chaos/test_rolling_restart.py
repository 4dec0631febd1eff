#!/usr/bin/python3
"""Rolling restart of a 3-node storage cluster with data_dir (sync: always), on loopback.

1. Writes 200 keys through WriteNestedQC (to the nodes in turn).
2. For each node in turn: SIGKILL, restart (same data_dir), wait until it is back in the
   other nodes' Config (`nodehost status ADDRESS --json`), give catch-up a moment. A majority
   stays up throughout; a writer thread keeps overwriting random keys and creating new ones
   (recording which writes were acknowledged and which are indeterminate), so each restarted
   node has missed some keys.
3. Info on every node reports the same number of keys (the acknowledged keys, plus perhaps
   keys whose only writes were indeterminate) within 20 s (anti-entropy); the time it took is
   printed. This runs before the final reads, which could repair what catch-up missed.
4. Every key reads back through every node (ReadNestedQC) with its last acknowledged value
   (or the value of a later indeterminate write, which may have taken effect); the whole
   history also goes through the linearizability checker.

  NH_BINARY_DIR=build NH_SOURCE_DIR=. /usr/bin/python3 tests/chaos/test_rolling_restart.py
Exit status 0 passed, 1 failed, 3 watchdog. NH_KEEP_TMP=1 keeps the run directory on failure
(it is kept anyway when the cluster does not start).
"""

import collections
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chaos_util as cu  # noqa: E402
import linearizability as lin  # noqa: E402

KEYS = 200
OP_TIMEOUT = 3.0
CATCH_UP_PAUSE = 2.0
CONVERGE_TIMEOUT = 20.0
WATCHDOG = 170.0
T0 = time.monotonic()


def now():
    return time.monotonic() - T0


def log(msg):
    sys.stdout.write("[%6.2f] %s\n" % (now(), msg))
    sys.stdout.flush()


class Recorder:
    """The history, and per key the last acknowledged value and the indeterminate values
    written after it (any of them may be what a later read returns)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ops = []
        self.acked = {}
        self.maybe = collections.defaultdict(list)
        self.counts = collections.Counter()
        self.new_keys = []

    def write(self, pool, node, key, value):
        t0 = now()
        kind, r = cu.call_once(pool, node, "proto.Storage.WriteNestedQC",
                               cu.spb.WriteRequest(Key=key, Value=value), OP_TIMEOUT)
        t1 = now()
        outcome = {"ok": "ok", "notsent": "fail"}.get(kind, "unknown")
        with self.lock:
            self.ops.append(lin.Op("w", "write", key, value, t0,
                                   t1 if outcome != "unknown" else None, outcome, node=node,
                                   index=len(self.ops)))
            self.counts[(outcome, kind if kind != "error" else "status %d" % r.code)] += 1
            if outcome == "ok":
                self.acked[key] = value
                self.maybe[key] = []
            elif outcome == "unknown":
                self.maybe[key].append(value)
        return kind, r

    def read(self, pool, node, key):
        t0 = now()
        kind, r = cu.call_once(pool, node, "proto.Storage.ReadNestedQC",
                               cu.spb.ReadRequest(Key=key), OP_TIMEOUT)
        t1 = now()
        if kind != "ok":
            return kind, r
        resp = r.decode(cu.spb.ReadResponse)
        value = resp.Value if resp.OK else None
        with self.lock:
            self.ops.append(lin.Op("final", "read", key, value, t0, t1, "ok", final=True,
                                   node=node, index=len(self.ops)))
        return "ok", value


class Writer(threading.Thread):
    """Overwrites random keys through nodes that are up (it avoids for a second a node it
    could not reach)."""

    def __init__(self, rec, addresses, stop):
        super().__init__(daemon=True, name="writer")
        self.rec = rec
        self.pool = cu.ConnPool(addresses)
        self.ids = sorted(addresses)
        self.stop = stop
        self.rng = random.Random(1)
        self.n = 0
        self.down = {}

    def run(self):
        try:
            while not self.stop.is_set():
                t = time.monotonic()
                up = [i for i in self.ids if self.down.get(i, 0) <= t] or self.ids
                node = self.rng.choice(up)
                self.n += 1
                if self.rng.random() < 0.5:
                    key = "r%d" % self.rng.randrange(KEYS)
                else:  # a new key: a node that is down misses it and must catch up
                    key = "n%d" % self.n
                    self.rec.new_keys.append(key)
                kind, _ = self.rec.write(self.pool, node, key, "bg-%d" % self.n)
                if kind == "notsent":
                    self.down[node] = time.monotonic() + 1.0
                time.sleep(0.005)
        finally:
            self.pool.close()


def main():
    failures = []
    cu.load_pbs()
    workdir = tempfile.mkdtemp(prefix="nh-rolling-")
    keep = [False]
    nodes = {}

    def cleanup():
        for n in nodes.values():
            n.kill()
        if keep[0] or (failures and os.environ.get("NH_KEEP_TMP")):
            print("run directory kept: %s" % workdir)
        else:
            shutil.rmtree(workdir, True)
        cu.cleanup_pbs()

    def watchdog():
        sys.stderr.write("test_rolling_restart: WATCHDOG after %.0f s\n" % WATCHDOG)
        for n in nodes.values():
            sys.stderr.write("--- node %d ---\n%s\n" % (n.id, n.log_tail(2000)))
        cleanup()
        os._exit(3)
    timer = threading.Timer(WATCHDOG, watchdog)
    timer.daemon = True
    timer.start()

    def on_signal(signum, _f):
        cleanup()
        os._exit(1)
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, on_signal)

    try:
        ids = [1, 2, 3]
        data_dir = os.path.join(workdir, "data")
        os.mkdir(data_dir)
        started = False
        for attempt in range(3):  # a free port may be taken meanwhile: retry with new ones
            addresses = {i: "127.0.0.1:%d" % p for i, p in zip(ids, cu.distinct_free_ports(3))}
            cfg = cu.write_cluster_yaml(os.path.join(workdir, "cluster.yaml"), addresses,
                                        {"data_dir": data_dir, "sync": "always"})
            if attempt == 0:
                chk = cu.run_nodehost(["--config", cfg, "--id", "1", "--check-config"])
                if chk.returncode != 0:
                    failures.append("the storage plugin rejects data_dir/sync (has the "
                                    "persistence work landed?): %s"
                                    % (chk.stdout + chk.stderr).strip())
                    return 1
            nodes = {i: cu.Node(i, cfg, addresses[i], workdir) for i in ids}
            for n in nodes.values():
                n.start()
            if all(n.wait_log("serving on", 30) for n in nodes.values()):
                started = True
                break
            for n in nodes.values():
                n.kill()
        if not started:
            keep[0] = True
            failures.append("the cluster did not start")
            return 1

        def in_configs(target, of):
            def pred():
                for j in of:
                    st = cu.status(addresses[j])
                    if st is None or target not in st.get("config", []):
                        return False
                return True
            return pred
        if not cu.wait_until(lambda: all(in_configs(i, ids)() for i in ids), 30, 0.2):
            failures.append("the cluster did not form (Config 1 2 3 everywhere) within 30 s")
            return 1
        log("cluster up: %s" % addresses)

        rec = Recorder()
        pool = cu.ConnPool(addresses)
        unacked = []
        for k in range(KEYS):
            key = "r%d" % k
            for attempt in range(3):
                kind, r = rec.write(pool, ids[k % 3], key, "init-%d-%d" % (k, attempt))
                if kind == "ok":
                    break
            else:
                unacked.append((key, kind, getattr(r, "message", r)))
        if unacked:
            failures.append("%d of %d initial writes were not acknowledged (3 attempts each), "
                            "e.g. %s" % (len(unacked), KEYS, unacked[:3]))
            return 1
        log("%d keys written" % KEYS)

        stop = threading.Event()
        writer = Writer(rec, addresses, stop)
        writer.start()
        for i in ids:
            others = [j for j in ids if j != i]
            nodes[i].kill()
            log("SIGKILL node %d" % i)
            time.sleep(0.5)
            nodes[i].start()
            t_restart = time.monotonic()
            if not nodes[i].wait_log("serving on", 30):
                failures.append("node %d did not restart:\n%s" % (i, nodes[i].log_tail()))
                return 1
            if not cu.wait_until(in_configs(i, others), 30, 0.1):
                failures.append("node %d not back in the Config of nodes %s within 30 s"
                                % (i, others))
                return 1
            log("node %d restarted and back in the Config of nodes %s after %.1f s"
                % (i, others, time.monotonic() - t_restart))
            time.sleep(CATCH_UP_PAUSE)
        stop.set()
        writer.join(OP_TIMEOUT + 5)
        c = rec.counts
        log("background writes: %s" % dict(c))
        bg_ok = sum(v for (o, _), v in c.items() if o == "ok") - KEYS
        if bg_ok <= 0:
            failures.append("no write was acknowledged during the rolling restart")

        # Anti-entropy, before the final reads (which could repair): every node ends up with
        # the same keys: the 200, the new keys acknowledged meanwhile, and perhaps new keys
        # whose only writes were indeterminate.
        from google.protobuf import empty_pb2
        acked_keys = len(rec.acked)
        maybe_keys = len([k for k in rec.new_keys if k not in rec.acked and rec.maybe[k]])
        last = {}

        def converged():
            for i in ids:
                kind, r = cu.call_once(pool, i, "proto.Storage.Info", empty_pb2.Empty(), 3)
                last[i] = r.decode(cu.spb.InfoResponse).Keys if kind == "ok" else kind
            v = last[ids[0]]
            return len(set(last.values())) == 1 and isinstance(v, int) and \
                acked_keys <= v <= acked_keys + maybe_keys
        t_conv = time.monotonic()
        if cu.wait_until(converged, CONVERGE_TIMEOUT, 0.2):
            log("Info: every node holds %d keys (%d acknowledged keys, %d new during the "
                "restarts); converged %.1f s after the writes stopped"
                % (last[ids[0]], acked_keys, len(rec.new_keys), time.monotonic() - t_conv))
        else:
            failures.append("Info key counts did not converge within %.0f s: %s (expected "
                            "all equal, %d to %d)" % (CONVERGE_TIMEOUT, last, acked_keys,
                                                    acked_keys + maybe_keys))

        # Every key through every node.
        bad = []
        for key in ["r%d" % k for k in range(KEYS)] + rec.new_keys:
            allowed = [rec.acked.get(key)] + rec.maybe[key]
            for i in ids:
                for attempt in range(5):
                    kind, v = rec.read(pool, i, key)
                    if kind == "ok":
                        break
                    time.sleep(0.3)
                if kind != "ok":
                    bad.append("key %s via node %d: read failed (%s: %s)"
                               % (key, i, kind, getattr(v, "message", v)))
                elif v not in allowed:
                    bad.append("key %s via node %d: read %s, last acknowledged %r%s"
                               % (key, i, "not found" if v is None else repr(v),
                                  rec.acked.get(key),
                                  " (or one of the indeterminate %s)" % rec.maybe[key]
                                  if rec.maybe[key] else ""))
        if bad:
            failures.append("%d final reads wrong or failed:\n  %s"
                            % (len(bad), "\n  ".join(bad[:20])))
        else:
            log("all %d keys read back with their last acknowledged value through every node"
                % (KEYS + len(rec.new_keys)))
        res = lin.check(rec.ops, time_limit=30)
        lost = lin.check_final_reads(rec.ops)
        log("linearizability of the history (%d ops): %s" % (len(rec.ops), res.status))
        if not res.ok:
            failures.append("linearizability: " + res.format())
        if lost:
            failures.append("acknowledged writes lost:\n  " + "\n  ".join(lost[:10]))

        pool.close()
        exits = {i: n.terminate() for i, n in nodes.items()}
        if any(rc != 0 for rc in exits.values()):
            failures.append("exit codes after SIGTERM: %s" % exits)
        return 1 if failures else 0
    finally:
        timer.cancel()
        if sys.exc_info()[0] is not None and not failures:
            failures.append("exception (traceback below)")
        if failures:
            print("\ntest_rolling_restart: FAIL")
            for f in failures:
                print("- " + f)
            for n in nodes.values():
                print("--- node %d (run %d) stderr tail ---\n%s" % (n.id, n.runs,
                                                                   n.log_tail(2000)))
        else:
            print("\ntest_rolling_restart: PASS")
        sys.stdout.flush()
        cleanup()


if __name__ == "__main__":
    try:
        rc = main()
    except Exception:
        import traceback
        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
