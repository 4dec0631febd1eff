#!/usr/bin/python3
"""The systemd notification protocol of `nodehost` (Type=notify; ctest: install.sd_notify).

The test plays systemd's part: it binds a Unix datagram socket with SO_PASSCRED, starts a real
`nodehost` (one node, the hello plugin) with NOTIFY_SOCKET pointing at it, and reads what the
node sends (sd_notify(3): one datagram of KEY=VALUE lines per notification).

Tests:
  test_ready_reload_stop  READY=1 (with a STATUS= naming the node) once the node serves, before
                    that nothing; SIGHUP: RELOADING=1 with MONOTONIC_USEC= (CLOCK_MONOTONIC,
                    between the signal and the answer) then READY=1 "reloaded"; a reload that
                    fails (node.listen changed in the file): RELOADING=1 then READY=1 with
                    "reload failed" and the reason; `nodehost reload ADDRESS` (admin service):
                    the same pair; SIGTERM: STOPPING=1, nothing after it, exit 0. Every
                    datagram comes from the node's main PID (systemd's NotifyAccess=main
                    drops the others), reloads included (they run on another thread).
  test_unreachable_socket  NOTIFY_SOCKET names a socket nobody listens on: the node serves and
                    stops (exit 0) all the same; the lost notification is a debug line.
  test_no_socket   without NOTIFY_SOCKET the node runs and stops as always.

Run through ctest (sets NH_BINARY_DIR), or by hand:
  NH_BINARY_DIR=<build> /usr/bin/python3 tests/install/test_sd_notify.py -v
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True

BUILD = os.path.abspath(os.environ.get("NH_BINARY_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"))
NODEHOST = os.path.join(BUILD, "host", "nodehost")
HELLO = os.path.join(BUILD, "plugins", "hello.so")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_config(path, port, listen_port=None):
    with open(path, "w") as f:
        f.write(f"""version: 1
node: {{ id: 1, listen: "127.0.0.1:{listen_port or port}" }}
plugins:
  - name: hello
    path: {HELLO}
    config: {{ greeting: Hi }}
log: {{ level: debug }}
""")


class Notifications:
    """The receiving end of NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(path)

    def close(self):
        self.sock.close()

    def next(self, timeout):
        """The next notification as (dict, sender pid), or None after timeout seconds."""
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            return None
        pid = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _, _ = struct.unpack("iII", payload[:12])
        fields = {}
        for line in data.decode().split("\n"):
            if line:
                k, _, v = line.partition("=")
                fields[k] = v
        return fields, pid


class SdNotifyTest(unittest.TestCase):
    def setUp(self):
        if not os.access(NODEHOST, os.X_OK) or not os.path.exists(HELLO):
            self.fail(f"{NODEHOST} or {HELLO} missing: build the project first")
        self.tmp = tempfile.mkdtemp(prefix="nh-sd-notify.")
        self.state = os.path.join(self.tmp, "state")
        os.mkdir(self.state, 0o700)
        self.proc = None
        self.log = None

    def tearDown(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.log:
            self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def node_log(self):
        with open(os.path.join(self.tmp, "node.log")) as f:
            return f.read()

    def start(self, cfg, notify_socket):
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        if notify_socket is not None:
            env["NOTIFY_SOCKET"] = notify_socket
        self.log = open(os.path.join(self.tmp, "node.log"), "w")
        self.proc = subprocess.Popen(
            [NODEHOST, "--config", cfg, "--state-dir", self.state],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_serving(self):
        deadline = time.monotonic() + 20
        while "serving on" not in self.node_log():
            self.assertIsNone(self.proc.poll(), "nodehost exited:\n" + self.node_log())
            self.assertLess(time.monotonic(), deadline, "not serving:\n" + self.node_log())
            time.sleep(0.05)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=20)
        self.assertEqual(rc, 0, self.node_log())
        self.assertIn("node 1 stopped", self.node_log())

    def expect(self, n, key, what):
        got = None
        for _ in range(40):
            got = n.next(0.5)
            if got is not None or self.proc.poll() is not None:
                break
        if got is None:
            got = n.next(0.2)  # sent just before the process ended
        self.assertIsNotNone(got, f"no notification ({what}):\n" + self.node_log())
        fields, pid = got
        self.assertEqual(fields.get(key), "1", f"{what}: expected {key}=1, got {fields}")
        self.assertEqual(pid, self.proc.pid, f"{what}: sent by pid {pid}, not the main pid")
        self.assertIn("STATUS", fields, f"{what}: no STATUS= in {fields}")
        print(f"   {what}: {fields}", file=sys.stderr)
        return fields

    def expect_reload(self, n, what, trigger, ok):
        before = int(time.monotonic() * 1e6)
        trigger()
        fields = self.expect(n, "RELOADING", what)
        after = int(time.monotonic() * 1e6)
        usec = int(fields.get("MONOTONIC_USEC", "0"))
        self.assertTrue(before <= usec <= after,
                        f"{what}: MONOTONIC_USEC={usec} not within [{before}, {after}]")
        fields = self.expect(n, "READY", what + " done")
        if ok:
            self.assertIn("reloaded", fields["STATUS"])
        else:
            self.assertIn("reload failed", fields["STATUS"])
        return fields

    def test_ready_reload_stop(self):
        port = free_port()
        cfg = os.path.join(self.tmp, "node.yaml")
        write_config(cfg, port)
        n = Notifications(os.path.join(self.tmp, "notify"))
        try:
            self.start(cfg, n.path)
            fields = self.expect(n, "READY", "start")
            self.assertIn("serving on", self.node_log(), "READY=1 before the node serves")
            self.assertIn(f"node 1 serving on 127.0.0.1:{port}", fields["STATUS"])

            self.expect_reload(n, "SIGHUP reload", lambda: self.proc.send_signal(signal.SIGHUP),
                               True)

            write_config(cfg, port, listen_port=free_port())
            fields = self.expect_reload(n, "failed reload",
                                        lambda: self.proc.send_signal(signal.SIGHUP), False)
            self.assertIn("node.listen changed", fields["STATUS"])
            write_config(cfg, port)

            def admin_reload():
                r = subprocess.run([NODEHOST, "reload", f"127.0.0.1:{port}"],
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

            self.expect_reload(n, "nodehost reload", admin_reload, True)

            self.proc.send_signal(signal.SIGTERM)
            fields = self.expect(n, "STOPPING", "SIGTERM")
            self.assertIn("draining", fields["STATUS"])
            self.assertEqual(self.proc.wait(timeout=20), 0, self.node_log())
            self.assertIsNone(n.next(0.2), "a notification after STOPPING=1")
        finally:
            n.close()

    def test_unreachable_socket(self):
        cfg = os.path.join(self.tmp, "node.yaml")
        write_config(cfg, free_port())
        self.start(cfg, os.path.join(self.tmp, "nobody-listens"))
        self.wait_serving()
        self.stop()
        # Said at debug level only (the test runs the node with log.level debug).
        self.assertIn("sd_notify(READY=1)", self.node_log())

    def test_no_socket(self):
        cfg = os.path.join(self.tmp, "node.yaml")
        write_config(cfg, free_port())
        self.start(cfg, None)
        self.wait_serving()
        self.stop()


if __name__ == "__main__":
    unittest.main()
