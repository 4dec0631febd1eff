#!/usr/bin/python3
"""Integration: a client that never reads its replies (issue 12), with a real nodehost process,
the real benchmark plugin and Debian's grpcio on the wire.

The node used to queue every reply of such a stream without bound (60 KB of requests took it
from 16 MB to 1.2 GB). Now each accepted stream may have limits.max_queued_reply_bytes of
replies waiting to be sent; past it the node reads no more requests from that stream (HTTP/2
flow control then stops the client's sends) until half of them went out, and a stream that
stays over the bound for limits.slow_reader_timeout_ms is ended with RESOURCE_EXHAUSTED
"the peer does not read its replies".

grpcio asks the C core for a message only when the application takes the next one from the
response iterator, so a call whose iterator is never advanced leaves the node's replies unread
once the stream's HTTP/2 window is used up (BDP probing is off so that the window stays at its
initial 64 KiB).

Themes:
  SlowReaderTest  `nodehost reload` refuses a change of either limit (restart needed);
                  a stream that never reads, offered 400 MiB of 64 KiB echo requests: the
                  client can send only a few MiB, the node's RSS stays bounded (printed),
                  another client is answered meanwhile, and after the deadline the stream ends
                  with RESOURCE_EXHAUSTED while the node keeps serving;
                  a reader that starts late gets every reply (reading resumes after draining,
                  the stream is not ended).

Run through ctest (sets NH_SOURCE_DIR and NH_BINARY_DIR), or by hand:
  NH_BINARY_DIR=<build> /usr/bin/python3 tests/interop/test_nodehost_slow_reader.py -v
"""

import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import nh_interop_util as nu  # noqa: E402
import test_nodehost_interop as ni  # noqa: E402  (processes, wires, helpers)

WATCHDOG = 240.0  # the whole file, below ctest's 300 s (normal run: about 10 s)
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
ECHO = "benchmark.Benchmark.QuorumCall"
PAYLOAD = 64 << 10                  # bytes per request and per reply
OFFERED = 400 << 20                 # what the slow client tries to send
BOUND = 4 << 20                     # limits.max_queued_reply_bytes of the test node
DEADLINE_MS = int(4000 * ni.SCALE)  # limits.slow_reader_timeout_ms of the test node
# The node's RSS while the slow stream is stalled. The unbounded node needed gigabytes; a
# sanitizer build keeps freed memory in quarantine (up to 256 MiB) and shadow memory.
RSS_LIMIT_MB = 600 if ni.SCALE > 1 else 200

NODE = """\
version: 1
node: {{ id: 1, listen: "127.0.0.1:{port}" }}
plugins:
  - name: benchmark
    path: {plugins}/benchmark.so
limits: {{ max_queued_reply_bytes: {bound}, slow_reader_timeout_ms: {deadline} }}
"""

# Client channel options: no BDP probing (the stream window stays 64 KiB) and no message size
# limit in the way.
CHANNEL_OPTIONS = [("grpc.http2.bdp_probe", 0), ("grpc.max_receive_message_length", -1)]


def setUpModule():
    ni.setUpModule()


def tearDownModule():
    ni.tearDownModule()


