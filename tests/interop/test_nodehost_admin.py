#!/usr/bin/python3
"""Integration: the admin service of a `nodehost` process (nodehost.Admin.Status and Reload)
through the command line (`nodehost status`, `nodehost reload`) and on the wire with Debian's
grpcio (raw Gorums `stream.Message` envelopes on /stream.Gorums/NodeStream, the responses
decoded with host/proto/nodehost/admin.proto compiled by the system protoc at test time).

Uses the processes, wires and helpers of test_nodehost_interop.py. Nothing here depends on how
a reload works inside beyond "it works": a reload with nothing changed succeeds, a plugin file
whose content changed gets a new generation, a plugin file that cannot be loaded makes the
reload fail with a reason while the old generation keeps serving, SIGHUP reloads too.

Themes:
  AdminCommandLineTest  `nodehost reload` usage errors (exit 2), --help, an unreachable address
                        (exit 1 with the reason).
  AdminNodeTest         a single node serving a copy of tests/plugins/good_echo.so: the status
                        fields (reload counters, sha256, old generations) in JSON and text;
                        `nodehost reload` (text and --json); nodehost.Admin.Reload over grpcio;
                        a changed plugin file; a failed reload; SIGHUP.

Run through ctest (sets NH_SOURCE_DIR and NH_BINARY_DIR), or by hand:
  NH_BINARY_DIR=<build> /usr/bin/python3 tests/interop/test_nodehost_admin.py -v
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nh_interop_util as nu  # noqa: E402
import test_nodehost_interop as ni  # noqa: E402  (processes, wires, helpers)

RELOAD_METHOD = "nodehost.Admin.Reload"
STATUS_METHOD = "nodehost.Admin.Status"
WATCHDOG = 240.0  # the whole file, below ctest's 300 s (normal run: a few seconds)
RELOAD_TIMEOUT_MS = int(20000 * ni.SCALE)  # `nodehost reload --timeout-ms`, below RUN_TIMEOUT

apb = None  # nodehost/admin_pb2


def setUpModule():
    global apb
    ni.setUpModule()
    protoc = shutil.which("protoc") or "/usr/bin/protoc"
    subprocess.run([protoc, "--python_out=" + ni._pb_dir,
                    "-I" + os.path.join(nu.source_dir(), "host", "proto"),
                    "nodehost/admin.proto"], check=True, timeout=60)
    from nodehost import admin_pb2  # generated above, in ni._pb_dir (on sys.path)
    apb = admin_pb2


def tearDownModule():
    ni.tearDownModule()


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def replace_file(path, data):
    """Writes data to path through a rename, as a deployment would."""
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


# ---- 1. the command line without a node ------------------------------------------------------

class AdminCommandLineTest(ni.Case):

    def test_reload_usage_errors_exit_2(self):
        cases = [
            (["reload"], "nodehost reload: missing ADDRESS"),
            (["reload", "127.0.0.1:1", "--bogus"], "nodehost reload: unexpected argument"),
            (["reload", "127.0.0.1:1", "127.0.0.1:2"], "unexpected argument '127.0.0.1:2'"),
            (["reload", "127.0.0.1:1", "--timeout-ms", "0"], "--timeout-ms must be"),
            (["reload", "127.0.0.1:1", "--timeout-ms", "600001"], "--timeout-ms must be"),
            (["reload", "127.0.0.1:1", "--timeout-ms", "x"], "--timeout-ms must be"),
            (["reload", "127.0.0.1:1", "--timeout-ms"], "unexpected argument '--timeout-ms'"),
        ]
        for args, text in cases:
            with self.subTest(args=args):
                r = ni.run_nodehost(args)
                self.assertEqual(r.returncode, 2, "%s / %s" % (r.stdout, r.stderr))
                self.assertIn(text, r.stderr)
                self.assertEqual(r.stdout, "")

    def test_help_mentions_reload_and_sighup(self):
        for args in (["--help"], ["reload", "--help"], ["status", "-h"]):
            with self.subTest(args=args):
                r = ni.run_nodehost(args)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("reload ADDRESS", r.stdout)
                self.assertIn("status ADDRESS", r.stdout)
                self.assertIn("SIGHUP reloads", r.stdout)

    def test_reload_unreachable_address_exits_1_with_the_reason(self):
        port = nu.free_port()  # nobody listens there
        address = "127.0.0.1:%d" % port
        for extra in ([], ["--json"]):
            with self.subTest(extra=extra):
                r = ni.run_nodehost(["reload", address, "--timeout-ms", "300"] + extra)
                self.assertEqual(r.returncode, 1, r.stdout)
                self.assertTrue(r.stderr.startswith("nodehost reload: %s: " % address),
                                r.stderr)
                self.assertGreater(len(r.stderr.strip()), len("nodehost reload: %s:" % address))
                self.assertEqual(r.stdout, "")


# ---- 2. a node ---------------------------------------------------------------------------------

ECHO_NODE = """\
version: 1
node: {{ id: 1, listen: "127.0.0.1:{port}" }}
plugins:
  - name: echo
    path: {path}
