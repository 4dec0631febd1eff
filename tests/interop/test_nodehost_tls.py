#!/usr/bin/python3
"""Integration: TLS on every stream, identities bound to certificates, end to end.

Real `nodehost` processes with the storage plugin and a `tls:` section (certificates made by
tests/tls/make_certs.sh with the openssl command), driven by an independent gRPC stack: Debian's
grpcio over grpc.secure_channel (raw Gorums `stream.Message` envelopes on
/stream.Gorums/NodeStream), Python's ssl module, `nodehost status|reload --tls-*` and
nh-storage-client --tls-*.

Tests (TlsClusterTest shares one 3-node cluster, tls.clients: require, admin.allow CN=ops; the
YAML names its files certs/node${NODE}.pem relative to itself):
  test_1_cluster_forms_and_quorum_calls_work_over_tls  every node's status, asked over TLS with
        a node certificate, shows Config 1 2 3; WriteQC/ReadQC over grpcio TLS streams with the
        client certificate return the value; WriteNestedQC/ReadNestedQC (the nodes' own TLS
        peer streams) too; nh-storage-client --tls-* writes and reads; plaintext it cannot.
  test_2_spoofed_node_id_is_refused_and_the_real_peer_untouched  node 3's certificate with
        gorums-node-id 2: UNAUTHENTICATED naming "node 2" and "nodehost://node/3", node 1 logs
        it; the client certificate claiming node 2 likewise; node 2 stays in node 1's Config
        (never "left") and a nested quorum call through node 1 succeeds. With tls.clients:
        optional (a lone node): clients without a certificate are served, but claiming known
        peer 5 without its certificate is refused (UNAUTHENTICATED, logged); node 5's
        certificate may claim 5 but not 9; an expired certificate is still refused.
  test_3_bad_clients_are_refused_with_reasons_on_both_sides  no client certificate, expired,
        not yet valid, signed by another CA: UNAUTHENTICATED with the reason, logged by the
        node; a plaintext channel fails (UNAVAILABLE; the node logs the failed handshake); a
        client trusting only another CA fails to connect (UNAVAILABLE, certificate verify
        failed). After each, the node is alive and a good call succeeds.
  test_4_client_peer_over_tls_gets_server_initiated_calls  a grpcio stream with the client
        certificate and gorums-node-id 0 shows in ClientConfig (status --json), is logged with
        its certificate identity, and receives NotifyClients' proto.StorageClient.Notify
        (bit 63 sequence number) over its TLS stream; nh-storage-client --tls-* listen/notify
        does the same from the C SDK.
  test_5_admin_methods_are_gated_by_certificate_identity  `nodehost reload` with alice's
        certificate: exit 1, not allowed; with CN=ops (admin.allow) and with a node certificate:
        done; status with the wrong CA or without TLS fails with the reason or a hint naming
        --tls-ca; a lone node without admin.allow refuses ops and node 1 but admits its own
        certificate.
  test_6_certificate_rotation_under_load  (own cluster) while a background thread keeps doing
        WriteQC/ReadQC and WriteNestedQC/ReadNestedQC over long-lived grpcio TLS streams, node 1's
        cert/key files are replaced with a new certificate from the same CA and `nodehost
        reload` applied: no call fails, no stream ends, every node's Config stays 1 2 3 (no
        "left", no Config change in any log), new TLS connections get the new certificate
        (Python ssl, DER compared). Bad rotations (node 2's key; a certificate from another CA)
        fail the reload naming tls.key / tls.cert and change nothing. Node 2 restarted
        afterwards rejoins node 1 (both directions verified with the rotated certificate).
  test_7_check_config_reports_bad_tls_files_with_positions  --check-config: missing cert, key
        or CA file, a key that does not match, an expired / not yet valid certificate, one from
        another CA, node 3's certificate as node 1's, a peers[].identity the certificate lacks,
        a CA file without certificates, a cert file without one: exit 1 and
        FILE:LINE:COL: tls.cert|tls.key|tls.ca: reason.
  test_8_plaintext_listen_not_recognized_as_loopback_warns  a node listening without TLS on
        the machine's host name (only when it resolves to loopback addresses; checked in
        /proc/net/tcp that the socket is bound to 127.0.0.1) logs "... without TLS ..."; one
        on 127.0.0.1 does not.

Nothing is asserted about timing; every wait is bounded. Skips (exit 0) without grpcio or the
openssl command. Run through ctest, or by hand:
  NH_BINARY_DIR=$PWD/build NH_SOURCE_DIR=$PWD /usr/bin/python3 tests/interop/test_nodehost_tls.py -v
"""

import json
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import grpc
except ImportError as _e:
    print("SKIP: test_nodehost_tls needs grpcio for /usr/bin/python3 (%s)" % _e)
    sys.exit(0)
if not shutil.which("openssl"):
    print("SKIP: test_nodehost_tls needs the openssl command")
    sys.exit(0)

import nh_interop_util as nu  # noqa: E402
import test_nodehost_interop as ni  # noqa: E402  (processes, wires, helpers)

WATCHDOG = 170.0  # the whole file (normal run: well under a minute)
UNAUTHENTICATED = 16
CLIENT_ID_KEY = ni.NODE_ID_KEY

CERTS = None  # the certificates of make_certs.sh, made once per run

CLUSTER_CONF = """\
version: 1
peers:
  - {{ id: 1, address: "127.0.0.1:{p1}" }}
  - {{ id: 2, address: "127.0.0.1:{p2}" }}
  - {{ id: 3, address: "127.0.0.1:{p3}" }}
clients: {{ accept: true }}
plugins:
  - name: storage
    path: {plugin}
tls:
  cert: certs/node${{NODE}}.pem
  key: certs/node${{NODE}}.key
  ca: certs/ca.pem
  clients: require
admin: {{ allow: [ "CN=ops" ] }}
log: {{ level: info, format: text }}
"""


