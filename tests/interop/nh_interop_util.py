"""Shared helpers for the interop tests (run with Debian's /usr/bin/python3).

- load_stream_pb2(): compiles sdk/proto/stream.proto (and google/rpc/status.proto) with the
  system protoc into a temporary directory and imports the generated stream_pb2.
- EchoServer: runs <build>/tests/nh_echo_server on 127.0.0.1, port 0, as a subprocess, reads
  the "listening <port>" line and stops it with SIGTERM (returns the exit code).
- SymServer: the same for <build>/tests/nh_sym_server (a node with an ID and known peers); it
  may listen on a given port (see free_port()) so that its own address can be in its peer list.
- NodeStream: one grpcio bidirectional call on /stream.Gorums/NodeStream, fed from a queue,
  with a reader thread that puts every reply (or the end of the call) on another queue, so a
  test can send without waiting and receive with a timeout.
"""

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

NODE_STREAM_PATH = "/stream.Gorums/NodeStream"

_pb_lock = threading.Lock()
_pb_module = None
_pb_tmp = None


def source_dir():
    env = os.environ.get("NH_SOURCE_DIR")
    if env:
        return env
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def binary_dir():
    env = os.environ.get("NH_BINARY_DIR")
    if env:
        return env
    raise RuntimeError("NH_BINARY_DIR is not set (run the test through ctest)")


def echo_server_path():
    return os.path.join(binary_dir(), "tests", "nh_echo_server")


def sym_server_path():
    return os.path.join(binary_dir(), "tests", "nh_sym_server")


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (the caller must cope with losing a
    race for it, e.g. by retrying)."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def distinct_free_ports(n):
    """n distinct ports that were free a moment ago (see free_port())."""
    ports = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


def load_stream_pb2():
    """Generates and imports stream_pb2 once per process; the temporary directory is removed
    at interpreter exit."""
    global _pb_module, _pb_tmp
    with _pb_lock:
        if _pb_module is not None:
            return _pb_module
        tmp = tempfile.mkdtemp(prefix="nh-interop-pb-")
        proto_dir = os.path.join(source_dir(), "sdk", "proto")
        protoc = shutil.which("protoc") or "/usr/bin/protoc"
        subprocess.run([protoc, "--python_out=" + tmp, "-I" + proto_dir, "-I/usr/include",
                        "stream.proto", "google/rpc/status.proto"], check=True, timeout=60)
        sys.path.insert(0, tmp)
        import stream_pb2  # noqa: E402  (generated above)
        _pb_module = stream_pb2
        _pb_tmp = tmp
        import atexit
        atexit.register(cleanup)
        return stream_pb2


def cleanup():
    """Removes the generated modules' directory (also run at exit; call it before os._exit)."""
    global _pb_tmp
    if _pb_tmp:
        shutil.rmtree(_pb_tmp, True)
        _pb_tmp = None


