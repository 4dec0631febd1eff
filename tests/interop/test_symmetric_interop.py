#!/usr/bin/python3
"""Interop: grpcio (Debian's python3-grpcio) as an independent peer of nh_sym_server.

The symmetric configuration seen from the wire (spec sections 1.5, 1.6, 4 and 6.1 cases 1-9):
streams announcing gorums-node-id become known peers (Config) or client peers (ClientConfig),
the node calls them back on their own stream with bit-63 sequence numbers, and they answer with
raw stream.Message envelopes. Every test starts its own nh_sym_server (node 1) and stops it with
SIGTERM in tearDown, which must end with exit code 0.

Observation points, all on the wire:
- sys.Ids on a header-less (untracked) stream: "<Config IDs>|<ClientConfig IDs>";
- sys.CallClients / sys.CallConfig: the node's quorum call (All, 5 s timeout) over
  ClientConfig / Config; the peers here receive the server-initiated requests themselves;
- test.Echo.Meta: the metadata the handler saw (to prove what grpcio put on the wire).
Server stderr runs with NH_LOG=debug (to a temporary file) and is printed when a test fails;
the "stream from ... closed" debug line is also used as the signal that the node has processed
the end of a stream whose end changes nothing observable.

Run through ctest (sets NH_SOURCE_DIR and NH_BINARY_DIR), or by hand:
  NH_BINARY_DIR=<build> /usr/bin/python3 tests/interop/test_symmetric_interop.py -v
"""

import os
import queue
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import nh_interop_util as nu  # noqa: E402

ECHO = "test.Echo.Echo"
META = "test.Echo.Meta"
IDS = "sys.Ids"
CALL_CLIENTS = "sys.CallClients"
CALL_CONFIG = "sys.CallConfig"
PING = "cli.Ping"
NODE_ID_KEY = "gorums-node-id"

SERVER_ID = 1
KNOWN = 7
FIRST_CLIENT_ID = 1 << 20
BIT63 = 1 << 63
LABEL_PORT_BASE = 20000  # known peers' addresses: 127.0.0.1:<base + ID>, never dialed

RECV_TIMEOUT = 10.0      # seconds to wait for any single reply
CALL_TIMEOUT_WAIT = 12.0  # a reply that comes only after the node's 5 s call timeout
POLL_TIMEOUT = 10.0      # a configuration change to become visible
STREAM_DEADLINE = 30.0   # gRPC deadline of every call: nothing outlives it
SHUTDOWN_TIMEOUT = 10.0  # SIGTERM -> exit
WATCHDOG = 120.0         # the whole file, hard limit (normal run: well under 30 s)

pb = None
_live_servers = []
_server_logs = {}        # test id -> (exit code, stderr tail), for the failure report


def setUpModule():
    global pb
    pb = nu.load_stream_pb2()


def msg(seq, method, payload=b"", entries=()):
    return nu.make_message(pb, seq, method, payload, entries)


def status_msg(seq, method, code, text):
    m = msg(seq, method)
    m.status.code = code
    m.status.message = text
    return m


def answerer(payload):
    """on_reply callback: answers every server-initiated request (bit 63) with payload."""
    def on_reply(s, m):
        if m.message_seq_no & BIT63:
            s.send(msg(m.message_seq_no, m.method, payload))
    return on_reply


def parse_ids(text):
    def ids(part):
        return [int(x) for x in part.split(",") if x]
    cfg, sep, clients = text.partition("|")
    if not sep:
        raise AssertionError("sys.Ids reply %r has no '|'" % text)
    return ids(cfg), ids(clients)


def meta_pairs(text):
    pairs = []
    for item in text.split(";"):
        if item:
            k, _, v = item.partition("=")
            pairs.append((k, v))
    return pairs


