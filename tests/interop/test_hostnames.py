#!/usr/bin/python3
"""Peers named by host names, across three hosts (network namespaces), and a peer that moves.

Three `nodehost` processes, each in its own network namespace (tests/chaos/chaos_util.py's
Netns: a bridge and one veth per namespace, 10.77.<run>.<id>/24), share one cluster file whose
peers are host names: node1.nodehost.test:7001 .. node3.nodehost.test:7001. The names resolve
through /etc/netns/<ns>/hosts, which `ip netns exec` bind-mounts over /etc/hosts; their
/etc/netns/<ns>/resolv.conf names a name server run by this test on the bridge, which answers
NXDOMAIN to everything (gRPC's c-ares resolver also asks for AAAA records), so no lookup leaves
the machine. Each node listens on its own name (node.listen defaults to its peer address), and
dials its peers by name with gRPC's default resolver.

1. The cluster forms: every node's Config is 1 2 3 (`nodehost status ... --json`, asked from the
   root namespace: the file allows the admin methods from 10.77.0.0/16 without TLS).
2. Node 3 stops (SIGTERM); nodes 1 and 2 drop it. Its address moves to a NEW IP (the veth
   address changes, and node3's line in every hosts file is rewritten in place: the bind mounts
   keep the inode). Node 3 restarts there.
3. Nodes 1 and 2 find it again by name: node 3's Config is 1 2 3 again, which needs nodes 1 and
   2 to have dialed its new address (a node's Config lists the peers whose streams reached it),
   and both log a new "node 3 (node3.nodehost.test:7001): connected".
4. Node 3's address goes dark for nodes 1 and 2 (a route in their namespaces sends its packets
   into a veth pair to a made-up neighbour) and node 3 is killed: their streams break and their
   next connect attempts hang (for keepalive.timeout_ms, 10 s in this file). Node 3 restarts at
   another new IP and dials nodes 1 and 2: they cancel the hanging attempt and dial its name
   again ("the peer is back; dialing it again"), well within those 10 s.

Needs root and `ip netns` (iproute2); skips (exit 0, "SKIP: ...") without them. Only loopback
and the namespaces and links it creates are touched; they and /etc/netns/<ns> are removed on
every exit, failure included. About 10 s.

  NH_BINARY_DIR=build /usr/bin/python3 tests/interop/test_hostnames.py
Exit status 0 passed (or skipped), 1 failed. NH_KEEP_TMP=1 keeps the run directory on failure;
NH_VERBOSE=1 prints the nodes' logs after a pass.
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "chaos"))
sys.path.insert(0, HERE)

try:
    import chaos_util as cu  # noqa: E402  (Netns, Node; imports grpc)
except ImportError as _e:  # pragma: no cover
    print("SKIP: test_hostnames needs grpcio for /usr/bin/python3 (%s)" % _e)
    sys.exit(0)

PORT = 7001
DOMAIN = "nodehost.test"
IDS = (1, 2, 3)
MOVED_HOST = 103  # node 3's new address: 10.77.<run>.103
FORM_BOUND = 20.0     # start -> Config 1 2 3 everywhere
LEAVE_BOUND = 15.0    # node 3 stops -> nodes 1 and 2 drop it
RETURN_BOUND = 20.0   # node 3 restarts at its new IP -> Config 1 2 3 everywhere
REDIAL_BOUND = 5.0    # the same while its old address drops packets (without the redial, the
                      # nodes would wait for their hanging connects: 10 s, keepalive.timeout_ms)
WATCHDOG = 100.0
T0 = time.monotonic()


def log(msg):
    sys.stdout.write("[%6.2f] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


def bridge_address(net):
    return "10.77.%d.254" % net.run  # the root side of the bridge (chaos_util.Netns)


def name(i):
    return "node%d.%s" % (i, DOMAIN)


class NoSuchName:
    """A name server that answers every query NXDOMAIN, on the bridge's address in the root
    namespace (port 53), for the namespaces' resolv.conf: the names live in the hosts files,
    and gRPC's resolver (c-ares) also asks for their AAAA records, which must fail at once
    (as a real name server answers) rather than after c-ares' timeouts."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 53))
        self.sock.settimeout(0.2)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @staticmethod
    def answer(q):
        if len(q) < 12 or q[2] & 0x80:
            return None
        end = 12
        while end < len(q) and q[end] != 0:
            end += q[end] + 1
        end += 5  # the root label, QTYPE, QCLASS
        if end > len(q):
            return None
        # Same ID and question; QR, the opcode and RD kept, RA, RCODE 3; no other records.
        return (q[:2] + bytes([0x80 | (q[2] & 0x79), 0x83]) + q[4:6] + b"\0" * 6
                + q[12:end])

    def _serve(self):
        while not self.done.is_set():
            try:
                q, peer = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            r = self.answer(q)
            if r is not None:
                self.sock.sendto(r, peer)

    def close(self):
        self.done.set()
        self.thread.join(2)
        self.sock.close()


