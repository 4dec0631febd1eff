#!/usr/bin/python3
"""Interop: grpcio (Debian's python3-grpcio) as an independent client of nh_echo_server.

Every test talks to a real nh_echo_server process over /stream.Gorums/NodeStream with
stream.Message envelopes (or raw bytes, to send garbage). Each test class starts its own server
(port 0) and stops it with SIGTERM in tearDownClass, which must end with exit code 0 within 10 s.

Run through ctest (sets NH_SOURCE_DIR and NH_BINARY_DIR), or by hand:
  NH_BINARY_DIR=<build> /usr/bin/python3 tests/interop/test_grpcio_interop.py -v
NH_LOG=debug in the environment is passed on to the server; its stderr is printed when a test
fails.
"""

import os
import queue
import socket
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import nh_interop_util as nu  # noqa: E402

ECHO = "test.Echo.Echo"
FAIL = "test.Echo.Fail"
SLOW = "test.Echo.Slow"
SLOW_RELEASE = "test.Echo.SlowRelease"
HOLD = "test.Echo.Hold"
ORDER = "test.Echo.Order"
META = "test.Echo.Meta"

RECV_TIMEOUT = 10.0      # seconds to wait for any single reply
STREAM_DEADLINE = 30.0   # gRPC deadline of every call: nothing outlives it
SHUTDOWN_TIMEOUT = 10.0  # SIGTERM -> exit
WATCHDOG = 150.0         # the whole file, hard limit (normal run: well under 60 s)

pb = None
_server_logs = []        # (class name, exit code, stderr tail), for the failure report
_live_servers = []


def setUpModule():
    global pb
    pb = nu.load_stream_pb2()


def msg(seq, method, payload=b"", entries=()):
    return nu.make_message(pb, seq, method, payload, entries)


class EchoServerCase(unittest.TestCase):
    """One nh_echo_server per class, with one grpcio channel to it."""

    server_args = ()

    @classmethod
    def setUpClass(cls):
        cls.server = nu.EchoServer(cls.server_args)
        _live_servers.append(cls.server)
        cls.channel = grpc.insecure_channel(cls.server.address)
        grpc.channel_ready_future(cls.channel).result(timeout=10)
        cls._extra_channels = []

    @classmethod
    def tearDownClass(cls):
        for ch in cls._extra_channels + [cls.channel]:
            ch.close()
        rc = cls.server.terminate(SHUTDOWN_TIMEOUT)
        tail = cls.server.stderr_tail()
        _server_logs.append((cls.__name__, rc, tail))
        cls.server.close()
        _live_servers.remove(cls.server)
        if rc != 0:
            raise AssertionError("%s: nh_echo_server did not exit 0 within %.0f s of SIGTERM "
                                 "(exit code %r); stderr:\n%s"
                                 % (cls.__name__, SHUTDOWN_TIMEOUT, rc, tail))

    def setUp(self):
        self.assertTrue(self.server.alive(),
                        "server died before this test; stderr:\n" + self.server.stderr_tail())
        self._streams = []

    def tearDown(self):
        for s in self._streams:
            if not s.ended.is_set():
                s.cancel()
        self.assertTrue(self.server.alive(),
                        "server died during this test; stderr:\n" + self.server.stderr_tail())

    # -- helpers ---------------------------------------------------------------------------

    def open_stream(self, channel=None, metadata=None, on_reply=None):
        s = nu.NodeStream(channel or self.channel, metadata=metadata, deadline=STREAM_DEADLINE,
                          on_reply=on_reply)
        self._streams.append(s)
        return s

    def new_channel(self):
        ch = grpc.insecure_channel(self.server.address)
        self._extra_channels.append(ch)
        grpc.channel_ready_future(ch).result(timeout=10)
        return ch

    def recv(self, s, timeout=RECV_TIMEOUT):
        try:
            return s.recv(timeout)
        except queue.Empty as e:
            self.fail("%s; server stderr:\n%s" % (e, self.server.stderr_tail()))
        except nu.StreamEnded as e:
            self.fail("%s; server stderr:\n%s" % (e, self.server.stderr_tail()))

    def assert_echo_reply(self, reply, seq, text):
        self.assertEqual(reply.message_seq_no, seq)
        self.assertEqual(reply.method, ECHO)
        self.assertFalse(reply.HasField("status"), "unexpected status %s" % reply.status)
        self.assertEqual(reply.payload, b"echo: " + text.encode())
        self.assertEqual(len(reply.entry), 0, "responses never carry entries")

    def echo_works(self, channel=None, seq=1, text="ping"):
        """Opens a new stream, does one echo, half-closes, and expects status OK."""
        s = self.open_stream(channel)
        s.send(msg(seq, ECHO, text))
        self.assert_echo_reply(self.recv(s), seq, text)
        s.close_send()
        code, details = self.wait_end(s)
        self.assertEqual(code, grpc.StatusCode.OK, details)

    def raw_tcp_closed_by_server(self, payload):
        """Writes payload on a plain TCP connection; True once the server closed it."""
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=5)
        try:
            try:
                sock.sendall(payload)
            except (BrokenPipeError, ConnectionResetError):
                return True
            deadline = time.monotonic() + RECV_TIMEOUT
            sock.settimeout(0.5)
            while time.monotonic() < deadline:
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    continue
                except (ConnectionResetError, BrokenPipeError):
                    return True
                if not data:
                    return True
            return False
        finally:
            sock.close()

    def wait_end(self, s, timeout=RECV_TIMEOUT):
        try:
            return s.wait_end(timeout)
        except queue.Empty as e:
            self.fail("%s; server stderr:\n%s" % (e, self.server.stderr_tail()))