class SymCase(unittest.TestCase):
    """One nh_sym_server (node 1) per test, one grpcio channel to it."""

    known_peers = ()  # IDs of known peers besides node 1 itself

    def setUp(self):
        self.server = self._start_server()
        _live_servers.append(self.server)
        self.channel = grpc.insecure_channel(self.server.address)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self._channels = [self.channel]
        self._streams = []
        self._control = None
        self._stopped = False

    def _start_server(self):
        env = {"NH_LOG": "debug"}  # goes to a temporary file; see close_and_wait_processed
        last = None
        for _ in range(5):  # the chosen port may be taken meanwhile: try another one
            port = nu.free_port()
            if port - LABEL_PORT_BASE in self.known_peers:
                continue
            peers = {SERVER_ID: "127.0.0.1:%d" % port}
            for pid in self.known_peers:  # labels only: a node without --dial never dials
                peers[pid] = "127.0.0.1:%d" % (LABEL_PORT_BASE + pid)
            try:
                return nu.SymServer(SERVER_ID, peers=peers, port=port, env=env)
            except RuntimeError as e:
                last = e
        raise last

    def tearDown(self):
        for s in self._streams:
            if not s.ended.is_set():
                s.cancel()
        for ch in self._channels:
            ch.close()
        alive = self.server.alive()
        rc = self.server.terminate(SHUTDOWN_TIMEOUT)
        tail = self.server.stderr_tail()
        self.server.close()
        _live_servers.remove(self.server)
        _server_logs[self.id()] = (rc, tail)
        if not self._stopped:
            self.assertTrue(alive, "server died during the test; stderr:\n" + tail)
            self.assertEqual(rc, 0, "nh_sym_server did not exit 0 within %.0f s of SIGTERM "
                             "(exit code %r); stderr:\n%s" % (SHUTDOWN_TIMEOUT, rc, tail))

    # -- helpers ---------------------------------------------------------------------------

    def stderr(self):
        return self.server.stderr_tail(12000)

    def new_channel(self):
        ch = grpc.insecure_channel(self.server.address)
        self._channels.append(ch)
        grpc.channel_ready_future(ch).result(timeout=10)
        return ch

    def open_stream(self, metadata=None, on_reply=None, channel=None):
        s = nu.NodeStream(channel or self.channel, metadata=metadata, deadline=STREAM_DEADLINE,
                          on_reply=on_reply)
        s.next_seq = 1
        self._streams.append(s)
        return s

    def recv(self, s, timeout=RECV_TIMEOUT):
        try:
            return s.recv(timeout)
        except (queue.Empty, nu.StreamEnded) as e:
            self.fail("%s; server stderr:\n%s" % (e, self.stderr()))

    def send_request(self, s, method, payload=b"", entries=()):
        seq = s.next_seq
        s.next_seq += 1
        s.send(msg(seq, method, payload, entries))
        return seq

    def reply_to(self, s, seq, timeout=RECV_TIMEOUT, skip_requests=False):
        """The next message on s, which must be the reply to our request seq. With
        skip_requests, server-initiated requests (bit 63) before it are passed over (they
        are answered by the stream's on_reply callback)."""
        while True:
            r = self.recv(s, timeout)
            if skip_requests and r.message_seq_no & BIT63:
                continue
            self.assertEqual(r.message_seq_no, seq,
                             "expected the reply to request %d, got %s; server stderr:\n%s"
                             % (seq, r, self.stderr()))
            return r

    def call(self, s, method, payload=b"", timeout=RECV_TIMEOUT, skip_requests=False,
             entries=()):
        seq = self.send_request(s, method, payload, entries)
        r = self.reply_to(s, seq, timeout, skip_requests)
        self.assertEqual(r.method, method)
        return r

    def ok_payload(self, r):
        self.assertFalse(r.HasField("status") and r.status.code != 0,
                         "unexpected status %s; server stderr:\n%s" % (r.status, self.stderr()))
        return r.payload

    def echo(self, s, text="hi", skip_requests=False):
        r = self.call(s, ECHO, text, skip_requests=skip_requests)
        self.assertEqual(self.ok_payload(r), b"echo: " + text.encode())

    def peer(self, value, on_reply=None, channel=None):
        """A stream announcing gorums-node-id value(s) (a str or a list of str), with one echo
        done so that the node has accepted and classified it."""
        values = [value] if isinstance(value, str) else list(value)
        s = self.open_stream([(NODE_ID_KEY, v) for v in values], on_reply, channel)
        self.echo(s, "hello", skip_requests=True)
        return s

    def control(self):
        """The header-less (regular, untracked) stream used to ask the node."""
        if self._control is None or self._control.ended.is_set():
            self._control = self.open_stream()
        return self._control

    def ids(self):
        r = self.call(self.control(), IDS)
        return parse_ids(self.ok_payload(r).decode())

    def wait_ids(self, pred, what, timeout=POLL_TIMEOUT):
        end = time.monotonic() + timeout
        while True:
            cfg, clients = self.ids()
            if pred(cfg, clients):
                return cfg, clients
            if time.monotonic() > end:
                self.fail("%s: not within %.0f s; last Config %s, ClientConfig %s; server "
                          "stderr:\n%s" % (what, timeout, cfg, clients, self.stderr()))
            time.sleep(0.02)

    def count_closed(self):
        """How many server streams the node has logged as closed (debug log)."""
        data = self.server.stderr_tail(1 << 30)
        return sum(1 for line in data.splitlines()
                   if " server: stream from " in line and " closed (" in line)

    def close_and_wait_processed(self, s):
        """Cancels s and waits until the node has processed the end of the stream (its
        "stream from ... closed" debug line), so that a following request on another stream
        sees the result."""
        before = self.count_closed()
        s.cancel()
        if not nu.wait_until(lambda: self.count_closed() > before, POLL_TIMEOUT):
            self.fail("the node did not log the end of the stream; stderr:\n" + self.stderr())

    def assert_server_request(self, r, method):
        self.assertTrue(r.message_seq_no & BIT63,
                        "server-initiated request without bit 63: %s" % r)
        self.assertEqual(r.method, method)
        self.assertFalse(r.HasField("status"), str(r))
        return r.message_seq_no