def setUpModule():
    global CERTS
    ni.setUpModule()
    CERTS = ni.new_tmp("certs-")
    subprocess.run(["bash", os.path.join(nu.source_dir(), "tests", "tls", "make_certs.sh"),
                    CERTS], check=True, timeout=60, capture_output=True)


def tearDownModule():
    ni.tearDownModule()


# ---- certificates and credentials ------------------------------------------------------------

def cert_path(name, certs=None):
    return os.path.join(certs or CERTS, name)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def channel_creds(who=None, ca="ca.pem", certs=None):
    """grpcio TLS credentials trusting ca, presenting who.pem/who.key (None: no certificate)."""
    return grpc.ssl_channel_credentials(
        root_certificates=read_bytes(cert_path(ca, certs)),
        private_key=read_bytes(cert_path(who + ".key", certs)) if who else None,
        certificate_chain=read_bytes(cert_path(who + ".pem", certs)) if who else None)


def tls_args(who, ca="ca.pem", certs=None):
    """--tls-* arguments of nodehost status|reload and nh-storage-client."""
    args = ["--tls-ca", cert_path(ca, certs)]
    if who:
        args += ["--tls-cert", cert_path(who + ".pem", certs),
                 "--tls-key", cert_path(who + ".key", certs)]
    return args


def tls_status(address, who="node2", certs=None, timeout_ms=2000):
    """`nodehost status ADDRESS --json` over TLS with who's certificate; None on failure."""
    r = ni.run_nodehost(["status", address, "--json", "--timeout-ms", str(timeout_ms)] +
                        tls_args(who, certs=certs))
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)


def admin_cmd(cmd, address, who, ca="ca.pem", certs=None, extra=()):
    return ni.run_nodehost([cmd, address] + (tls_args(who, ca, certs) if ca else []) +
                           list(extra))


def make_node_cert(certs, out_dir, name, node_id, serial):
    """A new certificate for node_id signed by certs' ca.pem/ca.key (as make_certs.sh makes
    them): out_dir/name.pem and name.key. Returns (pem path, key path)."""
    key, csr = os.path.join(out_dir, name + ".key"), os.path.join(out_dir, name + ".csr")
    pem, ext = os.path.join(out_dir, name + ".pem"), os.path.join(out_dir, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints = CA:FALSE\n"
                "keyUsage = digitalSignature\n"
                "extendedKeyUsage = serverAuth, clientAuth\n"
                "subjectAltName = URI:nodehost://node/%d,IP:127.0.0.1\n" % node_id)
    for cmd in (["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key],
                ["openssl", "req", "-new", "-key", key, "-subj", "/CN=node%d" % node_id,
                 "-out", csr],
                ["openssl", "x509", "-req", "-in", csr, "-CA", cert_path("ca.pem", certs),
                 "-CAkey", cert_path("ca.key", certs), "-set_serial", str(serial),
                 "-days", "30", "-sha256", "-extfile", ext, "-out", pem]):
        subprocess.run(cmd, check=True, timeout=30, capture_output=True)
    os.chmod(key, 0o600)
    return pem, key


def replace_file(src, dst):
    """Copies src over dst atomically (a rename in dst's directory)."""
    tmp = dst + ".tmp"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o600)
    os.rename(tmp, dst)


def served_cert_der(port, certs):
    """The DER certificate a new TLS connection to 127.0.0.1:port is given (Python's ssl, with
    the client certificate, ALPN h2, the hostname checked against the IP SAN)."""
    ctx = ssl.create_default_context(cafile=cert_path("ca.pem", certs))
    ctx.load_cert_chain(cert_path("client.pem", certs), cert_path("client.key", certs))
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.getpeercert(binary_form=True)


def pem_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


# ---- TLS streams -----------------------------------------------------------------------------

class TlsWire(ni.Wire):
    """ni.Wire over grpc.secure_channel(credentials)."""

    def __init__(self, address, credentials, metadata=None, handlers=None, ready_timeout=None):
        self.address = address
        self.channel = grpc.secure_channel(address, credentials)
        try:
            grpc.channel_ready_future(self.channel).result(timeout=ready_timeout or
                                                           ni.READY_TIMEOUT)
        except grpc.FutureTimeoutError:
            self.channel.close()
            raise ni.WireError("cannot connect to %s over TLS" % address)
        self.handlers = dict(handlers or {})
        self.server_requests = queue.Queue()
        self.unexpected = []
        self._lock = threading.Lock()
        self._pending = {}
        self._seq = 0
        self.stream = nu.NodeStream(self.channel, metadata=metadata,
                                    deadline=ni.STREAM_DEADLINE, on_reply=self._on_msg)


def try_stream(address, credentials, metadata=None):
    """Opens one NodeStream (credentials None: plaintext), sends a ReadRPC and returns
    ("reply", code, text) or ("ended", grpc code, details)."""
    ch = grpc.secure_channel(address, credentials) if credentials else \
        grpc.insecure_channel(address)
    try:
        s = nu.NodeStream(ch, metadata=metadata, deadline=ni.REPLY_TIMEOUT)
        s.send(nu.make_message(ni.pb, 1, "proto.Storage.ReadRPC",
                               ni.spb.ReadRequest(Key="probe").SerializeToString()))
        try:
            m = s.recv(ni.REPLY_TIMEOUT)
            code, text = ni.status_of(m)
            return ("reply", code, text)
        except nu.StreamEnded as e:
            return ("ended", e.code, e.details or "")
        finally:
            s.cancel()
    finally:
        ch.close()


def grpc_code(c):
    return c.value[0] if c is not None else None


