#!/usr/bin/python3
"""Chaos test of the storage plugin: a cluster of real nodehost processes with data_dir and
sync: always, clients doing WriteNestedQC / ReadNestedQC on a few keys through random nodes,
a nemesis (SIGKILL + restart, SIGSTOP + SIGCONT, network partitions through namespaces)
driven by a seed, then healing, final reads of every key through every node and a
linearizability check of the whole history (tests/chaos/linearizability.py).

  NH_BINARY_DIR=build NH_SOURCE_DIR=. /usr/bin/python3 tests/chaos/chaos_storage.py \
      [--seed N] [--duration S] [--nodes 3|5] [--clients K] [--keys K] [--op-timeout S]
      [--memory] [--write-mode nested|client-qc] [--no-netns] [--keep]

The seed (printed first; also env CHAOS_SEED) fixes the nemesis schedule and each client's
choices (thread timing still varies). Exit status: 0 passed; 1 a violation, a checker
"unknown", too few successful operations, or a setup problem; 3 the watchdog fired.
On failure the run directory (history.jsonl, node logs, cluster.yaml) is kept and printed;
replay the check with: /usr/bin/python3 tests/chaos/linearizability.py RUN/history.jsonl

--memory (no data_dir) and --write-mode client-qc (the client writes with WriteQC to every
node itself, with its own timestamps, acknowledged by a majority) exist to exercise the test
against a storage plugin without persistence or WriteNestedQC.
"""

import argparse
import atexit
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

PORT = 7000  # inside each namespace