"""


class AdminNodeTest(ni.Case):
    """One node per test, serving a copy of good_echo.so that the test may change."""

    def setUp(self):
        self.dir = ni.new_tmp("admin-")
        self.state = os.path.join(self.dir, "state")
        os.mkdir(self.state, 0o700)
        self.plugin = os.path.join(self.dir, "echo.so")
        shutil.copy(ni.tplugin("good_echo"), self.plugin)
        with open(self.plugin, "rb") as f:
            self.original = f.read()

        def make(port):
            path = ni.write_yaml(self.dir, "node.yaml",
                                 ECHO_NODE.format(port=port, path=self.plugin))
            return ["--config", path], ni.base_env(NH_STATE_DIR=self.state)
        self.node = self.start_single(make, "admin", self.dir)
        self.address = self.node.address

    # -- helpers --

    def echo_works(self, w):
        req = ni.tpb.EchoMsg(text="still here", n=3)
        self.assertEqual(ni.ok(w.call("plugtest.Echo.Echo", req), ni.tpb.EchoMsg), req)

    def reload_cli(self, *extra):
        return ni.run_nodehost(["reload", self.address, "--timeout-ms", str(RELOAD_TIMEOUT_MS)]
                               + list(extra))

    def status_json(self):
        r = ni.run_nodehost(["status", self.address, "--json"])
        self.assertEqual(r.returncode, 0, r.stderr + self.logs())
        return json.loads(r.stdout)

    def change_plugin(self):
        """The same plugin with other bytes (trailing data after the ELF content)."""
        replace_file(self.plugin, self.original + b"\0changed\0" * 8)
        return sha256_of(self.plugin)

    # -- tests --

    def test_status_has_reload_counters_sha256_and_old_generations(self):
        # Needs the plugin host's sha256 (the other fields only need the admin service).
        st = self.status_json()
        for key in ("reloads", "reload_failures", "last_reload_error", "last_reload_took_ns"):
            self.assertIn(key, st)
        self.assertEqual((st["reloads"], st["reload_failures"], st["last_reload_error"],
                          st["last_reload_took_ns"]), (0, 0, "", 0))
        self.assertEqual(len(st["plugins"]), 1, st)
        p = st["plugins"][0]
        self.assertEqual((p["name"], p["version"], p["generation"]), ("echo", "1.0.0", 1))
        self.assertEqual((p["old_generations"], p["old_calls"]), (0, 0))
        self.assertEqual(p["sha256"], sha256_of(self.plugin))
        # Text: the sha256 prefix, no old-generations line, the reload line.
        r = ni.run_nodehost(["status", self.address])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("echo 1.0.0, generation 1, sha256 %s, loaded " % p["sha256"][:16],
                      r.stdout)
        self.assertNotIn("old generations", r.stdout)
        self.assertRegex(r.stdout, r"(?m)^reloads: 0 \(0 failed\)$")
        # The same over the wire.
        m = self.wire(self.address).call(STATUS_METHOD, apb.StatusRequest())
        sr = ni.ok(m, apb.StatusResponse)
        self.assertEqual((sr.reloads, sr.reload_failures), (0, 0))
        self.assertEqual(sr.plugins[0].sha256, p["sha256"])

    def test_reload_with_nothing_changed_succeeds(self):
        # Needs the reloader wired in node_run.c.
        r = self.reload_cli()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + self.logs())
        self.assertRegex(r.stdout, r"^reload 1: 0 plugin\(s\) changed in \d+\.\d ms")
        self.assertIn("\nplugins:\n  echo 1.0.0, generation 1, ", r.stdout)
        self.assertIn("    plugtest.Echo.Echo\n", r.stdout)
        r = self.reload_cli("--json")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + self.logs())
        out = json.loads(r.stdout)
        self.assertEqual((out["reload"], out["changed"]), (2, 0), out)
        self.assertGreater(out["took_ns"], 0)
        self.assertEqual([(p["name"], p["generation"]) for p in out["plugins"]], [("echo", 1)])
        st = self.status_json()
        self.assertEqual((st["reloads"], st["reload_failures"], st["last_reload_error"]),
                         (2, 0, ""))
        self.assertGreater(st["last_reload_took_ns"], 0)
        self.assertEqual(st["plugins"][0]["generation"], 1)
        r = ni.run_nodehost(["status", self.address])
        self.assertRegex(r.stdout, r"(?m)^reloads: 2 \(0 failed\), last took \d+\.\d ms$")
        self.echo_works(self.wire(self.address))

    def test_reload_over_grpcio_switches_a_changed_plugin(self):
        # Needs the reloader wired in node_run.c (and a reload noticing changed file content).
        w = self.wire(self.address)
        # nodehost.ReloadRequest has no fields: zero bytes on the wire.
        self.assertEqual(apb.ReloadRequest().SerializeToString(), b"")
        m = w.call(RELOAD_METHOD, b"", timeout=RELOAD_TIMEOUT_MS / 1000.0)
        r = ni.ok(m, apb.ReloadResponse)
        self.assertEqual((r.reload, r.changed), (1, 0), r)
        self.assertEqual([(p.name, p.generation) for p in r.plugins], [("echo", 1)])
        digest = self.change_plugin()
        m = w.call(RELOAD_METHOD, b"", timeout=RELOAD_TIMEOUT_MS / 1000.0)
        r = ni.ok(m, apb.ReloadResponse)
        self.assertEqual((r.reload, r.changed), (2, 1), r)
        self.assertIn("echo", r.summary)
        self.assertGreater(r.took_ns, 0)
        self.assertEqual(len(r.plugins), 1, r)
        self.assertEqual((r.plugins[0].name, r.plugins[0].generation, r.plugins[0].sha256),
                         ("echo", 2, digest))
        self.assertEqual(sorted(r.plugins[0].methods), ["plugtest.Echo.Echo", "plugtest.Echo.Fail"])
        # The same stream and a new one both reach the new generation.
        self.echo_works(w)
        self.echo_works(self.wire(self.address))
        st = self.status_json()
        self.assertEqual((st["reloads"], st["plugins"][0]["generation"],
                          st["plugins"][0]["sha256"]), (2, 2, digest))

    def test_failed_reload_reports_the_reason_and_the_old_generation_keeps_serving(self):
        # Needs the reloader wired in node_run.c.
        w = self.wire(self.address)
        self.echo_works(w)
        replace_file(self.plugin, b"\x7fELF not really" + bytes(range(256)) * 8)
        r = self.reload_cli()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr + self.logs())
        prefix = "nodehost reload: %s: " % self.address
        self.assertTrue(r.stderr.startswith(prefix), r.stderr)
        reason = r.stderr[len(prefix):].strip()
        self.assertIn("echo", reason)  # names the plugin
        self.assertEqual(r.stdout, "")
        # Over the wire: an error status with the reason (no code 0, no empty text).
        m = w.call(RELOAD_METHOD, b"", timeout=RELOAD_TIMEOUT_MS / 1000.0)
        code, text = ni.status_of(m)
        self.assertNotEqual(code, ni.OK, m)
        self.assertIn("echo", text)
        self.echo_works(w)
        st = self.status_json()
        self.assertEqual((st["reloads"], st["reload_failures"]), (2, 2), st)
        self.assertIn("echo", st["last_reload_error"])
        self.assertEqual(st["plugins"][0]["generation"], 1)
        r = ni.run_nodehost(["status", self.address])
        self.assertRegex(r.stdout, r"(?m)^reloads: 2 \(2 failed\), last took \d+\.\d ms, "
                                   r"last error: .*echo")
        # Fixed: the next reload succeeds and clears the error.
        replace_file(self.plugin, self.original)
        r = self.reload_cli("--json")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + self.logs())
        self.assertEqual(json.loads(r.stdout)["reload"], 3)
        st = self.status_json()
        self.assertEqual((st["reloads"], st["reload_failures"], st["last_reload_error"]),
                         (3, 2, ""))
        self.echo_works(w)
        self.assertStopped(self.node)

    def test_sighup_reloads(self):
        # Needs SIGHUP wired to the reloader in node_run.c.
        self.node.send_signal(signal.SIGHUP)
        st = self.wait_status(self.address, lambda s: s.get("reloads", 0) >= 1,
                              "a reload after SIGHUP")
        self.assertEqual(st["reload_failures"], 0, st)
        self.assertTrue(self.node.alive())
        self.echo_works(self.wire(self.address))
        self.assertStopped(self.node)


# ---- main --------------------------------------------------------------------------------------

def main():
    ni.run_main("test_nodehost_admin", WATCHDOG)


if __name__ == "__main__":
    main()