class HostsFiles:
    """/etc/netns/<ns>/hosts and resolv.conf for each namespace; removed by cleanup()."""

    def __init__(self, net):
        self.net = net
        self.dirs = []
        self.made_root = not os.path.isdir("/etc/netns")
        self.ip = {i: net.address(i) for i in IDS}
        for i in IDS:
            d = os.path.join("/etc/netns", net.ns(i))
            os.makedirs(d, exist_ok=True)
            self.dirs.append(d)
            with open(os.path.join(d, "resolv.conf"), "w") as f:
                f.write("# test_hostnames: a name server that knows no name (NoSuchName)\n"
                        "nameserver %s\n" % bridge_address(net))
        self.write()

    def write(self):
        text = "127.0.0.1 localhost\n::1 localhost\n" + "".join(
            "%s %s node%d\n" % (self.ip[i], name(i), i) for i in IDS)
        for d in self.dirs:
            # In place (same inode): running processes see the file through a bind mount.
            with open(os.path.join(d, "hosts"), "r+" if os.path.exists(
                    os.path.join(d, "hosts")) else "w") as f:
                f.seek(0)
                f.write(text)
                f.truncate()

    def cleanup(self):
        for d in self.dirs:
            shutil.rmtree(d, True)
        self.dirs = []
        if self.made_root:
            try:
                os.rmdir("/etc/netns")  # only if it is empty (other users may have added)
            except OSError:
                pass


def status(ip, timeout_ms=1000):
    """`nodehost status IP:PORT --json` from the root namespace; None without an answer."""
    try:
        r = cu.run_nodehost(["status", "%s:%d" % (ip, PORT), "--json", "--timeout-ms",
                             str(timeout_ms)], timeout=timeout_ms / 1000.0 + 10)
    except subprocess.TimeoutExpired:
        return None
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def configs(hosts):
    out = {}
    for i in IDS:
        st = status(hosts.ip[i])
        out[i] = None if st is None else st["config"]
    return out


def wait_configs(hosts, want, ids, bound, what):
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < bound:
        last = configs(hosts)
        if all(last[i] == want[i] for i in ids):
            took = time.monotonic() - t0
            log("%s after %.2f s: %s" % (what, took, last))
            return took
        time.sleep(0.2)
    raise AssertionError("%s: not within %.0f s; Configs %s (want %s)"
                         % (what, bound, last, {i: want[i] for i in ids}))