# ---- clusters --------------------------------------------------------------------------------

class TlsCluster:
    """Three storage nodes from one YAML with tls (clients: require), each with env NODE=<id>;
    the certificates are copied into the cluster's own certs/ directory."""

    def __init__(self, label, conf=CLUSTER_CONF):
        self.dir = ni.new_tmp(label + "-")
        self.certs = os.path.join(self.dir, "certs")
        shutil.copytree(CERTS, self.certs)
        self.label = label
        self.nodes = {}
        last = ""
        for attempt in range(3):  # a free port may be taken meanwhile: retry with new ones
            ports = ni.distinct_free_ports(3)
            self.ports = dict(zip((1, 2, 3), ports))
            self.conf = ni.write_yaml(self.dir, "cluster.yaml", conf.format(
                p1=ports[0], p2=ports[1], p3=ports[2],
                plugin=os.path.join(ni.plugin_dir(), "storage.so")))
            self.nodes = {i: self._proc(i, attempt) for i in (1, 2, 3)}
            if all(n.wait_log("serving on") for n in self.nodes.values()) and \
                    all(n.wait_log("recovered: caught up") for n in self.nodes.values()):
                return
            last = "".join("\n--- node %d ---\n%s" % (i, n.log_tail())
                           for i, n in self.nodes.items())
            for n in self.nodes.values():
                n.kill()
        raise RuntimeError("the TLS cluster did not start:" + last)

    def _proc(self, i, attempt):
        return ni.NodeProc(["--config", self.conf, "--id", str(i)], ni.base_env(NODE=i),
                           "%s-node%d-try%d" % (self.label, i, attempt), self.dir)

    def address(self, i):
        return "127.0.0.1:%d" % self.ports[i]

    def all_addresses(self):
        return ",".join(self.address(i) for i in (1, 2, 3))

    def kill(self):
        for n in self.nodes.values():
            n.kill()


def config_123(st):
    return st is not None and st["config"] == [1, 2, 3]


class TlsCase(ni.Case):

    cluster = None

    def wait_tls_status(self, address, pred, what, who="node2", certs=None):
        last = {}

        def check():
            st = tls_status(address, who, certs or (self.cluster.certs if self.cluster else None))
            last["st"] = st
            return st if st is not None and pred(st) else None
        st = ni.wait_for(check, ni.READY_TIMEOUT, 0.1)
        if not st:
            self.fail("%s: not within %.0f s; last status of %s: %s%s"
                      % (what, ni.READY_TIMEOUT, address, last.get("st"), self.logs()))
        return st

    def tls_wire(self, i, who="client", **kw):
        c = self.cluster
        w = TlsWire(c.address(i), channel_creds(who, certs=c.certs), **kw)
        self.wires().append(w)
        return w

    def qcall(self, wires, method, payload, cls=None):
        """The same request on every stream (a Gorums quorum call); {id: decoded reply}."""
        handles = {i: w.start(method, payload) for i, w in wires.items()}
        return {i: ni.ok(wires[i].wait(h), cls) for i, h in handles.items()}

    def log_since(self, node, offset):
        return node.log()[offset:]

    def start_lone(self, label, conf_text):
        """A single node from conf_text(port) (its files under certs/ beside the YAML) on a free
        port; returns (NodeProc, address). Killed at cleanup."""
        d = ni.new_tmp(label + "-")
        shutil.copytree(CERTS, os.path.join(d, "certs"))
        node = None
        for attempt in range(3):
            port = nu.free_port()
            conf = ni.write_yaml(d, label + ".yaml", conf_text(port))
            node = ni.NodeProc(["--config", conf], ni.base_env(), "%s-%d" % (label, attempt), d)
            self.addCleanup(node.kill)
            if node.wait_log("serving on"):
                return node, "127.0.0.1:%d" % port
            node.kill()
        self.fail("%s did not start:\n%s" % (label, node.log_tail()))

    def storage_client(self, args, timeout=None):
        path = os.path.join(nu.binary_dir(), "plugins", "storage", "nh-storage-client")
        return subprocess.run([path] + list(args), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, env=ni.base_env(),
                              timeout=timeout or ni.RUN_TIMEOUT)


# ---- 1 to 5: one cluster ---------------------------------------------------------------------

