"""Shared helpers of the chaos tests (run with Debian's /usr/bin/python3, which has grpcio and
protobuf):

- load_pbs(): stream_pb2 (through tests/interop/nh_interop_util.py) and storage_pb2 (compiled
  with protoc from plugins/storage/storage.proto, with the gorums.proto it imports, into a
  temporary directory).
- Conn: one Gorums NodeStream to one node with replies routed by message_seq_no; call() with a
  timeout returns a Reply (ok, code, message, payload) or raises CallTimeout / NotSent.
- Node: one nodehost process (optionally inside a network namespace through `ip netns exec`),
  SIGKILL / SIGSTOP / SIGCONT / restart, logs to files. Processes are started through
  `setpriv --pdeathsig KILL`, so they die with the starting thread: start every node from the
  main thread.
- Netns: a bridge in the root namespace and one namespace per node (veth pair, addresses
  10.77.<run>.N/24, the root side 10.77.<run>.254), with a per-run lock so parallel runs do not
  clash and leftovers of a killed run are removed by the next run that picks its number.
- write_cluster_yaml(), status(): the cluster file and `nodehost status ADDRESS --json`.
"""

import fcntl
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "interop"))

import grpc  # noqa: E402

import nh_interop_util as nu  # noqa: E402

OK, UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, UNAVAILABLE = 0, 2, 4, 12, 14
STREAM_DEADLINE = 3600.0

pb = None   # stream_pb2
spb = None  # storage_pb2
_pb_dir = None


def cleanup_pbs():
    """Removes the generated modules (call before os._exit, which skips atexit)."""
    global _pb_dir
    if _pb_dir:
        shutil.rmtree(_pb_dir, True)
        _pb_dir = None
    nu.cleanup()


def load_pbs():
    global pb, spb, _pb_dir
    if spb is not None:
        return pb, spb
    pb = nu.load_stream_pb2()
    _pb_dir = tempfile.mkdtemp(prefix="nh-chaos-pb-")
    protoc = shutil.which("protoc") or "/usr/bin/protoc"
    subprocess.run([protoc, "--python_out=" + _pb_dir,
                    "-I" + os.path.join(nu.source_dir(), "plugins", "storage"),
                    "-I" + os.path.join(nu.source_dir(), "sdk", "proto", "gorums"),
                    "-I/usr/include", "gorums.proto", "storage.proto"], check=True, timeout=60)
    sys.path.insert(0, _pb_dir)
    import storage_pb2
    spb = storage_pb2
    import atexit
    atexit.register(cleanup_pbs)
    return pb, spb


def nodehost_path():
    return os.path.join(nu.binary_dir(), "host", "nodehost")


def storage_plugin_path():
    return os.path.join(nu.binary_dir(), "plugins", "storage.so")


# ---- the wire ----------------------------------------------------------------------------------

class NotSent(Exception):
    """The request was certainly not sent (no connection)."""


class CallTimeout(Exception):
    """No reply in time (the request may have been processed)."""


class Reply:
    def __init__(self, m):
        self.msg = m
        if m.HasField("status") and m.status.code != OK:
            self.code, self.message = m.status.code, m.status.message
        else:
            self.code, self.message = OK, ""
        self.payload = m.payload

    @property
    def ok(self):
        return self.code == OK

    def decode(self, cls):
        return cls.FromString(self.payload)