def write_yaml(path):
    lines = ["# test_hostnames: peers by host name, each node picks itself with --id N",
             "version: 1", "peers:"]
    lines += ['  - { id: %d, address: "%s:%d" }' % (i, name(i), PORT) for i in IDS]
    # keepalive.timeout_ms is also the connect timeout of peer streams (TCP_USER_TIMEOUT): 10 s
    # keeps B's connects to a dark address hanging long enough to see the redial.
    lines += ["keepalive: { time_ms: 1000, timeout_ms: 10000 }",
              "admin: { allow_plaintext_from: [ \"10.77.0.0/16\" ] }",
              "log: { level: info, format: text }"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def count(node, text):
    return node.log().count(text)


def move_node3(net, hosts, new_host):
    old, new = hosts.ip[3], "10.77.%d.%d" % (net.run, new_host)
    cu._ip("addr", "del", "%s/24" % old, "dev", "eth0", ns=net.ns(3))
    cu._ip("addr", "add", "%s/24" % new, "dev", "eth0", ns=net.ns(3))
    hosts.ip[3] = new
    hosts.write()
    log("node 3 moved from %s to %s (hosts files rewritten)" % (old, new))
    return old


def run(workdir):
    net = cu.Netns(IDS, random.Random())
    hosts = dns = None
    nodes = {}
    connected3 = "node 3 (%s:%d): connected" % (name(3), PORT)
    try:
        dns = NoSuchName(bridge_address(net))
        hosts = HostsFiles(net)
        cfg = os.path.join(workdir, "cluster.yaml")
        write_yaml(cfg)
        for i in IDS:
            nodes[i] = cu.Node(i, cfg, "%s:%d" % (name(i), PORT), workdir, netns=net.ns(i))
            nodes[i].start()
        full = {i: list(IDS) for i in IDS}
        wait_configs(hosts, full, IDS, FORM_BOUND, "the cluster formed (peers by name)")

        # A: node 3 stops, moves, restarts; its old address refuses connections meanwhile.
        code = nodes[3].terminate()
        log("A: node 3 stopped (exit %s)" % code)
        wait_configs(hosts, {1: [1, 2], 2: [1, 2]}, (1, 2), LEAVE_BOUND,
                     "A: nodes 1 and 2 dropped node 3")
        before = {i: count(nodes[i], connected3) for i in (1, 2)}
        move_node3(net, hosts, MOVED_HOST)
        nodes[3].start()
        took_a = wait_configs(hosts, full, IDS, RETURN_BOUND,
                              "A: node 3 found again at its new address")
        for i in (1, 2):
            assert count(nodes[i], connected3) > before[i], (
                "A: node %d did not log a new connection to node 3" % i)

        # B: node 3's address goes dark for nodes 1 and 2 (their packets to it are dropped, as
        # for a node that vanished) and node 3 dies: their streams break and their next connect
        # attempts hang (TCP_USER_TIMEOUT = keepalive.timeout_ms, 10 s here). Node 3 comes back
        # elsewhere and dials them: they dial again, resolving its name afresh, instead of
        # waiting for those attempts to time out.
        broken3 = "node 3 (%s:%d): stream broken" % (name(3), PORT)
        before = {i: (count(nodes[i], connected3), count(nodes[i], broken3)) for i in (1, 2)}
        for i in (1, 2):
            # A veth pair inside the namespace, a route to node 3 through it and a made-up
            # neighbour: the packets leave and reach nobody (no ARP failure, no refusal).
            cu._ip("link", "add", "dark", "type", "veth", "peer", "name", "darkp", ns=net.ns(i))
            cu._ip("link", "set", "dark", "up", ns=net.ns(i))
            cu._ip("link", "set", "darkp", "up", ns=net.ns(i))
            cu._ip("route", "add", "%s/32" % hosts.ip[3], "dev", "dark", ns=net.ns(i))
            cu._ip("neigh", "replace", hosts.ip[3], "lladdr", "02:00:00:00:00:01", "dev", "dark",
                   "nud", "permanent", ns=net.ns(i))
        nodes[3].kill()
        log("B: node 3's address %s went dark for nodes 1 and 2; node 3 killed" % hosts.ip[3])
        t0 = time.monotonic()
        while not all(count(nodes[i], broken3) > before[i][1] for i in (1, 2)):
            assert time.monotonic() - t0 < LEAVE_BOUND, "B: the streams to node 3 never broke"
            time.sleep(0.05)
        log("B: nodes 1 and 2 lost their streams to node 3; their new attempts hang")
        time.sleep(1.5)  # the attempts are older than the redial threshold (1 s)
        move_node3(net, hosts, MOVED_HOST + 10)
        nodes[3].start()
        took_b = wait_configs(hosts, full, IDS, REDIAL_BOUND,
                              "B: node 3 found again at its new address")
        for i in (1, 2):
            assert count(nodes[i], connected3) > before[i][0], (
                "B: node %d did not log a new connection to node 3" % i)
            assert "node 3 (%s:%d): the peer is back; dialing it again" % (name(3), PORT) in (
                nodes[i].log()), "B: node %d did not cancel its hanging attempt" % i
        log("PASS: peers by host name; a moved peer was found again in %.2f s, and in %.2f s "
            "when its old address went dark" % (took_a, took_b))
        if os.environ.get("NH_VERBOSE") == "1":
            for i, n in sorted(nodes.items()):
                log("node %d log:\n%s" % (i, n.log()))
    except BaseException:
        for i, n in sorted(nodes.items()):
            log("node %d log (tail):\n%s" % (i, n.log_tail()))
        raise
    finally:
        for n in nodes.values():
            n.kill()
        net.cleanup()
        if hosts is not None:
            hosts.cleanup()
        if dns is not None:
            dns.close()


def main():
    ok, why = cu.netns_available()
    if not ok:
        print("SKIP: test_hostnames needs root and `ip netns` (%s)" % why)
        return 0
    if not os.path.exists(cu.nodehost_path()):
        print("FAIL: no nodehost binary at %s" % cu.nodehost_path())
        return 1
    # The watchdog: a hung run must not leave namespaces behind; SIGALRM turns into an
    # exception in the main thread, so the finally clauses run.
    def on_alarm(_sig, _frame):
        raise TimeoutError("watchdog: the test took more than %.0f s" % WATCHDOG)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(WATCHDOG))
    workdir = tempfile.mkdtemp(prefix="nh-hostnames-")
    ok = False
    try:
        run(workdir)
        ok = True
    except Exception as e:
        log("FAIL: %s" % e)
    finally:
        signal.alarm(0)
        if ok or os.environ.get("NH_KEEP_TMP") != "1":
            shutil.rmtree(workdir, True)
        else:
            log("run directory kept: %s" % workdir)
    return 0 if ok else 1


if __name__ == "__main__":
    assert threading.current_thread() is threading.main_thread()
    sys.exit(main())