class EchoServer:
    """nh_echo_server subprocess (or another program printing "listening <port>", see
    SymServer). stderr goes to a temporary file (see stderr_tail())."""

    program = "nh_echo_server"

    def __init__(self, extra_args=(), env=None, start_timeout=15.0, listen="127.0.0.1:0"):
        path = os.path.join(binary_dir(), "tests", self.program)
        if not os.access(path, os.X_OK):
            raise RuntimeError("%s not found at %s" % (self.program, path))
        self._stderr = tempfile.TemporaryFile(prefix="nh-%s-stderr-" % self.program)
        penv = dict(os.environ)
        if env:
            penv.update(env)
        self.proc = subprocess.Popen([path] + list(extra_args) + [listen],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=penv)
        self.port = self._read_port(start_timeout)
        self.address = "127.0.0.1:%d" % self.port

    def _read_port(self, timeout):
        result = {}

        def reader():
            try:
                for raw in self.proc.stdout:
                    line = raw.decode("utf-8", "replace").strip()
                    if line.startswith("listening "):
                        result["port"] = int(line.split()[1])
                        break
            except Exception as e:  # pragma: no cover - diagnostic only
                result["error"] = e

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(timeout)
        if "port" not in result:
            self.kill()
            raise RuntimeError("%s did not print 'listening <port>' within %.0f s; "
                               "stderr:\n%s" % (self.program, timeout, self.stderr_tail()))
        return result["port"]

    def alive(self):
        return self.proc.poll() is None

    def stderr_tail(self, limit=6000):
        try:
            self._stderr.flush()
            self._stderr.seek(0)
            data = self._stderr.read().decode("utf-8", "replace")
        except Exception as e:  # pragma: no cover - diagnostic only
            return "<stderr unavailable: %s>" % e
        return data[-limit:]

    def terminate(self, timeout=10.0):
        """SIGTERM, then waits up to timeout. Returns the exit code, or None if it had to be
        killed (it did not exit in time)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass

    def close(self):
        self.kill()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._stderr.close()


class SymServer(EchoServer):
    """nh_sym_server subprocess: node_id, known peers ({id: "host:port"}), optional --dial.
    With port=None it listens on port 0; with a port number on 127.0.0.1:<port>."""

    program = "nh_sym_server"

    def __init__(self, node_id, peers=None, dial=False, port=None, env=None,
                 start_timeout=15.0):
        args = ["--id", str(node_id)]
        for pid, addr in sorted((peers or {}).items()):
            args += ["--peer", "%d=%s" % (pid, addr)]
        if dial:
            args.append("--dial")
        super().__init__(args, env=env, start_timeout=start_timeout,
                         listen="127.0.0.1:%d" % (port or 0))
        self.node_id = node_id


def _serialize(m):
    """Raw bytes go out unchanged (to send garbage); anything else is a protobuf message."""
    if isinstance(m, (bytes, bytearray)):
        return bytes(m)
    return m.SerializeToString()


class StreamEnded(Exception):
    """The call ended while a reply was expected."""

    def __init__(self, code, details):
        super().__init__("stream ended: %s %r" % (code, details))
        self.code = code
        self.details = details


_END = object()


class NodeStream:
    """One NodeStream call. send() queues a message (or raw bytes), close_send() half-closes,
    recv(timeout) returns the next stream_pb2.Message or raises StreamEnded / queue.Empty."""

    def __init__(self, channel, metadata=None, deadline=30.0, on_reply=None):
        pb = load_stream_pb2()
        self._out = queue.Queue()
        self._in = queue.Queue()
        self._on_reply = on_reply
        self.ended = threading.Event()
        self.code = None
        self.details = None
        rpc = channel.stream_stream(NODE_STREAM_PATH, request_serializer=_serialize,
                                    response_deserializer=pb.Message.FromString)
        self.call = rpc(self._requests(), metadata=metadata, timeout=deadline)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _requests(self):
        while True:
            m = self._out.get()
            if m is _END:
                return
            yield m

    def _read(self):
        try:
            for m in self.call:
                if self._on_reply is not None:
                    self._on_reply(self, m)
                self._in.put(m)
        except Exception:
            pass  # the code and details are read from the call below
        try:
            self.code = self.call.code()
            self.details = self.call.details()
        except Exception as e:  # pragma: no cover - diagnostic only
            self.details = "code unavailable: %s" % e
        self.ended.set()
        self._in.put(_END)
        self._out.put(_END)  # lets grpcio's request-consumer thread finish

    def send(self, m):
        self._out.put(m)

    def close_send(self):
        self._out.put(_END)

    def recv(self, timeout=10.0):
        try:
            m = self._in.get(timeout=timeout)
        except queue.Empty:
            raise queue.Empty("no reply within %.1f s" % timeout)
        if m is _END:
            self._in.put(_END)  # keep reporting the end
            raise StreamEnded(self.code, self.details)
        return m

    def wait_end(self, timeout=10.0):
        """Waits until the call ended; returns (code, details) or raises queue.Empty."""
        if not self.ended.wait(timeout):
            raise queue.Empty("call did not end within %.1f s" % timeout)
        return self.code, self.details

    def cancel(self):
        self._out.put(_END)
        self.call.cancel()
        self.ended.wait(5)


def make_message(pb, seq, method, payload=b"", entries=()):
    m = pb.Message()
    m.message_seq_no = seq
    m.method = method
    if isinstance(payload, str):
        payload = payload.encode()
    m.payload = payload
    for k, v in entries:
        e = m.entry.add()
        e.key = k
        e.value = v
    return m


def wait_until(pred, timeout, step=0.01):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()