def rss_mb(pid):
    """The resident set size of process pid in MiB (VmRSS of /proc/PID/status)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS for pid %d" % pid)


def echo_request(seq):
    """A serialized stream.Message: a 64 KiB benchmark Echo request with message_seq_no seq."""
    body = ni.bpb.Echo(payload=b"x" * PAYLOAD).SerializeToString()
    return nu.make_message(ni.pb, seq, ECHO, body).SerializeToString()


class Offer:
    """The request iterator of a slow stream: yields up to count echo requests and counts how
    many grpcio took (it takes the next one only after the previous send completed)."""

    def __init__(self, count):
        self.count = count
        self.taken = 0
        self.stop = threading.Event()

    def __iter__(self):
        for seq in range(1, self.count + 1):
            if self.stop.is_set():
                return
            self.taken = seq
            yield echo_request(seq)
        # Keep the stream half-open (a half-close would let the node end it when done).
        self.stop.wait()


class SlowReaderTest(ni.Case):

    def start_node(self):
        d = ni.new_tmp("slow-")
        state = os.path.join(d, "state")
        os.mkdir(state, 0o700)

        def make(port):
            path = ni.write_yaml(d, "node.yaml", NODE.format(
                port=port, plugins=ni.plugin_dir(), bound=BOUND, deadline=DEADLINE_MS))
            node_env = ni.base_env(NH_STATE_DIR=state)
            make.last = (path, port, node_env)
            return ["--config", path], node_env
        node = self.start_single(make, "slow", d)
        node.dir = d
        node.yaml_path, node.port, node.env = make.last
        return node

    def test_reload_refuses_a_change_of_either_limit(self):
        node = self.start_node()
        for bound, deadline in ((2 * BOUND, DEADLINE_MS), (BOUND, DEADLINE_MS + 1000)):
            with self.subTest(bound=bound, deadline=deadline):
                ni.write_yaml(node.dir, os.path.basename(node.yaml_path), NODE.format(
                    port=node.port, plugins=ni.plugin_dir(), bound=bound, deadline=deadline))
                r = ni.run_nodehost(["reload", node.address], env=node.env)
                out = r.stdout + r.stderr
                self.assertNotEqual(r.returncode, 0, out)
                self.assertIn("limits.max_queued_reply_bytes and limits.slow_reader_timeout_ms "
                              "cannot be changed by a reload; restart the node", out)
        self.echo_ok(node.address, b"still serving")
        self.assertStopped(node)

    def open_slow(self, address, offer):
        channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.addCleanup(channel.close)
        rpc = channel.stream_stream(nu.NODE_STREAM_PATH, request_serializer=lambda b: b,
                                    response_deserializer=ni.pb.Message.FromString)
        call = rpc(iter(offer), timeout=ni.STREAM_DEADLINE)
        self.addCleanup(offer.stop.set)
        self.addCleanup(call.cancel)
        return call

    def echo_ok(self, address, text):
        r = ni.ok(self.wire(address).call(ECHO, ni.bpb.Echo(payload=text)), ni.bpb.Echo)
        self.assertEqual(r.payload, text)

    def test_a_stream_that_never_reads_is_bounded_then_ended(self):
        node = self.start_node()
        pid = node.proc.pid
        before = rss_mb(pid)
        offer = Offer(OFFERED // PAYLOAD)
        started = time.monotonic()
        call = self.open_slow(node.address, offer)

        # The client's sends stall: the node stopped reading the stream.
        last = [-1, time.monotonic()]

        def stalled():
            if offer.taken != last[0]:
                last[0], last[1] = offer.taken, time.monotonic()
            return offer.taken > BOUND // PAYLOAD and time.monotonic() - last[1] > 0.5
        self.assertTrue(nu.wait_until(stalled, ni.REPLY_TIMEOUT, 0.05),
                        "the slow stream did not stall (%d requests sent)%s"
                        % (offer.taken, self.logs()))
        sent_mb = offer.taken * PAYLOAD / float(1 << 20)
        rss = rss_mb(pid)
        print("\nslow reader: %.1f MiB of %d MiB sent before the node stopped reading; node RSS "
              "%.1f MB before, %.1f MB while stalled (limit %d MB)"
              % (sent_mb, OFFERED >> 20, before, rss, RSS_LIMIT_MB), file=sys.stderr)
        self.assertLess(offer.taken * PAYLOAD, OFFERED // 4, "the node kept reading the stream")
        self.assertLess(rss, RSS_LIMIT_MB, "node RSS %.1f MB%s" % (rss, self.logs()))
        self.assertFalse(call.done(), "the slow stream ended before its deadline")

        # Other streams are unaffected.
        self.echo_ok(node.address, b"meanwhile")

        # After the deadline the node ends the slow stream. grpcio reports the status only
        # after the replies it holds were taken, so the client reads now (no more than the
        # replies that reached it: the node dropped the rest).
        self.assertTrue(node.wait_log("ending the stream",
                                      DEADLINE_MS / 1000.0 + ni.REPLY_TIMEOUT), self.logs())
        elapsed = time.monotonic() - started
        self.assertGreaterEqual(elapsed, DEADLINE_MS / 1000.0)
        replies = 0
        with self.assertRaises(grpc.RpcError):
            for _ in call:
                replies += 1
        self.assertEqual(call.code(), RESOURCE_EXHAUSTED, self.logs())
        self.assertEqual(call.details(), "the peer does not read its replies")
        self.assertLess(replies * PAYLOAD, BOUND)
        print("slow reader: stream ended after %.1f s with %s %r (%d replies had reached the "
              "client); node RSS %.1f MB" % (elapsed, call.code(), call.details(), replies,
                                             rss_mb(pid)), file=sys.stderr)

        self.echo_ok(node.address, b"after")
        self.assertTrue(node.alive(), self.logs())
        self.assertStopped(node)

    def test_a_late_reader_gets_every_reply_and_its_stream_stays(self):
        node = self.start_node()
        count = 8 * BOUND // PAYLOAD  # eight times the bound
        offer = Offer(count)
        call = self.open_slow(node.address, offer)
        # Nobody reads for a while: the sends stall below the offer.
        self.assertTrue(nu.wait_until(lambda: offer.taken > BOUND // PAYLOAD, ni.REPLY_TIMEOUT),
                        self.logs())
        time.sleep(0.5)
        self.assertLess(offer.taken, count, "the node read everything without reading replies")
        # Now read: the node resumes reading as its backlog drains, and answers every request.
        got = []
        for m in call:
            self.assertEqual(ni.status_of(m)[0], ni.OK, m)
            self.assertEqual(len(ni.bpb.Echo.FromString(m.payload).payload), PAYLOAD)
            got.append(m.message_seq_no)
            if len(got) == count:
                break
        self.assertEqual(got, list(range(1, count + 1)))
        self.assertFalse(call.done(), "the stream was ended")
        self.assertNotIn("the peer does not read its replies", node.log())
        self.assertStopped(node)


# ---- main --------------------------------------------------------------------------------------

def main():
    ni.run_main("test_nodehost_slow_reader", WATCHDOG)


if __name__ == "__main__":
    main()