class ClientPeerTest(SymCase):

    def test_client_peer_gets_server_request_on_its_stream_and_its_answer_completes_call_clients(
            self):
        p = self.peer("0")
        self.assertEqual(self.ids(), ([SERVER_ID], [FIRST_CLIENT_ID]))
        own = self.send_request(p, CALL_CLIENTS, PING)
        req = self.recv(p)
        seq = self.assert_server_request(req, PING)
        self.assertEqual(req.payload, b"")
        p.send(msg(seq, PING, b"py"))
        r = self.recv(p)
        self.assertEqual(r.message_seq_no, own)
        self.assertFalse(r.message_seq_no & BIT63)
        self.assertEqual(r.method, CALL_CLIENTS)
        self.assertEqual(self.ok_payload(r), b"%d=py" % FIRST_CLIENT_ID)
        # The stream goes on serving as a plain stream too.
        self.echo(p, "after")

    def test_client_peer_ids_are_given_in_connect_order_and_never_reused(self):
        streams = []
        for i in range(10):
            streams.append(self.peer("0", on_reply=answerer(b"c%d" % i)))
            cfg, clients = self.ids()
            self.assertEqual(clients, list(range(FIRST_CLIENT_ID, FIRST_CLIENT_ID + i + 1)))
            self.assertEqual(cfg, [SERVER_ID])
        # Which stream has which ID: each answers cli.Ping with its connect index.
        r = self.call(self.control(), CALL_CLIENTS, PING)
        self.assertEqual(self.ok_payload(r).decode(),
                         ",".join("%d=c%d" % (FIRST_CLIENT_ID + i, i) for i in range(10)))
        gone = FIRST_CLIENT_ID + 3
        streams[3].cancel()
        self.wait_ids(lambda cfg, clients: gone not in clients, "client %d leaves" % gone)
        self.peer("0", on_reply=answerer(b"c10"))
        expected = [i for i in range(FIRST_CLIENT_ID, FIRST_CLIENT_ID + 11) if i != gone]
        self.assertEqual(self.ids(), ([SERVER_ID], expected))
        r = self.call(self.control(), CALL_CLIENTS, PING)
        self.assertEqual(self.ok_payload(r).decode(),
                         ",".join("%d=c%d" % (i, 10 if i == FIRST_CLIENT_ID + 10
                                                  else i - FIRST_CLIENT_ID)
                                  for i in expected))

    def test_server_request_ids_have_bit63_and_increase_by_one_per_call(self):
        p = self.peer("0")
        q = self.peer("0")
        c = self.control()
        seqs = []
        for n in range(2):
            own = self.send_request(c, CALL_CLIENTS, PING)
            rp, rq = self.recv(p), self.recv(q)
            sp = self.assert_server_request(rp, PING)
            sq = self.assert_server_request(rq, PING)
            self.assertEqual(sp, sq, "a quorum call uses one ID for every node")
            p.send(msg(sp, PING, b"p"))
            q.send(msg(sq, PING, b"q"))
            r = self.reply_to(c, own)
            self.assertEqual(self.ok_payload(r), b"%d=p,%d=q" % (FIRST_CLIENT_ID,
                                                                 FIRST_CLIENT_ID + 1))
            seqs.append(sp)
        self.assertEqual(seqs[1], seqs[0] + 1, "server IDs %x, %x" % tuple(seqs))

    def test_unsolicited_bit63_reply_from_client_peer_is_dropped_and_stream_keeps_working(self):
        p = self.peer("0")
        p.send(msg(BIT63 | 0xABCDEF, PING, b"nobody asked"))
        p.send(msg(BIT63 | 1, PING, b"nor this"))  # the first server ID, never used yet
        own = self.send_request(p, ECHO, "after")
        r = self.recv(p)  # nothing (no status, no echo) comes back for the dropped messages
        self.assertEqual(r.message_seq_no, own, "got %s before the echo reply" % r)
        self.assertEqual(self.ok_payload(r), b"echo: after")
        self.assertEqual(self.ids(), ([SERVER_ID], [FIRST_CLIENT_ID]))
        # And the back-channel still works afterwards.
        own = self.send_request(self.control(), CALL_CLIENTS, PING)
        seq = self.assert_server_request(self.recv(p), PING)
        p.send(msg(seq, PING, b"fine"))
        self.assertEqual(self.ok_payload(self.reply_to(self.control(), own)),
                         b"%d=fine" % FIRST_CLIENT_ID)

    def test_silent_client_peer_makes_call_clients_fail_with_deadline_exceeded_naming_it(self):
        p = self.peer("0")
        c = self.control()
        own = self.send_request(c, CALL_CLIENTS, PING)
        self.assert_server_request(self.recv(p), PING)  # received, never answered
        r = self.reply_to(c, own, timeout=CALL_TIMEOUT_WAIT)
        self.assertEqual(r.method, CALL_CLIENTS)
        self.assertTrue(r.HasField("status"), "expected an error status, got %s" % r)
        self.assertEqual(r.status.code, grpc.StatusCode.DEADLINE_EXCEEDED.value[0],
                         str(r.status))
        self.assertIn("node %d" % FIRST_CLIENT_ID, r.status.message)
        self.echo(p, "still here")

    def test_client_peer_status_answer_makes_call_clients_fail_naming_it(self):
        p = self.peer("0")
        c = self.control()
        own = self.send_request(c, CALL_CLIENTS, PING)
        seq = self.assert_server_request(self.recv(p), PING)
        p.send(status_msg(seq, PING, 12, "no handler registered for method cli.Ping"))
        r = self.reply_to(c, own)
        self.assertEqual(r.method, CALL_CLIENTS)
        self.assertTrue(r.HasField("status"), "expected an error status, got %s" % r)
        self.assertNotEqual(r.status.code, 0, str(r.status))
        self.assertIn("node %d" % FIRST_CLIENT_ID, r.status.message)
        self.assertIn("UNIMPLEMENTED", r.status.message)
        self.assertIn("no handler registered for method cli.Ping", r.status.message)
        self.echo(p, "still here")

    def test_stream_claiming_the_servers_own_id_is_refused_permission_denied(self):
        s = self.open_stream([(NODE_ID_KEY, str(SERVER_ID))])
        s.send(msg(1, ECHO, "me"))
        try:
            code, details = s.wait_end(RECV_TIMEOUT)
        except queue.Empty:
            self.fail("the own-ID stream was not ended; stderr:\n" + self.stderr())
        self.assertEqual(code, grpc.StatusCode.PERMISSION_DENIED, details)
        self.assertIn("own ID", details or "")
        self.assertEqual(self.ids(), ([SERVER_ID], []))
        self.echo(self.control(), "still serving")


