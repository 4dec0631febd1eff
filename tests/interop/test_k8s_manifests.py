#!/usr/bin/python3
"""The Kubernetes manifests (deploy/k8s/nodehost.yaml): valid, and what the pods would run.

1. The pods' command line, locally: the ConfigMap's cluster.yaml is extracted to a temporary
   file and the StatefulSet's container command (`nodehost --config /etc/nodehost/cluster.yaml
   --id-from-hostname`, read from the manifest; only the --config path is replaced, and the
   binary is this build's) runs with --check-config and HOSTNAME=nodehost-<ordinal>, as in a
   pod: nodehost-1 must pick node 2 (and nodehost-0 node 1, nodehost-2 node 3); nodehost-3, a
   pod beyond the peer list (a StatefulSet scaled without the file), must be refused. Needs only
   the build.
2. Schema validation: every document is checked against the Kubernetes schemas with the npm
   package kubernetes-models (tests/k8s/validate.js: `new StatefulSet(obj).validate()`, ...),
   installed with `npm ci` from tests/k8s/package-lock.json into <build>/k8s-manifest-check
   (reused while the lock file is unchanged), and the test checks the fields the deployment
   depends on (headless Service publishing not-ready addresses, 3 replicas in parallel, probes
   on /healthz and /readyz, the security context, the PodDisruptionBudget, the peers' names
   matching the StatefulSet and Service). kubernetes-models does not reject unknown fields,
   hence these explicit checks. Without node and npm, or without the npm registry, this part is
   skipped with a "SKIP:" line (part 1 still runs).

  NH_BINARY_DIR=build /usr/bin/python3 tests/interop/test_k8s_manifests.py
Exit status 0 passed (part 2 possibly skipped), 1 failed.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("NH_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
MANIFEST = os.path.join(SOURCE, "deploy", "k8s", "nodehost.yaml")
CHECKER = os.path.join(SOURCE, "tests", "k8s")
T0 = time.monotonic()


def log(msg):
    sys.stdout.write("[%6.2f] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


def binary_dir():
    b = os.environ.get("NH_BINARY_DIR")
    if not b:
        raise SystemExit("FAIL: NH_BINARY_DIR is not set (run through ctest)")
    return os.path.abspath(b)


# ---- reading the manifest without a YAML library (part 1 must not need one) -----------------

def block_scalar(text, key):
    """The literal block scalar `key: |` (clip chomping) of text, dedented."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)%s:\s*\|\s*$" % re.escape(key), line)
        if not m:
            continue
        indent = len(m.group(1))
        body = []
        for nxt in lines[i + 1:]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip(" ")) <= indent:
                break
            body.append(nxt)
        while body and not body[-1].strip():
            body.pop()
        width = min(len(b) - len(b.lstrip(" ")) for b in body if b.strip())
        return "\n".join(b[width:] for b in body) + "\n"
    raise AssertionError("no `%s: |` block in %s" % (key, MANIFEST))


def container_command(text):
    """The container's `command: [...]` (written as a JSON-compatible flow sequence)."""
    m = re.search(r"^\s*command:\s*(\[.*\])\s*$", text, re.M)
    assert m, "no `command: [...]` line in %s" % MANIFEST
    return json.loads(m.group(1))


# ---- part 1 ------------------------------------------------------------------------------------