class EnvelopeTest(EchoServerCase):
    """Request/response envelopes, statuses, metadata and stream-level behaviour."""

    def test_rpc_round_trip_echo_keeps_seq_and_method(self):
        s = self.open_stream()
        for seq in range(1, 21):
            text = "p%d" % seq
            s.send(msg(seq, ECHO, text))
            self.assert_echo_reply(self.recv(s), seq, text)
        # Empty payload is legal: the reply is just the prefix.
        s.send(msg(21, ECHO, b""))
        self.assert_echo_reply(self.recv(s), 21, "")

    def test_pipelined_order_requests_come_back_in_order(self):
        s = self.open_stream()
        n = 200
        for seq in range(1, n + 1):
            s.send(msg(seq, ORDER, str(seq)))
        for seq in range(1, n + 1):
            r = self.recv(s)
            self.assertEqual(r.message_seq_no, seq)
            self.assertEqual(r.method, ORDER)
            self.assertFalse(r.HasField("status"), str(r.status))
            self.assertEqual(r.payload, str(seq).encode())

    def test_unknown_method_two_way_gets_unimplemented_status(self):
        s = self.open_stream()
        s.send(msg(77, "x.Y.Z", b"whatever"))
        r = self.recv(s)
        self.assertEqual(r.message_seq_no, 77)
        self.assertEqual(r.method, "x.Y.Z")
        self.assertTrue(r.HasField("status"))
        self.assertEqual(r.status.code, 12)
        self.assertEqual(r.status.message, "no handler registered for method x.Y.Z")
        self.assertEqual(r.payload, b"")
        # The stream goes on.
        s.send(msg(78, ECHO, "after"))
        self.assert_echo_reply(self.recv(s), 78, "after")

    def test_handler_error_status_not_found(self):
        s = self.open_stream()
        s.send(msg(5, FAIL, "thing"))
        r = self.recv(s)
        self.assertEqual(r.message_seq_no, 5)
        self.assertEqual(r.method, FAIL)
        self.assertTrue(r.HasField("status"))
        self.assertEqual(r.status.code, 5)
        self.assertEqual(r.status.message, "not found: thing")
        self.assertEqual(r.payload, b"")

    def test_stream_metadata_then_message_entries_in_order(self):
        s = self.open_stream(metadata=[("gorums-node-id", "3"), ("x-k", "v")])
        s.send(msg(1, META, b"", entries=[("a", "1"), ("a", "2")]))
        r = self.recv(s)
        self.assertEqual(r.message_seq_no, 1)
        self.assertFalse(r.HasField("status"), str(r.status))
        text = r.payload.decode()
        pairs = []
        for item in text.split(";"):
            if item:
                k, _, v = item.partition("=")
                pairs.append((k, v))
        relevant = [(k, v) for k, v in pairs if k in ("gorums-node-id", "x-k", "a")]
        self.assertEqual(relevant,
                         [("gorums-node-id", "3"), ("x-k", "v"), ("a", "1"), ("a", "2")],
                         "handler metadata was %r" % text)
        # Entries belong to one message only: the next request without entries sees none.
        s.send(msg(2, META))
        text2 = self.recv(s).payload.decode()
        keys2 = [item.partition("=")[0] for item in text2.split(";") if item]
        self.assertNotIn("a", keys2, text2)
        self.assertIn("x-k", keys2, text2)

    def test_bit63_seq_from_untracked_client_is_dispatched_as_request(self):
        s = self.open_stream()  # no gorums-node-id: a regular, untracked client
        seq = 0x8000000000000005
        s.send(msg(seq, ECHO, "high"))
        self.assert_echo_reply(self.recv(s), seq, "high")

    def test_undecodable_message_gets_status_and_stream_keeps_working(self):
        garbage = [b"\x0a\x05", b"\xff\xff\xff"]
        for g in garbage:  # sanity: the independent parser rejects them too
            with self.assertRaises(Exception):
                pb.Message.FromString(g)
        s = self.open_stream()
        seq = 1
        for g in garbage:
            s.send(g)
            r = self.recv(s)
            self.assertEqual(r.message_seq_no, 0, str(r))
            self.assertTrue(r.HasField("status"), str(r))
            self.assertNotEqual(r.status.code, 0, str(r))
            s.send(msg(seq, ECHO, "still here %d" % seq))
            self.assert_echo_reply(self.recv(s), seq, "still here %d" % seq)
            seq += 1

    def test_unknown_grpc_path_is_unimplemented(self):
        ident = lambda b: b  # noqa: E731
        unary = self.channel.unary_unary("/foo.Bar/Baz", request_serializer=ident,
                                         response_deserializer=ident)
        with self.assertRaises(grpc.RpcError) as cm:
            unary(b"", timeout=RECV_TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED,
                         cm.exception.details())
        bidi = self.channel.stream_stream("/foo.Bar/Baz", request_serializer=ident,
                                          response_deserializer=ident)
        call = bidi(iter([b"\x08\x01"]), timeout=RECV_TIMEOUT)
        with self.assertRaises(grpc.RpcError) as cm:
            list(call)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED,
                         cm.exception.details())
        self.echo_works()

    def test_half_close_after_three_echoes_gets_replies_and_ok(self):
        s = self.open_stream()
        for seq in (1, 2, 3):
            s.send(msg(seq, ECHO, "h%d" % seq))
        s.close_send()
        for seq in (1, 2, 3):
            self.assert_echo_reply(self.recv(s), seq, "h%d" % seq)
        code, details = self.wait_end(s)
        self.assertEqual(code, grpc.StatusCode.OK, details)
        with self.assertRaises(nu.StreamEnded):
            s.recv(1.0)