class HeaderTest(SymCase):
    known_peers = (2, KNOWN)

    def test_header_007_attaches_known_peer_7_until_its_stream_closes(self):
        self.assertEqual(self.ids(), ([SERVER_ID], []))
        s = self.peer("007")
        self.assertEqual(self.ids(), ([SERVER_ID, KNOWN], []))
        s.cancel()
        self.wait_ids(lambda cfg, clients: cfg == [SERVER_ID] and clients == [],
                      "peer 7 leaves Config")

    def test_signed_spaced_hex_and_underscored_headers_make_client_peers(self):
        # Only plain decimal counts; each of these (the key present) makes a client peer,
        # never peer 7, which is known to the node.
        for i, v in enumerate(["+7", " 7", "0x7", "7_0", "7 "]):
            s = self.peer(v)
            seen = [val for k, val in meta_pairs(self.ok_payload(self.call(s, META)).decode())
                    if k == NODE_ID_KEY]
            self.assertEqual(seen, [v], "the header on the wire")
            self.assertEqual(self.ids(),
                             ([SERVER_ID], list(range(FIRST_CLIENT_ID, FIRST_CLIENT_ID + i + 1))),
                             "header %r" % v)

    def test_repeated_header_first_value_wins(self):
        s = self.peer(["2", "0"])
        seen = [v for k, v in meta_pairs(self.ok_payload(self.call(s, META)).decode())
                if k == NODE_ID_KEY]
        self.assertEqual(seen, ["2", "0"], "grpcio did not send both values in order")
        self.assertEqual(self.ids(), ([SERVER_ID, 2], []))
        s.cancel()
        self.wait_ids(lambda cfg, clients: cfg == [SERVER_ID], "peer 2 leaves Config")
        t = self.peer(["0", "2"])
        seen = [v for k, v in meta_pairs(self.ok_payload(self.call(t, META)).decode())
                if k == NODE_ID_KEY]
        self.assertEqual(seen, ["0", "2"], "grpcio did not send both values in order")
        self.assertEqual(self.ids(), ([SERVER_ID], [FIRST_CLIENT_ID]))