def log(msg):
    sys.stdout.write("[%7.2f] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


T0 = time.monotonic()


class History:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = []

    def add(self, op):
        with self.lock:
            op.index = len(self.ops)
            self.ops.append(op)


class Stamp:
    """Timestamps for --write-mode client-qc: wall clock, strictly increasing in-process."""

    def __init__(self):
        self.lock = threading.Lock()
        self.last = 0

    def next(self):
        with self.lock:
            self.last = max(time.time_ns(), self.last + 1)
            return self.last


def now():
    return time.monotonic() - T0


class Client(threading.Thread):
    def __init__(self, cid, args, addresses, history, stop_event, seed, stamp):
        super().__init__(daemon=True, name="client-%d" % cid)
        self.cid = cid
        self.args = args
        self.addresses = addresses
        self.ids = sorted(addresses)
        self.history = history
        self.stop_event = stop_event
        self.rng = random.Random(seed * 1000 + cid)
        self.stamp = stamp
        self.pool = cu.ConnPool(addresses)
        self.n = 0
        self.errors = collections.Counter()
        self.down_until = {}
        self._pools = {i: cu.ConnPool(addresses) for i in self.ids}

    def run(self):
        try:
            while not self.stop_event.is_set():
                key = "k%d" % self.rng.randrange(self.args.keys)
                # Like a real client, avoid for a second a node it could not reach.
                t = time.monotonic()
                up = [i for i in self.ids if self.down_until.get(i, 0) <= t]
                node = self.rng.choice(up or self.ids)
                if self.rng.random() < 0.5:
                    self.write(key, node)
                else:
                    self.read(key, node)
                time.sleep(self.rng.uniform(0, 0.01))
        finally:
            self.pool.close()
            for p in self._pools.values():
                p.close()

    def note_error(self, kind, detail, node=None):
        if kind == "notsent" and node is not None:
            self.down_until[node] = time.monotonic() + 1.0
        if kind == "error":
            self.errors["status %d: %s" % (detail.code, detail.message[:80])] += 1
        else:
            self.errors[kind] += 1

    def write(self, key, node):
        self.n += 1
        value = "c%d-%d" % (self.cid, self.n)
        t0 = now()
        if self.args.write_mode == "client-qc":
            outcome = self.write_client_qc(key, value)
        else:
            kind, r = cu.call_once(self.pool, node, "proto.Storage.WriteNestedQC",
                                   cu.spb.WriteRequest(Key=key, Value=value),
                                   self.args.op_timeout)
            if kind == "ok":
                outcome = "ok"
            else:
                self.note_error(kind, r, node)
                outcome = "fail" if kind == "notsent" else "unknown"
        t1 = now()
        self.history.add(lin.Op(self.cid, "write", key, value, t0,
                                t1 if outcome != "unknown" else None, outcome, node=node))

    def write_client_qc(self, key, value):
        ts = self.stamp.next()
        from google.protobuf import timestamp_pb2
        req = cu.spb.WriteRequest(Key=key, Value=value,
                                  Time=timestamp_pb2.Timestamp(seconds=ts // 10**9,
                                                               nanos=ts % 10**9))
        results = {}
        threads = []

        def one(n):
            results[n] = cu.call_once(self.pool_for(n), n, "proto.Storage.WriteQC", req,
                                      self.args.op_timeout)[0]
        for n in self.ids:
            t = threading.Thread(target=one, args=(n,), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        oks = sum(1 for v in results.values() if v == "ok")
        if oks > len(self.ids) // 2:
            return "ok"
        self.errors["client-qc: %d of %d acknowledged" % (oks, len(self.ids))] += 1
        return "fail" if all(v == "notsent" for v in results.values()) else "unknown"

    def pool_for(self, n):
        # One pool per node for the parallel WriteQC legs (a ConnPool is not thread-safe).
        return self._pools[n]

    def read(self, key, node):
        t0 = now()
        kind, r = cu.call_once(self.pool, node, "proto.Storage.ReadNestedQC",
                               cu.spb.ReadRequest(Key=key), self.args.op_timeout)
        t1 = now()
        if kind == "ok":
            resp = r.decode(cu.spb.ReadResponse)
            value = resp.Value if resp.OK else None
            self.history.add(lin.Op(self.cid, "read", key, value, t0, t1, "ok", node=node))
        else:
            self.note_error(kind, r, node)
            self.history.add(lin.Op(self.cid, "read", key, None, t0, None,
                                    "fail" if kind == "notsent" else "unknown", node=node))


class Nemesis:
    """Faults on nodes, driven by rng; runs on the main thread (processes are started with
    PR_SET_PDEATHSIG, so they must be started by a thread that lives until the end)."""

    def __init__(self, rng, nodes, net):
        self.rng = rng
        self.nodes = nodes  # {id: cu.Node}
        self.net = net
        self.active = {}    # id -> (kind, heal time)
        self.events = []
        self.counts = collections.Counter()
        self.kinds = ["kill", "stop"] + (["partition"] if net else [])

    def event(self, text):
        self.events.append((now(), text))
        log("nemesis: " + text)

    def inflict(self, nid, kind, duration):
        n = self.nodes[nid]
        if kind == "kill":
            n.kill()
        elif kind == "stop":
            n.sigstop()
        else:
            self.net.partition(nid)
        self.active[nid] = (kind, time.monotonic() + duration)
        self.counts[kind] += 1
        self.event("%s node %d for %.1f s" % (kind, nid, duration))

    def heal(self, nid):
        kind, _ = self.active.pop(nid)
        n = self.nodes[nid]
        if kind == "kill":
            n.start()
            self.event("restart node %d" % nid)
        elif kind == "stop":
            n.sigcont()
            self.event("continue node %d" % nid)
        else:
            self.net.heal(nid)
            self.event("heal partition of node %d" % nid)

    def heal_due(self):
        t = time.monotonic()
        for nid, (_, at) in list(self.active.items()):
            if at <= t:
                self.heal(nid)

    def heal_all(self):
        for nid in list(self.active):
            self.heal(nid)

    def step(self, force_majority=False):
        ids = sorted(self.nodes)
        minority = (len(ids) - 1) // 2
        if force_majority or self.rng.random() < 0.15:
            # Briefly a majority: operations must fail (or time out), never return wrong data.
            self.heal_all()
            group = self.rng.sample(ids, len(ids) // 2 + 1)
            self.counts["majority"] += 1
            self.event("MAJORITY disturbed: nodes %s" % group)
            for nid in group:
                self.inflict(nid, self.rng.choice(self.kinds), self.rng.uniform(1.5, 4.0))
            return
        if len(self.active) >= minority:
            return
        free = [i for i in ids if i not in self.active]
        self.inflict(self.rng.choice(free), self.rng.choice(self.kinds),
                     self.rng.uniform(3.0, 10.0))

    def run(self, duration, stop_check):
        end = time.monotonic() + duration
        next_at = time.monotonic() + self.rng.uniform(1.0, 3.0)
        forced_at = time.monotonic() + duration * 0.6  # at least one majority event per run
        while time.monotonic() < end and not stop_check():
            self.heal_due()
            if time.monotonic() >= next_at:
                force = not self.counts["majority"] and time.monotonic() >= forced_at
                self.step(force)
                next_at = time.monotonic() + self.rng.uniform(2.0, 5.0)
            time.sleep(0.05)
        self.heal_all()


_cleanups = []


def cleanup_all():
    while _cleanups:
        f = _cleanups.pop()
        try:
            f()
        except Exception as e:  # pragma: no cover - best effort
            sys.stderr.write("cleanup: %s\n" % e)


def on_signal(signum, _frame):
    sys.stderr.write("chaos: signal %d, cleaning up\n" % signum)
    cleanup_all()
    os._exit(1)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--duration", type=float, default=120.0, help="seconds of nemesis")
    p.add_argument("--nodes", type=int, default=3, choices=(3, 5))
    p.add_argument("--clients", type=int, default=6)
    p.add_argument("--keys", type=int, default=5)
    p.add_argument("--op-timeout", type=float, default=3.0)
    p.add_argument("--min-ok", type=float, default=0.5,
                   help="least fraction of client operations that must succeed")
    p.add_argument("--memory", action="store_true", help="no data_dir (in-memory store)")
    p.add_argument("--sync", default="always", choices=("always", "batch", "none"))
    p.add_argument("--write-mode", default="nested", choices=("nested", "client-qc"))
    p.add_argument("--no-netns", action="store_true", help="loopback, kill/stop faults only")
    p.add_argument("--keep", action="store_true", help="keep the run directory")
    p.add_argument("--watchdog", type=float, default=None,
                   help="hard limit in seconds (default: duration + 90)")
    a = p.parse_args(argv)
    if a.seed is None:
        env = os.environ.get("CHAOS_SEED")
        a.seed = int(env) if env else random.SystemRandom().randrange(1, 2**31)
    return a


def main(argv):
    args = parse_args(argv)
    print("chaos: seed %d (replay: --seed %d or CHAOS_SEED=%d), %d nodes, %d clients, %d keys, "
          "%.0f s of nemesis, writes %s, %s" % (args.seed, args.seed, args.seed, args.nodes,
                                                args.clients, args.keys, args.duration,
                                                args.write_mode,
                                                "in memory" if args.memory else
                                                "data_dir, sync: " + args.sync))
    sys.stdout.flush()
    rng = random.Random(args.seed)
    watchdog_s = args.watchdog or args.duration + 90

    def watchdog():
        sys.stderr.write("chaos: WATCHDOG fired after %.0f s (seed %d); cleaning up\n"
                         % (watchdog_s, args.seed))
        cleanup_all()
        os._exit(3)
    timer = threading.Timer(watchdog_s, watchdog)
    timer.daemon = True
    timer.start()
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    atexit.register(cleanup_all)

    cu.load_pbs()
    _cleanups.append(cu.cleanup_pbs)
    workdir = tempfile.mkdtemp(prefix="nh-chaos-")
    keep = [args.keep]

    def remove_workdir():
        if keep[0]:
            print("chaos: run directory kept: %s" % workdir)
        else:
            shutil.rmtree(workdir, True)
    _cleanups.append(remove_workdir)

    ids = list(range(1, args.nodes + 1))
    net = None
    if not args.no_netns:
        ok, why = cu.netns_available()
        if ok:
            net = cu.Netns(ids, rng)
            _cleanups.append(net.cleanup)
        else:
            print("chaos: NOTE: network namespaces unavailable (%s): loopback, with only kill "
                  "and stop faults (no partitions)" % why)
    else:
        print("chaos: NOTE: --no-netns: loopback, with only kill and stop faults")
    if net:
        addresses = {i: "%s:%d" % (net.address(i), PORT) for i in ids}
        log("network namespaces %s..%s, bridge %s, addresses 10.77.%d.N"
            % (net.ns(ids[0]), net.ns(ids[-1]), net.bridge, net.run))
    else:
        addresses = {i: "127.0.0.1:%d" % p for i, p in zip(ids, cu.distinct_free_ports(len(ids)))}
    pconf = {}
    if not args.memory:
        data_dir = os.path.join(workdir, "data")
        os.mkdir(data_dir)
        pconf = {"data_dir": data_dir, "sync": args.sync}
    cfg = cu.write_cluster_yaml(os.path.join(workdir, "cluster.yaml"), addresses, pconf)
    chk = cu.run_nodehost(["--config", cfg, "--id", "1", "--check-config"])
    if chk.returncode != 0:
        keep[0] = True
        print("chaos: FAIL: the cluster file is rejected by `nodehost --check-config` (does the "
              "storage plugin in the tree support data_dir and sync?):\n%s%s"
              % (chk.stdout, chk.stderr))
        return 1

    nodes = {i: cu.Node(i, cfg, addresses[i], workdir, netns=net.ns(i) if net else None)
             for i in ids}

    def stop_nodes():
        for n in nodes.values():
            n.kill()
    _cleanups.append(stop_nodes)
    for n in nodes.values():
        n.start()
    for n in nodes.values():
        if not n.wait_log("serving on", 30):
            keep[0] = True
            print("chaos: FAIL: node %d did not start:\n%s" % (n.id, n.log_tail()))
            return 1
    if not all_config_full(addresses, ids, 30):
        keep[0] = True
        print("chaos: FAIL: the cluster did not form within 30 s")
        return 1
    log("cluster up: %s" % ", ".join("%d=%s" % (i, addresses[i]) for i in ids))

    history = History()
    stop_clients = threading.Event()
    stamp = Stamp()
    clients = [Client(c, args, addresses, history, stop_clients, args.seed, stamp)
               for c in range(1, args.clients + 1)]
    for c in clients:
        c.start()
    nem = Nemesis(rng, nodes, net)
    nem.run(args.duration, lambda: False)
    stop_clients.set()
    for c in clients:
        c.join(args.op_timeout * 3 + 5)
    log("nemesis and clients stopped; everything healed; %d operations" % len(history.ops))

    # Every node up and in everyone's Config again.
    for n in nodes.values():
        if not n.alive():
            log("node %d is not running (exit %s): restarting it" % (n.id, n.proc.returncode))
            n.start()
    t_heal = time.monotonic()
    healed = all_config_full(addresses, ids, 60)
    log("cluster %s after %.1f s" % ("healed" if healed else "NOT healed",
                                      time.monotonic() - t_heal))

    # Final reads of every key through every node (retried until one succeeds per node).
    finals = final_reads(args, addresses, ids, history)
    info = {}
    pool = cu.ConnPool(addresses)
    from google.protobuf import empty_pb2
    for i in ids:
        kind, r = cu.call_once(pool, i, "proto.Storage.Info", empty_pb2.Empty(), 5)
        info[i] = r.decode(cu.spb.InfoResponse).Keys if kind == "ok" else "no answer (%s)" % kind
    pool.close()

    exits = {i: n.terminate() for i, n in nodes.items()}
    crashed = []
    for i, n in nodes.items():
        for run in range(1, n.runs + 1):
            try:
                with open(os.path.join(workdir, "node%d.run%d.stderr" % (i, run)), "rb") as f:
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            if "AddressSanitizer" in text or "runtime error:" in text or "ThreadSanitizer" in text:
                crashed.append("node %d run %d" % (i, run))

    hist_path = os.path.join(workdir, "history.jsonl")
    lin.save_history(hist_path, history.ops)
    t_check = time.monotonic()
    res = lin.check(history.ops, max_states=5_000_000, time_limit=60)
    check_s = time.monotonic() - t_check
    lost = lin.check_final_reads(history.ops)

    # ---- summary ----
    failures = []
    print("\n==== chaos summary (seed %d) ====" % args.seed)
    counts = collections.Counter((o.op, o.outcome) for o in history.ops if not o.final)
    total = sum(counts.values())
    oks = counts[("write", "ok")] + counts[("read", "ok")]
    print("client operations: %d (%.0f/s); ok %d (%.0f %%)"
          % (total, total / max(args.duration, 1), oks, 100.0 * oks / max(total, 1)))
    for op in ("write", "read"):
        print("  %-5s ok %6d  unknown %6d  fail %6d" % (op, counts[(op, "ok")],
                                                        counts[(op, "unknown")],
                                                        counts[(op, "fail")]))
    errs = collections.Counter()
    for c in clients:
        errs.update(c.errors)
    if errs:
        print("client errors (most common):")
        for e, k in errs.most_common(8):
            print("  %6d  %s" % (k, e))
    print("nemesis: %d events (%s)" % (len(nem.events), ", ".join(
        "%s %d" % kv for kv in sorted(nem.counts.items()))))
    if not net:
        print("  (loopback mode: no partitions)")
    print("final reads: %d ok of %d attempted; Info keys per node: %s"
          % (sum(1 for o in finals if o.outcome == "ok"), len(finals), info))
    print("node exit codes at the end (SIGTERM): %s" % exits)
    print("checker: %s in %.1f s" % (res.status, check_s))
    for k, kr in res.keys.items():
        st = kr.stats
        print("  key %s: %s (%s reads, %s writes, %s segments, largest %s)"
              % (k, kr.status, st.get("reads"), st.get("writes"), st.get("segments"),
                 st.get("largest_segment")))
    if res.status == lin.VIOLATION:
        failures.append("linearizability VIOLATION")
        print("\nVIOLATION:\n" + res.format())
    elif res.status == lin.UNKNOWN:
        failures.append("the checker could not decide (UNKNOWN): treated as a failure")
        print("\nUNKNOWN:\n" + res.format())
    if lost:
        failures.append("acknowledged writes not readable after healing")
        print("\nacknowledged writes readable after healing: NO")
        for m in lost:
            print("  " + m)
    else:
        print("acknowledged writes readable after healing: yes (every key, every node)")
    # A broken cluster must not pass by failing everything: enough of the operations, and
    # enough of each kind, must succeed (e.g. all writes failing while reads of "not found"
    # succeed would be linearizable but useless).
    if total == 0 or oks < args.min_ok * total:
        failures.append("too few operations succeeded: %d of %d (need %.0f %%)"
                        % (oks, total, 100 * args.min_ok))
    for op in ("write", "read"):
        n_op = sum(v for (o, _), v in counts.items() if o == op)
        if n_op == 0 or counts[(op, "ok")] < args.min_ok * n_op:
            failures.append("too few %ss succeeded: %d of %d (need %.0f %%)"
                            % (op, counts[(op, "ok")], n_op, 100 * args.min_ok))
    if not healed:
        failures.append("the cluster did not heal (Config) within 60 s")
    missing_finals = [k for k in ("k%d" % i for i in range(args.keys))
                      if not any(o.key == k and o.final and o.outcome == "ok" for o in finals)]
    if missing_finals:
        failures.append("no final read succeeded for keys %s" % missing_finals)
    if crashed:
        failures.append("crash reports in node logs: %s" % crashed)
    print("events:")
    for t, e in nem.events:
        print("  %7.2f  %s" % (t, e))
    if failures:
        keep[0] = True
        print("\nchaos: FAIL (seed %d): %s" % (args.seed, "; ".join(failures)))
        print("history: %s (re-check: /usr/bin/python3 %s %s)"
              % (hist_path, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "linearizability.py"), hist_path))
        for n in nodes.values():
            print("--- node %d (run %d) stderr tail ---\n%s" % (n.id, n.runs, n.log_tail(1500)))
        return 1
    print("\nchaos: PASS (seed %d)" % args.seed)
    timer.cancel()
    return 0


def all_config_full(addresses, ids, timeout):
    def full():
        for i in ids:
            st = cu.status(addresses[i])
            if st is None or sorted(st.get("config", [])) != ids:
                return False
        return True
    return cu.wait_until(full, timeout, 0.3)


def final_reads(args, addresses, ids, history):
    pool = cu.ConnPool(addresses)
    out = []
    for k in ("k%d" % i for i in range(args.keys)):
        for i in ids:
            for attempt in range(10):
                t0 = now()
                kind, r = cu.call_once(pool, i, "proto.Storage.ReadNestedQC",
                                       cu.spb.ReadRequest(Key=k), args.op_timeout)
                t1 = now()
                if kind == "ok":
                    resp = r.decode(cu.spb.ReadResponse)
                    op = lin.Op("final", "read", k, resp.Value if resp.OK else None, t0, t1,
                                "ok", final=True, node=i)
                else:
                    op = lin.Op("final", "read", k, None, t0, None, "fail", final=True, node=i)
                history.add(op)
                out.append(op)
                if kind == "ok":
                    break
                time.sleep(0.5)
    pool.close()
    return out


if __name__ == "__main__":
    try:
        rc = main(sys.argv[1:])
    except Exception:
        import traceback
        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    cleanup_all()
    cu.cleanup_pbs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