class TlsClusterTest(TlsCase):

    @classmethod
    def setUpClass(cls):
        cls.cluster = TlsCluster("tls")
        cls.nodes = list(cls.cluster.nodes.values())

    @classmethod
    def tearDownClass(cls):
        cls.cluster.kill()

    def setUp(self):
        for i in (1, 2, 3):
            self.wait_tls_status(self.cluster.address(i), config_123,
                                 "node %d shows Config 1 2 3" % i)

    def good_call(self, i, key="probe"):
        """A new TLS stream with the client certificate; ReadRPC must succeed."""
        res = try_stream(self.cluster.address(i), channel_creds("client", certs=self.cluster.certs))
        self.assertEqual(res[:2], ("reply", 0), "a good call after a refusal: %s%s"
                         % (res, self.logs()))

    def test_1_cluster_forms_and_quorum_calls_work_over_tls(self):
        c = self.cluster
        for i in (1, 2, 3):
            st = tls_status(c.address(i), "node%d" % (i % 3 + 1), c.certs)
            self.assertIsNotNone(st, self.logs())
            self.assertEqual((st["node_id"], st["config"], st["members"]), (i, [1, 2, 3],
                                                                           [1, 2, 3]))
            self.assertIn("with TLS", c.nodes[i].log())
        r = ni.run_nodehost(["status", c.address(2)] + tls_args("node1", certs=c.certs))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"(?m)^Config:\s+1 2 3$")
        # Quorum calls through grpcio TLS streams with the client certificate.
        w = {i: self.tls_wire(i) for i in (1, 2, 3)}
        news = self.qcall(w, "proto.Storage.WriteQC", ni.write_req("t1", "over-tls", 100),
                          ni.spb.WriteResponse)
        self.assertEqual({i: r.New for i, r in news.items()}, {1: True, 2: True, 3: True})
        reads = self.qcall(w, "proto.Storage.ReadQC", ni.spb.ReadRequest(Key="t1"),
                           ni.spb.ReadResponse)
        self.assertEqual({i: (r.OK, r.Value) for i, r in reads.items()},
                         {i: (True, "over-tls") for i in (1, 2, 3)})
        # Nested quorum calls: the nodes call each other over their own TLS peer streams.
        m = w[2].call("proto.Storage.WriteNestedQC", ni.spb.WriteRequest(Key="t1n", Value="nest"))
        ni.ok(m, ni.spb.WriteResponse)
        for i in (1, 3):
            r = ni.ok(w[i].call("proto.Storage.ReadNestedQC", ni.spb.ReadRequest(Key="t1n")),
                      ni.spb.ReadResponse)
            self.assertEqual((r.OK, r.Value), (True, "nest"), "ReadNestedQC via node %d" % i)
        # The C client (SDK channels with TLS) writes and reads.
        tls = tls_args("client", certs=c.certs)
        r = self.storage_client(["--nodes", c.all_addresses()] + tls + ["write", "t1c", "cval"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("write t1c=cval: ok", r.stdout)
        r = self.storage_client(["--nodes", c.all_addresses()] + tls + ["read", "t1c"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('read t1c: "cval"', r.stdout)
        # Without --tls-* the same client cannot read from TLS nodes.
        r = self.storage_client(["--nodes", c.all_addresses(), "--timeout-ms", "1000",
                                 "read", "t1c"])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertNotIn("cval", r.stdout)

    def test_2_spoofed_node_id_is_refused_and_the_real_peer_untouched(self):
        c = self.cluster
        n1 = c.nodes[1]
        before = len(n1.log())
        kind, code, details = try_stream(c.address(1), channel_creds("node3", certs=c.certs),
                                         [(CLIENT_ID_KEY, "2")])
        self.assertEqual((kind, grpc_code(code)), ("ended", UNAUTHENTICATED), details)
        self.assertIn("node 2", details)
        self.assertIn("nodehost://node/3", details)
        line = n1.wait_log_re(r"(?m)^.*claims node 2\b.*nodehost://node/3.*$")
        self.assertIsNotNone(line, "node 1 did not log the spoof" + self.logs())
        # A client certificate (no node identity) claiming known peer 2.
        kind, code, details = try_stream(c.address(1), channel_creds("client", certs=c.certs),
                                         [(CLIENT_ID_KEY, "2")])
        self.assertEqual((kind, grpc_code(code)), ("ended", UNAUTHENTICATED), details)
        self.assertIn("known peer 2", details)
        self.assertIn("urn:nodehost:client:alice", details)
        self.assertIsNotNone(n1.wait_log_re(r"claims known peer 2.*urn:nodehost:client:alice"))
        # The real node 2 was never touched: still in Config, never left, quorums work.
        st = tls_status(c.address(1), "node3", c.certs)
        self.assertEqual(st["config"], [1, 2, 3], st)
        later = self.log_since(n1, before)
        self.assertNotIn("known peer 2 left", later)
        self.assertNotRegex(later, r"Config is now")
        w1 = self.tls_wire(1)
        ni.ok(w1.call("proto.Storage.WriteNestedQC",
                      ni.spb.WriteRequest(Key="t2", Value="after-spoof")), ni.spb.WriteResponse)
        w2 = self.tls_wire(2)
        r = ni.ok(w2.call("proto.Storage.ReadNestedQC", ni.spb.ReadRequest(Key="t2")),
                  ni.spb.ReadResponse)
        self.assertEqual((r.OK, r.Value), (True, "after-spoof"))
        self.assertNotIn("known peer 2 left", self.log_since(n1, before))
        # tls.clients: optional (a lone node 4 that knows a node 5): a client without a
        # certificate is served anonymously, but cannot claim node 5; node 5's certificate can.
        # Claiming an unknown ID is only refused when a node certificate proves another one.
        n4, a4 = self.start_lone("optional4", lambda port: """\
version: 1
node: {{ id: 4 }}
peers:
  - {{ id: 4, address: "127.0.0.1:{port}" }}
  - {{ id: 5, address: "127.0.0.1:{p5}" }}
plugins:
  - {{ name: storage, path: {plugin} }}
tls: {{ cert: certs/node4.pem, key: certs/node4.key, ca: certs/ca.pem, clients: optional }}
""".format(port=port, p5=nu.free_port(), plugin=os.path.join(ni.plugin_dir(), "storage.so")))
        anon = channel_creds(None)
        self.assertEqual(try_stream(a4, anon)[0], "reply")
        self.assertEqual(try_stream(a4, anon, [(CLIENT_ID_KEY, "9")])[0], "reply")
        kind, code, details = try_stream(a4, anon, [(CLIENT_ID_KEY, "5")])
        self.assertEqual((kind, grpc_code(code)), ("ended", UNAUTHENTICATED), details)
        self.assertEqual(details, 'gorums-node-id claims known peer 5 without a certificate '
                                  'proving "nodehost://node/5": refused')
        self.assertIsNotNone(n4.wait_log_re(r"warn server: refusing a stream from "
                                            r"ipv4:127\.0\.0\.1:\d+: gorums-node-id claims "
                                            r"known peer 5 without a certificate"))
        kind, code, details = try_stream(a4, channel_creds("node5"), [(CLIENT_ID_KEY, "9")])
        self.assertEqual((kind, grpc_code(code)), ("ended", UNAUTHENTICATED), details)
        self.assertIn("claims node 9 but the certificate proves nodehost://node/5", details)
        self.assertEqual(try_stream(a4, channel_creds("node5"), [(CLIENT_ID_KEY, "5")])[0],
                         "reply")
        self.assertTrue(n4.wait_log("known peer 5 connected"), n4.log_tail())
        kind, code, details = try_stream(a4, channel_creds("expired"))
        self.assertEqual((kind, grpc_code(code)), ("ended", UNAUTHENTICATED), details)
        self.assertIn("the certificate has expired", details)

    def test_3_bad_clients_are_refused_with_reasons_on_both_sides(self):
        c = self.cluster
        n1 = c.nodes[1]
        refused = [
            ("no client certificate", channel_creds(None, certs=c.certs),
             "this node requires a client certificate (tls.clients: require) and none was "
             "presented"),
            ("expired", channel_creds("expired", certs=c.certs),
             "client certificate refused: the certificate has expired (notAfter "),
            ("not yet valid", channel_creds("future", certs=c.certs),
             "client certificate refused: the certificate is not valid yet (notBefore "),
            ("another CA", channel_creds("rogue2", certs=c.certs),
             "client certificate refused: the certificate is not signed by this cluster's CA"),
        ]
        for what, creds, reason in refused:
            before = len(n1.log())
            kind, code, details = try_stream(c.address(1), creds)
            self.assertEqual((kind, grpc_code(code)), ("ended", UNAUTHENTICATED),
                             "%s: %s" % (what, details))
            self.assertIn(reason, details, what)
            self.assertTrue(ni.wait_for(lambda: reason in self.log_since(n1, before),
                                        ni.REPLY_TIMEOUT),
                            "%s: node 1 did not log the reason%s" % (what, self.logs()))
            self.assertRegex(self.log_since(n1, before),
                             r"warn server: refused a stream from ipv4:127\.0\.0\.1:\d+: " +
                             re.escape(reason))
            self.assertTrue(n1.alive(), what)
            self.good_call(1)
        # Plaintext to a TLS node: no connection (UNAVAILABLE), the node logs the failed TLS
        # handshake and keeps serving.
        before = len(n1.log())
        kind, code, details = try_stream(c.address(1), None)
        self.assertEqual((kind, grpc_code(code)), ("ended", ni.UNAVAILABLE), details)
        self.assertTrue(ni.wait_for(lambda: "wrong version number" in self.log_since(n1, before),
                                    ni.REPLY_TIMEOUT),
                        "node 1 did not log the plaintext handshake" + self.logs())
        self.assertTrue(n1.alive())
        self.good_call(1)
        # A client that does not trust the cluster's CA refuses the node's certificate: the
        # reason is on the client side (the node only sees the handshake end).
        kind, code, details = try_stream(c.address(1), channel_creds("client", "other-ca.pem",
                                                                     c.certs))
        self.assertEqual((kind, grpc_code(code)), ("ended", ni.UNAVAILABLE), details)
        self.assertRegex(details, r"(?i)handshake failed|certificate verify failed")
        self.assertTrue(n1.alive())
        self.good_call(1)
        # The same through the C SDK: nodehost status checks the node's certificate.
        r = admin_cmd("status", c.address(1), "node2", ca="other-ca.pem", certs=c.certs)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("server certificate refused: the certificate is not signed by this "
                      "cluster's CA", r.stderr)
        for i in (1, 2, 3):
            self.assertTrue(c.nodes[i].alive(), "node %d died%s" % (i, self.logs()))

    def test_4_client_peer_over_tls_gets_server_initiated_calls(self):
        c = self.cluster
        n1 = c.nodes[1]
        before = len(n1.log())
        acked = {"proto.StorageClient.Notify":
                 lambda m: ni.spb.WriteResponse(New=True).SerializeToString()}
        peer = self.tls_wire(1, metadata=[(CLIENT_ID_KEY, "0")], handlers=acked)
        ni.ok(peer.call("proto.Storage.ReadRPC", ni.spb.ReadRequest(Key="x")))
        st = self.wait_tls_status(c.address(1), lambda s: len(s["client_config"]) == 1,
                                  "the TLS client peer shows in ClientConfig")
        cid = st["client_config"][0]
        self.assertGreaterEqual(cid, ni.FIRST_CLIENT_ID)
        self.assertEqual(st["config"], [1, 2, 3])
        self.assertRegex(self.log_since(n1, before),
                         r"client peer %d connected from ipv4:127\.0\.0\.1:\d+ as "
                         r"urn:nodehost:client:alice" % cid)
        # A plain TLS client (no gorums-node-id) asks node 1 to notify its client peers.
        plain = self.tls_wire(1)
        req = ni.write_req("note", "hello over tls", 42)
        r = ni.ok(plain.call("proto.Storage.NotifyClients", req), ni.spb.NotifyResponse)
        self.assertEqual((r.Acked, list(r.ClientIDs)), (1, [cid]))
        m = peer.server_requests.get(timeout=ni.REPLY_TIMEOUT)
        self.assertTrue(m.message_seq_no & ni.BIT63, str(m))
        self.assertEqual(m.method, "proto.StorageClient.Notify")
        self.assertEqual(ni.spb.WriteRequest.FromString(m.payload), req)
        self.assertFalse(peer.stream.ended.is_set())
        peer.close()
        self.wait_tls_status(c.address(1), lambda s: s["client_config"] == [],
                             "the client peer leaves ClientConfig")
        # The C SDK as a client peer over TLS: nh-storage-client listen / notify.
        tls = tls_args("client", certs=c.certs)
        path = os.path.join(nu.binary_dir(), "plugins", "storage", "nh-storage-client")
        out_path = os.path.join(c.dir, "listen.out")
        with open(out_path, "w") as out:
            lst = subprocess.Popen([path, "--nodes", c.all_addresses()] + tls +
                                   ["--for-ms", str(int(ni.READY_TIMEOUT * 1000)), "listen"],
                                   stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, env=ni.base_env())
        try:
            self.wait_tls_status(c.address(1), lambda s: len(s["client_config"]) == 1,
                                 "nh-storage-client listen shows in ClientConfig")
            r = self.storage_client(["--nodes", c.all_addresses()] + tls +
                                    ["notify", "1", "kn", "vn"])
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("acked by 1 client", r.stdout)

            def got():
                with open(out_path) as f:
                    return "notification from node 1: kn=vn" in f.read()
            self.assertTrue(ni.wait_for(got, ni.REPLY_TIMEOUT),
                            "listen did not print the notification")
        finally:
            lst.send_signal(signal.SIGTERM)
            try:
                lst.wait(10)
            except subprocess.TimeoutExpired:
                lst.kill()
                lst.wait(5)

    def test_5_admin_methods_are_gated_by_certificate_identity(self):
        c = self.cluster
        a1 = c.address(1)
        # alice: a valid client certificate, but not an admin.
        for cmd in ("reload", "status"):
            r = admin_cmd(cmd, a1, "client", certs=c.certs)
            self.assertEqual(r.returncode, 1, "%s: %s%s" % (cmd, r.stdout, r.stderr))
            self.assertRegex(r.stderr, r"PERMISSION_DENIED|not allowed")
            self.assertIn("urn:nodehost:client:alice", r.stderr)
        # CN=ops is in admin.allow.
        r = admin_cmd("reload", a1, "ops", certs=c.certs)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"^reload \d+: 0 plugin\(s\) changed")
        r = admin_cmd("status", a1, "ops", certs=c.certs, extra=["--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["node_id"], 1)
        # A member node's certificate.
        r = admin_cmd("reload", a1, "node3", certs=c.certs, extra=["--json"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # A node certificate of a node outside the cluster is no member.
        r = admin_cmd("reload", a1, "node5", certs=c.certs)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("nodehost://node/5", r.stderr)
        self.assertRegex(r.stderr, r"PERMISSION_DENIED|not allowed")
        # Without TLS: the connection fails, with a hint at --tls-ca.
        for cmd in ("status", "reload"):
            r = ni.run_nodehost([cmd, a1, "--timeout-ms", "2000"])
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("--tls-ca", r.stderr)
        # TLS without a client certificate on a node that requires one.
        r = admin_cmd("status", a1, None, certs=c.certs)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("requires a client certificate", r.stderr)
        # A lone node 4 without admin.allow: ops and node 1 are refused, its own certificate
        # (a member: itself) is let in.
        _, a4 = self.start_lone("lone4", lambda port: """\
version: 1
node: {{ id: 4, listen: "127.0.0.1:{port}" }}
tls: {{ cert: certs/node4.pem, key: certs/node4.key, ca: certs/ca.pem }}
""".format(port=port))
        for who in ("ops", "node1"):
            r = admin_cmd("reload", a4, who, certs=c.certs)
            self.assertEqual(r.returncode, 1, "%s: %s%s" % (who, r.stdout, r.stderr))
            self.assertRegex(r.stderr, r"PERMISSION_DENIED|not allowed")
        r = admin_cmd("reload", a4, "node4", certs=c.certs)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


# ---- 6: rotation -----------------------------------------------------------------------------

class TlsRotationTest(TlsCase):

    def setUp(self):
        self.cluster = TlsCluster("rotation")
        self.nodes = list(self.cluster.nodes.values())
        self.addCleanup(self.cluster.kill)

    def test_6_certificate_rotation_under_load(self):
        c = self.cluster
        for i in (1, 2, 3):
            self.wait_tls_status(c.address(i), config_123, "node %d shows Config 1 2 3" % i)
        node1_pem, node1_key = cert_path("node1.pem", c.certs), cert_path("node1.key", c.certs)
        old_der = pem_der(node1_pem)
        self.assertEqual(served_cert_der(c.ports[1], c.certs), old_der)
        staging = ni.new_tmp("staging-")
        new_pem, new_key = make_node_cert(c.certs, staging, "node1-new", 1, 77001)
        new_der = pem_der(new_pem)
        self.assertNotEqual(new_der, old_der)

        # The load: long-lived TLS streams to every node (client certificate).
        w = {i: self.tls_wire(i) for i in (1, 2, 3)}
        stop = threading.Event()
        state = {"done": 0, "failures": [], "iterations_at_reload": None}

        def load():
            n = 0
            while not stop.is_set():
                n += 1
                key, value = "rot%d" % (n % 8), "v%d" % n
                try:
                    news = self.qcall(w, "proto.Storage.WriteQC", ni.write_req(key, value, n),
                                      ni.spb.WriteResponse)
                    if not all(r.New for r in news.values()):
                        state["failures"].append("WriteQC %d not new: %s" % (n, news))
                    reads = self.qcall(w, "proto.Storage.ReadQC", ni.spb.ReadRequest(Key=key),
                                       ni.spb.ReadResponse)
                    if any(r.Value != value for r in reads.values()):
                        state["failures"].append("ReadQC %d: %s" % (n, reads))
                    ni.ok(w[1].call("proto.Storage.WriteNestedQC",
                                    ni.spb.WriteRequest(Key="n" + key, Value=value)),
                          ni.spb.WriteResponse)
                    r = ni.ok(w[1].call("proto.Storage.ReadNestedQC",
                                        ni.spb.ReadRequest(Key="n" + key)), ni.spb.ReadResponse)
                    if r.Value != value:
                        state["failures"].append("ReadNestedQC %d: %r" % (n, r.Value))
                except Exception as e:  # every failure is reported below
                    state["failures"].append("iteration %d: %s" % (n, e))
                    if any(x.stream.ended.is_set() for x in w.values()):
                        return
                state["done"] = n
                time.sleep(0.002)

        at_reload, configs = None, []
        t = threading.Thread(target=load, daemon=True)
        t.start()
        try:
            self.assertTrue(ni.wait_for(lambda: state["done"] >= 20 or state["failures"],
                                        ni.READY_TIMEOUT), "the load did not run")
            offsets = {i: len(n.log()) for i, n in c.nodes.items()}
            # Rotate: new cert and key files for node 1 from the same CA, then reload.
            replace_file(new_key, node1_key)
            replace_file(new_pem, node1_pem)
            r = admin_cmd("reload", c.address(1), "node2", certs=c.certs)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr + self.logs())
            at_reload = state["done"]
            self.assertTrue(c.nodes[1].wait_log("TLS credentials reloaded from " + node1_pem),
                            self.logs())
            # Config of every node stays 1 2 3 while the load goes on.
            for _ in range(3):
                for i in (1, 2, 3):
                    st = tls_status(c.address(i), "node3", c.certs)
                    configs.append((i, st and st["config"]))
            self.assertTrue(ni.wait_for(lambda: state["done"] >= at_reload + 20 or
                                        state["failures"], ni.READY_TIMEOUT),
                            "the load stalled after the reload")
            # New connections get the new certificate (Python's ssl and grpcio).
            self.assertEqual(served_cert_der(c.ports[1], c.certs), new_der)
            fresh = self.tls_wire(1)
            r2 = ni.ok(fresh.call("proto.Storage.ReadNestedQC", ni.spb.ReadRequest(Key="nrot1")),
                       ni.spb.ReadResponse)
            self.assertTrue(r2.OK)
        finally:
            stop.set()
            t.join(ni.REPLY_TIMEOUT + 5)
        self.assertFalse(t.is_alive(), "the load thread did not stop")
        self.assertEqual(state["failures"], [], self.logs())
        self.assertGreater(state["done"], at_reload)
        sys.stderr.write("[tls] rotation: %d load iterations without a failure, %d of them "
                         "after the reload\n" % (state["done"], state["done"] - at_reload))
        for i, x in w.items():
            self.assertFalse(x.stream.ended.is_set(), "the stream to node %d ended: %s %r"
                             % (i, x.stream.code, x.stream.details))
        self.assertEqual([x for x in configs if x[1] != [1, 2, 3]], [], configs)
        for i, n in c.nodes.items():
            later = self.log_since(n, offsets[i])
            self.assertNotRegex(later, r"known peer \d+ left|Config is now",
                                "node %d after the rotation:\n%s" % (i, later[-3000:]))
            self.assertNotRegex(later, r"refus(ed|ing) a stream", "node %d refused a stream" % i)
        for i in (1, 2, 3):
            self.assertEqual(tls_status(c.address(i), "node1", c.certs)["config"], [1, 2, 3])

        # Bad rotations change nothing: node 2's key with node 1's new certificate ...
        replace_file(cert_path("node2.key", c.certs), node1_key)
        r = admin_cmd("reload", c.address(1), "node2", certs=c.certs)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stderr, r"tls\.key: .*does not match")
        self.assertEqual(served_cert_der(c.ports[1], c.certs), new_der)
        # ... and a certificate for node 1 from another CA (with its own key).
        replace_file(cert_path("rotated1.key", c.certs), node1_key)
        replace_file(cert_path("rotated1.pem", c.certs), node1_pem)
        r = admin_cmd("reload", c.address(1), "node2", certs=c.certs)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stderr, r"tls\.cert: .*is not signed by the CA")
        self.assertEqual(served_cert_der(c.ports[1], c.certs), new_der)
        ni.ok(self.tls_wire(1).call("proto.Storage.ReadRPC", ni.spb.ReadRequest(Key="rot1")))
        # Node 2 restarted: it verifies node 1's rotated certificate when it dials, and node 1
        # presents it when it redials node 2 (still the good one in memory).
        offsets = {i: len(n.log()) for i, n in c.nodes.items()}
        rc, _ = c.nodes[2].stop()
        self.assertEqual(rc, 0, self.logs())
        c.nodes[2].start()
        self.assertTrue(c.nodes[2].wait_log("serving on"), self.logs())
        for i in (1, 2, 3):
            self.wait_tls_status(c.address(i), config_123,
                                 "node %d shows Config 1 2 3 after node 2's restart" % i)
        for log in (self.log_since(c.nodes[1], offsets[1]), c.nodes[2].log()):
            self.assertNotRegex(log, r"refus(ed|ing) a stream|certificate refused")
        w2 = self.tls_wire(2)
        r = ni.ok(w2.call("proto.Storage.ReadNestedQC", ni.spb.ReadRequest(Key="nrot1")),
                  ni.spb.ReadResponse)
        self.assertTrue(r.OK)


# ---- 7, 8: configuration checks --------------------------------------------------------------

class TlsConfigTest(TlsCase):

    def test_7_check_config_reports_bad_tls_files_with_positions(self):
        d = ni.new_tmp("checkconf-")
        shutil.copytree(CERTS, os.path.join(d, "certs"))
        cases = [
            # (node id, cert, key, ca, identity of node 1, setting, reason regex)
            (1, "missing.pem", "node1.key", "ca.pem", None, "cert",
             r'cannot read the certificate ".*/certs/missing\.pem": No such file'),
            (1, "node1.pem", "missing.key", "ca.pem", None, "key",
             r'cannot read the private key ".*/certs/missing\.key": No such file'),
            (1, "node1.pem", "node1.key", "missing-ca.pem", None, "ca",
             r'cannot read the CA bundle ".*/certs/missing-ca\.pem": No such file'),
            (1, "node1.pem", "node2.key", "ca.pem", None, "key",
             r'the key in ".*/certs/node2\.key" does not match the certificate in '
             r'".*/certs/node1\.pem"'),
            (2, "expired.pem", "expired.key", "ca.pem", None, "cert",
             r'the certificate ".*/certs/expired\.pem" has expired \(notAfter .*2020'),
            (2, "future.pem", "future.key", "ca.pem", None, "cert",
             r'the certificate ".*/certs/future\.pem" is not valid yet \(notBefore .*2099'),
            (2, "rogue2.pem", "rogue2.key", "ca.pem", None, "cert",
             r'the certificate ".*/certs/rogue2\.pem" is not signed by the CA in '
             r'".*/certs/ca\.pem"'),
            (1, "node3.pem", "node3.key", "ca.pem", None, "cert",
             r'the certificate ".*/certs/node3\.pem" does not carry this node\'s identity '
             r'"nodehost://node/1" \(it proves "nodehost://node/3"'),
            (1, "node1.pem", "node1.key", "ca.pem", "spiffe://example.org/node/1", "cert",
             r'the certificate ".*/certs/node1\.pem" does not carry this node\'s identity '
             r'"spiffe://example.org/node/1" \(it proves "nodehost://node/1"'),
            (1, "node1.pem", "node1.key", "node1.key", None, "ca",
             r'the CA bundle ".*/certs/node1\.key" holds no PEM certificate'),
            (1, "node1.key", "node1.key", "ca.pem", None, "cert",
             r'the certificate file ".*/certs/node1\.key" holds no PEM certificate'),
            (1, "node1.pem", "node1.pem", "ca.pem", None, "key",
             r'the key file ".*/certs/node1\.pem" holds no usable PEM private key'),
        ]
        for n, (node_id, cert, key, ca, identity, setting, reason) in enumerate(cases):
            ident = ', identity: "%s"' % identity if identity else ""
            text = """\
version: 1
peers:
  - {{ id: 1, address: "127.0.0.1:7101"{ident} }}
  - {{ id: 2, address: "127.0.0.1:7102" }}
tls:
  cert: certs/{cert}
  key: certs/{key}
  ca: certs/{ca}
""".format(ident=ident, cert=cert, key=key, ca=ca)
            name = "bad%02d.yaml" % n
            path = ni.write_yaml(d, name, text)
            line = {"cert": 6, "key": 7, "ca": 8}[setting]
            col = len("  %s: " % setting) + 1
            r = ni.run_nodehost(["--config", path, "--id", str(node_id), "--check-config"])
            what = "%s (%s, %s, %s, node %d)" % (setting, cert, key, ca, node_id)
            self.assertEqual(r.returncode, 1, "%s: %s%s" % (what, r.stdout, r.stderr))
            self.assertRegex(r.stderr, r"^%s:%d:%d: tls\.%s: %s" % (re.escape(path), line, col,
                                                                     setting, reason), what)
        # The good files pass, with ${VAR} in the paths.
        good = ni.write_yaml(d, "good.yaml", """\
version: 1
peers:
  - { id: 1, address: "127.0.0.1:7101" }
  - { id: 2, address: "127.0.0.1:7102" }
tls:
  cert: certs/node${NODE}.pem
  key: certs/node${NODE}.key
  ca: certs/ca.pem
""")
        for i in (1, 2):
            r = ni.run_nodehost(["--config", good, "--id", str(i), "--check-config"],
                                env=ni.base_env(NODE=i))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("OK (node %d" % i, r.stdout)
        # ${NODE} naming another node's files: the identity check catches it.
        r = ni.run_nodehost(["--config", good, "--id", "1", "--check-config"],
                            env=ni.base_env(NODE=2))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertRegex(r.stderr, r"good\.yaml:6:9: tls\.cert: .*\"nodehost://node/1\"")

    def test_8_plaintext_listen_warning_follows_what_the_address_resolves_to(self):
        """No warning for loopback, however it is spelled (127.0.0.1, the machine's host name
        when it resolves to loopback only, [::1]); a warning for the wildcard address, which
        accepts connections from every interface (nothing connects to it here)."""
        d = ni.new_tmp("warn-")

        def start(host, label):
            for attempt in range(3):
                port = nu.free_port()
                conf = ni.write_yaml(d, label + ".yaml",
                                     'version: 1\nnode: { id: 1, listen: "%s:%d" }\n'
                                     % (host, port))
                node = ni.NodeProc(["--config", conf], ni.base_env(), "%s-%d" % (label, attempt),
                                   d)
                self.addCleanup(node.kill)
                if node.wait_log("serving on"):
                    return node, port
                node.kill()
            self.fail("%s did not start:\n%s" % (label, node.log_tail()))

        loop, _ = start("127.0.0.1", "loopback")
        self.assertNotIn("without TLS", loop.log())
        loop.stop()
        host = socket.gethostname()
        try:
            addrs = {ai[4][0] for ai in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
        except OSError:
            addrs = set()
        if addrs and all(a == "::1" or a.startswith("127.") for a in addrs):
            named, _ = start(host, "hostname")
            self.assertNotIn("without TLS", named.log())
            named.stop()
        wild, port = start("0.0.0.0", "wildcard")
        self.assertRegex(wild.log(), r"warn host: listening on 0\.0\.0\.0:%d without TLS: " % port)
        wild.stop()

if __name__ == "__main__":
    ni.run_main("test_nodehost_tls", WATCHDOG)