def check_pod_command(tmp, text):
    cluster = os.path.join(tmp, "cluster.yaml")
    with open(cluster, "w") as f:
        f.write(block_scalar(text, "cluster.yaml"))
    cmd = container_command(text)
    assert cmd[:1] == ["nodehost"] and "--id-from-hostname" in cmd and "--config" in cmd, cmd
    assert cmd[cmd.index("--config") + 1] == "/etc/nodehost/cluster.yaml", cmd
    local = [os.path.join(binary_dir(), "host", "nodehost")] + cmd[1:]
    local[local.index("--config") + 1] = cluster
    local.append("--check-config")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NH_") or k in ("NH_BINARY_DIR", "NH_SOURCE_DIR")}
    env.update(NH_PLUGIN_DIR=os.path.join(binary_dir(), "plugins"),
               NH_STATE_DIR=os.path.join(tmp, "state"), NH_DATA_DIR=os.path.join(tmp, "data"))
    for ordinal, want in ((1, 2), (0, 1), (2, 3)):
        env["HOSTNAME"] = "nodehost-%d" % ordinal
        r = subprocess.run(local, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "(node %d," % want in r.stdout, (
            "HOSTNAME=nodehost-%d: exit %d\n%s%s" % (ordinal, r.returncode, r.stdout, r.stderr))
        log("HOSTNAME=nodehost-%d: %s" % (ordinal, r.stdout.strip()))
    env["HOSTNAME"] = "nodehost-3"
    r = subprocess.run(local, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "--id 4: node 4 is not among the peers" in r.stderr and (
        "host name 'nodehost-3'" in r.stderr), "nodehost-3: exit %d\n%s" % (r.returncode,
                                                                            r.stderr)
    log("HOSTNAME=nodehost-3: refused (%s)" % r.stderr.strip().splitlines()[0])


# ---- part 2 ------------------------------------------------------------------------------------

def install_checker():
    """node_modules for tests/k8s/validate.js in <build>/k8s-manifest-check; returns that
    directory, or None with a SKIP line printed."""
    node, npm = shutil.which("node") or shutil.which("nodejs"), shutil.which("npm")
    if not node or not npm:
        print("SKIP: schema validation of deploy/k8s needs node and npm (Debian: nodejs npm)")
        return None, None
    work = os.path.join(binary_dir(), "k8s-manifest-check")
    os.makedirs(work, exist_ok=True)
    lock = os.path.join(CHECKER, "package-lock.json")
    stamp = os.path.join(work, "node_modules", ".nh-lock")
    with open(lock, "rb") as f:
        want = f.read()
    try:
        with open(stamp, "rb") as f:
            fresh = f.read() == want
    except OSError:
        fresh = False
    if not fresh:
        for name in ("package.json", "package-lock.json"):
            shutil.copy(os.path.join(CHECKER, name), os.path.join(work, name))
        t0 = time.monotonic()
        try:
            r = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                               cwd=work, capture_output=True, text=True, timeout=240)
        except subprocess.TimeoutExpired:
            r = None
        if r is None or r.returncode != 0:
            lines = [] if r is None else [ln for ln in r.stderr.splitlines() if ln.strip()
                                          and "complete log" not in ln and "_logs" not in ln]
            why = "timed out" if r is None else " / ".join(lines[:2]) or "exit %d" % r.returncode
            print("SKIP: schema validation of deploy/k8s: `npm ci` of kubernetes-models "
                  "failed (is the npm registry reachable?): %s" % why)
            return None, None
        with open(stamp, "wb") as f:
            f.write(want)
        log("npm ci: kubernetes-models installed in %.1f s" % (time.monotonic() - t0))
    return node, work


def run_checker(node, work, *args):
    env = dict(os.environ, NODE_PATH=os.path.join(work, "node_modules"))
    return subprocess.run([node, os.path.join(CHECKER, "validate.js")] + list(args), env=env,
                          capture_output=True, text=True, timeout=60)


def check_fields(docs, text):
    by_kind = {d["kind"]: d for d in docs}
    assert sorted(by_kind) == ["ConfigMap", "PodDisruptionBudget", "Service", "StatefulSet"], (
        sorted(by_kind))
    cm, svc = by_kind["ConfigMap"], by_kind["Service"]
    sts, pdb = by_kind["StatefulSet"], by_kind["PodDisruptionBudget"]
    # The reader of part 1 and js-yaml agree on the cluster file.
    assert cm["data"]["cluster.yaml"] == block_scalar(text, "cluster.yaml")

    s = svc["spec"]
    assert s["clusterIP"] == "None" and s["publishNotReadyAddresses"] is True, s
    assert {p["port"] for p in s["ports"]} == {7001, 9101}, s["ports"]

    spec = sts["spec"]
    assert spec["serviceName"] == svc["metadata"]["name"] == "nodehost", spec["serviceName"]
    assert spec["replicas"] == 3 and spec["podManagementPolicy"] == "Parallel", spec
    labels = spec["selector"]["matchLabels"]
    assert s["selector"] == labels == pdb["spec"]["selector"]["matchLabels"], labels
    tpl = spec["template"]
    assert all(tpl["metadata"]["labels"].get(k) == v for k, v in labels.items())
    ann = tpl["metadata"]["annotations"]
    assert ann == {"prometheus.io/scrape": "true", "prometheus.io/port": "9101",
                   "prometheus.io/path": "/metrics"}, ann
    pod = tpl["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True, pod["securityContext"]
    (c,) = pod["containers"]
    assert c["command"] == ["nodehost", "--config", "/etc/nodehost/cluster.yaml",
                            "--id-from-hostname"], c["command"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"gorums": 7001, "metrics": 9101}, ports
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["resources"]["requests"] and c["resources"]["limits"], c["resources"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["runAsNonRoot"] is True, sc
    env = {e["name"]: e for e in c["env"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    state = env["NH_STATE_DIR"]["value"]
    assert state.startswith(mounts["run"] + "/"), (state, mounts)  # writable, made 0700
    assert env["NH_DATA_DIR"]["value"] == mounts["data"], (env["NH_DATA_DIR"], mounts)
    assert env["NH_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert mounts["config"] == "/etc/nodehost", mounts
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["config"]["configMap"]["name"] == cm["metadata"]["name"], vols["config"]
    assert "emptyDir" in vols["run"], vols["run"]
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data", claim

    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": labels}}, pdb

    # The peers are the StatefulSet's pods by their stable names, IDs 1..replicas.
    peers = re.findall(r'\{ id: (\d+), address: "([^"]+)" \}', cm["data"]["cluster.yaml"])
    assert [int(i) for i, _ in peers] == list(range(1, spec["replicas"] + 1)), peers
    for i, addr in peers:
        want = "%s-%d.%s.${NH_NAMESPACE:-default}.svc.cluster.local:7001" % (
            sts["metadata"]["name"], int(i) - 1, svc["metadata"]["name"])
        assert addr == want, (addr, want)
    for key in ('metrics: { listen: "0.0.0.0:9101" }',
                'admin: { allow_plaintext_from: [ "10.0.0.0/8" ] }'):
        assert key in cm["data"]["cluster.yaml"], key


def main():
    with open(MANIFEST) as f:
        text = f.read()
    tmp = tempfile.mkdtemp(prefix="nh-k8s-")
    try:
        check_pod_command(tmp, text)
        log("part 1 passed: the pods' command line picks its node from the host name")
        node, work = install_checker()
        if node:
            r = run_checker(node, work, MANIFEST)
            sys.stdout.write(r.stdout)
            assert r.returncode == 0, "schema validation failed:\n%s%s" % (r.stdout, r.stderr)
            r = run_checker(node, work, "--dump", MANIFEST)
            assert r.returncode == 0, r.stderr
            check_fields(json.loads(r.stdout), text)
            log("part 2 passed: the manifests match the Kubernetes schemas and the fields "
                "the deployment relies on")
    except AssertionError as e:
        log("FAIL: %s" % e)
        return 1
    finally:
        shutil.rmtree(tmp, True)
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