class KnownPeerReplaceTest(SymCase):
    known_peers = (KNOWN,)

    def test_known_peer_reconnect_replaces_stream_fails_its_pending_call_and_keeps_config(self):
        first = self.peer(str(KNOWN), channel=self.new_channel())
        self.assertEqual(self.ids(), ([SERVER_ID, KNOWN], []))
        # A server-initiated call pending on the first stream (node 1 itself answers locally).
        c = self.control()
        own = self.send_request(c, CALL_CONFIG, ECHO)
        self.assert_server_request(self.recv(first), ECHO)  # never answered
        second = self.peer(str(KNOWN), channel=self.new_channel())
        r = self.reply_to(c, own)
        self.assertTrue(r.HasField("status"), "the call on the replaced stream did not fail: %s"
                        % r)
        self.assertNotEqual(r.status.code, 0, str(r.status))
        self.assertIn("node %d" % KNOWN, r.status.message)
        self.assertRegex(r.status.message, "replaced|closed")
        self.assertEqual(self.ids(), ([SERVER_ID, KNOWN], []))
        # Closing the first (replaced) stream changes nothing: 7 stays, on the second stream.
        self.close_and_wait_processed(first)
        self.assertEqual(self.ids(), ([SERVER_ID, KNOWN], []))
        own = self.send_request(c, CALL_CONFIG, ECHO)
        seq = self.assert_server_request(self.recv(second), ECHO)
        second.send(msg(seq, ECHO, b"second"))
        self.assertEqual(self.ok_payload(self.reply_to(c, own)), b"1=echo: ,7=second")
        # Closing the second removes 7.
        second.cancel()
        self.wait_ids(lambda cfg, clients: cfg == [SERVER_ID], "peer 7 leaves Config")


class ShutdownTest(SymCase):
    known_peers = (KNOWN,)

    def test_server_exits_zero_on_sigterm_with_peers_and_a_pending_server_call(self):
        k = self.peer(str(KNOWN))
        p = self.peer("0")
        self.assertEqual(self.ids(), ([SERVER_ID, KNOWN], [FIRST_CLIENT_ID]))
        self.send_request(self.control(), CALL_CLIENTS, PING)
        self.assert_server_request(self.recv(p), PING)  # left pending
        rc = self.server.terminate(SHUTDOWN_TIMEOUT)
        self._stopped = True
        self.assertEqual(rc, 0, "exit code %r after SIGTERM (None: not within %.0f s); "
                         "stderr:\n%s" % (rc, SHUTDOWN_TIMEOUT, self.stderr()))
        for s in (k, p, self.control()):
            try:
                s.wait_end(RECV_TIMEOUT)
            except queue.Empty:
                self.fail("a stream outlived the server")


def _watchdog():
    sys.stderr.write("test_symmetric_interop: watchdog fired after %.0f s; killing servers\n"
                     % WATCHDOG)
    for srv in list(_live_servers):
        sys.stderr.write("--- server stderr ---\n%s\n" % srv.stderr_tail())
        srv.kill()
    sys.stderr.flush()
    nu.cleanup()
    os._exit(3)


def main():
    timer = threading.Timer(WATCHDOG, _watchdog)
    timer.daemon = True
    timer.start()
    prog = unittest.main(exit=False, verbosity=2)
    timer.cancel()
    ok = prog.result.wasSuccessful()
    for test, _ in prog.result.failures + prog.result.errors:
        rc, tail = _server_logs.get(test.id(), (None, "<no server log>"))
        sys.stderr.write("--- %s: server exit code %r, stderr tail ---\n%s\n"
                         % (test.id(), rc, tail))
    sys.stderr.flush()
    nu.cleanup()
    # grpcio threads must not keep a failing run alive or turn it into success.
    os._exit(0 if ok else 1)


if __name__ == "__main__":
    main()