class Conn:
    """One NodeStream to address; call() may be used from several threads."""

    def __init__(self, address, connect_timeout):
        self.address = address
        self.channel = grpc.insecure_channel(address)
        try:
            grpc.channel_ready_future(self.channel).result(timeout=connect_timeout)
        except grpc.FutureTimeoutError:
            self.channel.close()
            raise NotSent("cannot connect to %s within %.1f s" % (address, connect_timeout))
        self._lock = threading.Lock()
        self._pending = {}
        self._seq = 0
        self.stream = nu.NodeStream(self.channel, deadline=STREAM_DEADLINE, on_reply=self._on)

    def _on(self, _s, m):
        with self._lock:
            q = self._pending.pop(m.message_seq_no, None)
        if q is not None:
            q.put(m)

    @property
    def broken(self):
        return self.stream.ended.is_set()

    def call(self, method, request, timeout):
        if self.broken:
            raise NotSent("stream to %s ended" % self.address)
        with self._lock:
            self._seq += 1
            seq = self._seq
            q = queue.Queue()
            self._pending[seq] = q
        self.stream.send(nu.make_message(pb, seq, method, request.SerializeToString()))
        end = time.monotonic() + timeout
        while True:
            try:
                return Reply(q.get(timeout=min(0.05, max(0.0, end - time.monotonic()))))
            except queue.Empty:
                if time.monotonic() >= end:
                    with self._lock:
                        self._pending.pop(seq, None)
                    raise CallTimeout("%s: no reply from %s within %.1f s"
                                      % (method, self.address, timeout))
                if self.broken:
                    # The call ended: the request may or may not have been processed.
                    raise CallTimeout("%s: stream to %s ended (%s)"
                                      % (method, self.address, self.stream.details))

    def close(self):
        try:
            if not self.stream.ended.is_set():
                self.stream._out.put(nu._END)
                self.stream.call.cancel()
        except Exception:
            pass
        self.channel.close()


class ConnPool:
    """Connections by node id for one client; a connection that timed out or ended is dropped
    and made again on next use."""

    def __init__(self, addresses):
        self.addresses = addresses
        self.conns = {}

    def get(self, node, connect_timeout):
        c = self.conns.get(node)
        if c is not None and c.broken:
            self.drop(node)
            c = None
        if c is None:
            c = Conn(self.addresses[node], connect_timeout)
            self.conns[node] = c
        return c

    def drop(self, node):
        c = self.conns.pop(node, None)
        if c is not None:
            c.close()

    def close(self):
        for n in list(self.conns):
            self.drop(n)


def call_once(pool, node, method, request, timeout, connect_timeout=1.0):
    """One call within timeout, connecting if needed (within connect_timeout). Returns
    ("ok", Reply) for a success, ("error", Reply) for an error status, ("timeout", text) when
    sent without an answer in time and ("notsent", text) when it could not be sent."""
    t0 = time.monotonic()
    try:
        c = pool.get(node, min(timeout, connect_timeout))
    except NotSent as e:
        return "notsent", str(e)
    left = timeout - (time.monotonic() - t0)
    if left <= 0.05:
        return "notsent", "connecting to node %s took the whole timeout" % node
    try:
        r = c.call(method, request, left)
    except NotSent as e:
        pool.drop(node)
        return "notsent", str(e)
    except CallTimeout as e:
        pool.drop(node)  # a stuck connection (stopped or partitioned node): start afresh
        return "timeout", str(e)
    return ("ok" if r.ok else "error"), r


# ---- processes ---------------------------------------------------------------------------------