class CompressionTest(EchoServerCase):
    """A client that compresses its messages (gzip): the server inflates them (it runs gRPC's
    minimal filter stack with decompression asked for explicitly)."""

    def test_gzip_compressed_requests_are_inflated(self):
        ch = grpc.insecure_channel(self.server.address, compression=grpc.Compression.Gzip)
        self._extra_channels.append(ch)
        grpc.channel_ready_future(ch).result(timeout=10)
        text = "a" * 20000  # compresses well: sent compressed (gRPC sends tiny ones plain)
        s = self.open_stream(ch)
        for seq in (1, 2):
            s.send(msg(seq, ECHO, text))
            self.assert_echo_reply(self.recv(s), seq, text)
        s.close_send()
        code, details = self.wait_end(s)
        self.assertEqual(code, grpc.StatusCode.OK, details)


class AbuseTest(EchoServerCase):
    """Oversized frames and non-gRPC bytes on the port (default message limits)."""

    def test_oversized_request_resource_exhausted_and_new_stream_works(self):
        s = self.open_stream()
        s.send(msg(1, ECHO, "before"))
        self.assert_echo_reply(self.recv(s), 1, "before")
        s.send(msg(2, ECHO, b"z" * (5 * 1024 * 1024)))
        code, details = self.wait_end(s)
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED, details)
        self.echo_works()
        self.echo_works(self.new_channel())

    def test_raw_tcp_garbage_connection_closed_and_grpc_still_works(self):
        import random
        rnd = random.Random(1234)
        junk = bytes(rnd.randrange(256) for _ in range(4096))
        if junk.startswith(b"PRI"):
            junk = b"\x00" + junk
        self.assertTrue(self.raw_tcp_closed_by_server(junk),
                        "server kept a connection open after random bytes; stderr:\n"
                        + self.server.stderr_tail())
        self.assertTrue(self.raw_tcp_closed_by_server(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                        "server kept a connection open after an HTTP/1.1 request")
        self.echo_works()
        self.echo_works(self.new_channel())


class OrderingTest(EchoServerCase):
    """Per-stream order and Release; only arrival order is compared, never durations."""

    def test_slow_without_release_holds_next_request_on_same_stream(self):
        s = self.open_stream()
        s.send(msg(1, SLOW, "300"))
        s.send(msg(2, ECHO, "x"))
        first, second = self.recv(s), self.recv(s)
        self.assertEqual((first.message_seq_no, second.message_seq_no), (1, 2),
                         "echo overtook an unreleased slow handler")
        self.assertEqual(first.payload, b"slept 300")
        self.assertEqual(first.method, SLOW)
        self.assert_echo_reply(second, 2, "x")

    def test_slow_release_lets_next_request_overtake(self):
        s = self.open_stream()
        s.send(msg(1, SLOW_RELEASE, "500"))
        s.send(msg(2, ECHO, "x"))
        first, second = self.recv(s), self.recv(s)
        self.assertEqual((first.message_seq_no, second.message_seq_no), (2, 1),
                         "echo did not overtake a released slow handler")
        self.assert_echo_reply(first, 2, "x")
        self.assertEqual(second.payload, b"slept 500")
        self.assertEqual(second.method, SLOW_RELEASE)

    def test_slow_on_one_stream_does_not_delay_another_stream(self):
        arrivals = []
        lock = threading.Lock()

        def tagger(name):
            def on_reply(_s, m):
                with lock:
                    arrivals.append((name, m.message_seq_no))
            return on_reply

        a = self.open_stream(on_reply=tagger("A"))
        b = self.open_stream(on_reply=tagger("B"))
        # Both streams are up (and served) before the test proper.
        a.send(msg(1, ECHO, "warm"))
        b.send(msg(1, ECHO, "warm"))
        self.assert_echo_reply(self.recv(a), 1, "warm")
        self.assert_echo_reply(self.recv(b), 1, "warm")
        a.send(msg(2, SLOW, "1000"))
        a.send(msg(3, ECHO, "after slow"))
        b.send(msg(2, ECHO, "b"))
        self.assert_echo_reply(self.recv(b), 2, "b")
        ra = self.recv(a)
        self.assertEqual(ra.message_seq_no, 2)
        self.assertEqual(ra.payload, b"slept 1000")
        self.assert_echo_reply(self.recv(a), 3, "after slow")
        with lock:
            order = [x for x in arrivals if x[1] != 1]
        self.assertEqual(order, [("B", 2), ("A", 2), ("A", 3)],
                         "a slow handler on stream A delayed stream B")


class SurvivalTest(EchoServerCase):
    """Everything at once on one server, then a clean SIGTERM exit."""

    def test_server_survives_abuse_and_exits_zero_on_sigterm(self):
        # Garbage envelopes, unknown methods and errors on one stream.
        s = self.open_stream(metadata=[("x-k", "v")])
        s.send(b"\xff\xff\xff")
        s.send(msg(1, "x.Y.Z"))
        s.send(msg(2, FAIL, "f"))
        s.send(msg(0x8000000000000001, ECHO, "hi"))
        got = [self.recv(s) for _ in range(4)]
        self.assertEqual([r.message_seq_no for r in got], [0, 1, 2, 0x8000000000000001])
        # An oversized frame on another stream.
        big = self.open_stream()
        big.send(msg(1, ECHO, b"z" * (5 * 1024 * 1024)))
        self.assertEqual(self.wait_end(big)[0], grpc.StatusCode.RESOURCE_EXHAUSTED)
        # Raw TCP garbage.
        self.raw_tcp_closed_by_server(os.urandom(1024).replace(b"P", b"Q"))
        # Streams cancelled with work outstanding: a held call and a slow, unreleased one.
        held = self.open_stream()
        held.send(msg(1, HOLD))
        held.send(msg(2, ECHO, "h"))
        self.assert_echo_reply(self.recv(held), 2, "h")
        slow = self.open_stream()
        slow.send(msg(1, SLOW, "200"))
        slow.send(msg(2, ECHO, "queued"))
        held.cancel()
        slow.cancel()
        # A client that vanishes without closing anything.
        lost = grpc.insecure_channel(self.server.address)
        ls = nu.NodeStream(lost, deadline=STREAM_DEADLINE)
        ls.send(msg(1, HOLD))
        ls.send(msg(2, ECHO, "bye"))
        self.assertEqual(ls.recv(RECV_TIMEOUT).message_seq_no, 2)
        lost.close()
        # Still serving, on the old stream and on new ones.
        s.send(msg(3, ECHO, "ok"))
        self.assert_echo_reply(self.recv(s), 3, "ok")
        self.echo_works()
        self.echo_works(self.new_channel())
        time.sleep(0.3)  # let the cancelled slow handler finish into a dead stream
        self.assertTrue(self.server.alive(), self.server.stderr_tail())
        # SIGTERM with a stream still open: exit code 0 within the limit.
        rc = self.server.terminate(SHUTDOWN_TIMEOUT)
        self.assertEqual(rc, 0, "exit code %r after SIGTERM (None: not within %.0f s); "
                         "stderr:\n%s" % (rc, SHUTDOWN_TIMEOUT, self.server.stderr_tail()))
        self.assertTrue(s.wait_end(RECV_TIMEOUT)[0] is not None)

    def tearDown(self):
        for s in self._streams:
            if not s.ended.is_set():
                s.cancel()
        # The server was stopped on purpose by the test.


def _watchdog():
    sys.stderr.write("test_grpcio_interop: watchdog fired after %.0f s; killing servers\n"
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
    if not ok:
        for name, rc, tail in _server_logs:
            sys.stderr.write("--- %s: server exit code %r, stderr tail ---\n%s\n"
                             % (name, rc, tail))
    sys.stderr.flush()
    nu.cleanup()
    # grpcio threads must not keep a failing run alive or turn it into success.
    os._exit(0 if ok else 1)


if __name__ == "__main__":
    main()