def base_env(**extra):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("NH_PORT") or k in ("NH_PLUGIN_DIR", "NH_LOG_LEVEL", "NH_STATE_DIR"):
            del env[k]
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Node:
    """One nodehost process for node `nid` of a cluster file, in namespace `netns` or not."""

    def __init__(self, nid, config_path, address, workdir, netns=None, extra_env=None):
        self.id = nid
        self.config_path = config_path
        self.address = address
        self.workdir = workdir
        self.netns = netns
        self.state_dir = os.path.join(workdir, "state-%d" % nid)
        os.makedirs(self.state_dir, 0o700, exist_ok=True)
        self.env = base_env(NH_STATE_DIR=self.state_dir, **(extra_env or {}))
        self.runs = 0
        self.proc = None
        self.stopped = False  # SIGSTOPped

    def start(self):
        self.runs += 1
        self.err_path = os.path.join(self.workdir, "node%d.run%d.stderr" % (self.id, self.runs))
        # setpriv (util-linux) sets the parent-death signal in the child before it execs the
        # node: a Python preexec_fn would run Python code between fork and exec, which can
        # deadlock the child (and Popen with it) when other threads hold locks at the fork.
        cmd = ["setpriv", "--pdeathsig", "KILL", nodehost_path(), "--config", self.config_path,
               "--id", str(self.id)]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err, env=self.env)
        self.stopped = False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            if self.stopped:
                self.signal(signal.SIGCONT)
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        self.stopped = False

    def sigstop(self):
        self.signal(signal.SIGSTOP)
        self.stopped = True

    def sigcont(self):
        self.signal(signal.SIGCONT)
        self.stopped = False

    def terminate(self, timeout=15.0):
        """SIGTERM and wait; returns the exit code or None (then killed)."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        if self.stopped:
            self.sigcont()
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def log(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, AttributeError) as e:
            return "<no log: %s>" % e

    def log_tail(self, limit=3000):
        return self.log()[-limit:]

    def wait_log(self, text, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.log():
                return True
            if not self.alive():
                return False
            time.sleep(0.05)
        return text in self.log()


def run_nodehost(args, timeout=30.0):
    return subprocess.run([nodehost_path()] + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=base_env(), timeout=timeout)


def status(address, timeout_ms=1500):
    """`nodehost status ADDRESS --json`, parsed; None when the node did not answer."""
    try:
        r = run_nodehost(["status", address, "--json", "--timeout-ms", str(timeout_ms)],
                         timeout=timeout_ms / 1000.0 + 10)
    except subprocess.TimeoutExpired:
        return None
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def write_cluster_yaml(path, addresses, plugin_config, log_level="info"):
    """The shared cluster file: peers = addresses {id: "host:port"}, the storage plugin with
    plugin_config (a dict of scalars), each node picks itself with --id."""
    def scalar(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar
    lines = ["# written by tests/chaos (run each node with --id N)", "version: 1", "peers:"]
    for nid in sorted(addresses):
        lines.append('  - { id: %d, address: "%s" }' % (nid, addresses[nid]))
    lines.append("clients: { accept: true, max: 10000 }")
    lines.append("plugins:")
    lines.append("  - name: storage")
    lines.append("    path: %s" % json.dumps(storage_plugin_path()))
    if plugin_config:
        lines.append("    config: { %s }" % ", ".join("%s: %s" % (k, scalar(v))
                                                    for k, v in plugin_config.items()))
    lines.append('log: { level: %s, format: text }' % log_level)
    # Nodes in network namespaces are asked for their status from the host's side of the
    # bridge: without TLS only loopback may call the admin methods unless allowed here.
    nets = sorted({".".join(a.split(":")[0].split(".")[:2]) + ".0.0/16"
                   for a in addresses.values() if not a.startswith("127.")})
    if nets:
        lines.append("admin: { allow_plaintext_from: [ %s ] }"
                     % ", ".join('"%s"' % n for n in nets))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


distinct_free_ports = nu.distinct_free_ports


# ---- network namespaces ------------------------------------------------------------------------

def _ip(*args, check=True, ns=None):
    cmd = ["ip"] + (["netns", "exec", ns, "ip"] if ns else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), r.stderr.strip()))
    return r


def netns_available():
    """(True, "") or (False, why)."""
    if os.geteuid() != 0:
        return False, "not root"
    if not shutil.which("ip"):
        return False, "no `ip` command (Debian package iproute2)"
    probe = "nhcprobe%d" % os.getpid()
    r = _ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return False, "ip netns add failed: %s" % r.stderr.strip()
    _ip("netns", "del", probe, check=False)
    return True, ""


LOCK_DIR = "/run/nh-chaos" if os.path.isdir("/run") else tempfile.gettempdir()


class Netns:
    """A bridge nhc<run>br (10.77.<run>.254/24) in the root namespace and, per node i, the
    namespace nhc<run>n<i> whose eth0 (10.77.<run>.<i>/24) is a veth to the bridge (root side
    nhc<run>v<i>). partition(i) sets the root side down, heal(i) up again."""

    def __init__(self, node_ids, rng):
        os.makedirs(LOCK_DIR, exist_ok=True)
        self.ids = list(node_ids)
        self.run = None
        self._lockf = None
        self.created_ns = []
        self.created_links = []
        choices = list(range(1, 251))
        rng.shuffle(choices)
        used = _ip("-4", "addr", check=False).stdout
        for run in choices:
            if "10.77.%d." % run in used:
                continue
            f = open(os.path.join(LOCK_DIR, "run%d.lock" % run), "w")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            self.run, self._lockf = run, f
            break
        if self.run is None:
            raise RuntimeError("no free run number for network namespaces")
        self.prefix = "nhc%d" % self.run
        self._remove_leftovers()
        try:
            self._setup()
        except Exception:
            self.cleanup()
            raise

    def ns(self, i):
        return "%sn%d" % (self.prefix, i)

    def veth(self, i):
        return "%sv%d" % (self.prefix, i)

    @property
    def bridge(self):
        return self.prefix + "br"

    def address(self, i):
        return "10.77.%d.%d" % (self.run, i)

    def _remove_leftovers(self):
        """A previous run with this number was killed (we hold its lock now): remove what is
        left of it (processes in its namespaces, namespaces, links)."""
        listing = _ip("netns", "list", check=False).stdout.split()
        for name in listing:
            if name.startswith(self.prefix + "n") and name[len(self.prefix) + 1:].isdigit():
                pids = _ip("netns", "pids", name, check=False).stdout.split()
                for p in pids:
                    try:
                        os.kill(int(p), signal.SIGKILL)
                    except (OSError, ValueError):
                        pass
                _ip("netns", "del", name, check=False)
        links = _ip("-o", "link", "show", check=False).stdout
        for line in links.splitlines():
            parts = line.split(":")
            if len(parts) > 1:
                name = parts[1].strip().split("@")[0]
                if name.startswith(self.prefix + "v") or name == self.bridge:
                    _ip("link", "del", name, check=False)

    def _setup(self):
        _ip("link", "add", self.bridge, "type", "bridge")
        self.created_links.append(self.bridge)
        _ip("addr", "add", "10.77.%d.254/24" % self.run, "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i in self.ids:
            ns, v, peer = self.ns(i), self.veth(i), "%sp%d" % (self.prefix, i)
            _ip("netns", "add", ns)
            self.created_ns.append(ns)
            _ip("link", "add", v, "type", "veth", "peer", "name", peer)
            self.created_links.append(v)
            _ip("link", "set", peer, "netns", ns)
            _ip("link", "set", peer, "name", "eth0", ns=ns)
            _ip("addr", "add", "%s/24" % self.address(i), "dev", "eth0", ns=ns)
            _ip("link", "set", "eth0", "up", ns=ns)
            _ip("link", "set", "lo", "up", ns=ns)
            _ip("link", "set", v, "master", self.bridge)
            _ip("link", "set", v, "up")

    def partition(self, i):
        _ip("link", "set", self.veth(i), "down")

    def heal(self, i):
        _ip("link", "set", self.veth(i), "up")

    def cleanup(self):
        for ns in reversed(self.created_ns):
            for p in _ip("netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(p), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
            _ip("netns", "del", ns, check=False)
        self.created_ns = []
        for link in reversed(self.created_links):
            _ip("link", "del", link, check=False)
        self.created_links = []
        if self._lockf is not None:
            self._lockf.close()
            self._lockf = None


def wait_until(pred, timeout, step=0.1):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)


__all__ = ["load_pbs", "Conn", "ConnPool", "call_once", "Node", "Netns", "netns_available",
           "status", "write_cluster_yaml", "distinct_free_ports", "run_nodehost", "wait_until",
           "random"]
