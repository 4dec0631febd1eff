#!/usr/bin/python3
"""Linearizability checker for a read/write register, per key (P-compositionality).

A history is a list of operations (Op, or dicts with the same fields, see Op.from_dict):

  client    who issued it (any printable id)
  op        "write" or "read"
  key       the register
  value     the value written, or the value read (None = "not found")
  invoke    invocation time (seconds, float)
  complete  completion time (None for unknown outcomes)
  outcome   "ok", "fail" or "unknown"
  final     True for the reads made after the nemesis stopped and the cluster healed (they
            are ordinary reads for linearizability; check_final_reads() reports them apart)
  node      optional: the node the operation went through (only printed)

Semantics:
  - ok: the operation took effect exactly once between invoke and complete.
  - unknown (a timed-out or failed write): it may or may not have taken effect, at any time
    after its invocation (completion = +infinity). Callers should record every write that was
    sent and did not succeed as unknown. An unknown or failed read says nothing and is dropped.
  - fail: the operation certainly did not take effect (e.g. it was never sent); dropped.
  - Written values are unique per key (the client makes them unique); None is the initial
    value ("not found"). The checker exploits uniqueness:
      * an unknown write whose value nobody read is dropped (not linearizing it is always at
        least as good), and one whose value was read must have taken effect before the first
        such read completed, so it becomes an ordinary write with that completion time;
      * plain real-time rules are checked first, because they give the clearest explanations
        (read of a value never written, read from the future, stale read, not found after a
        completed write, reads going back in time).
  - Then the full search: Wing & Gong / Lowe's just-in-time linearization (a depth-first
    search over the operations that may be linearized next: those invoked before the earliest
    completion among the operations not yet linearized), with memoisation of (set of
    linearized operations as a bitset, register value), as in Knossos and porcupine. Reads
    matching the register are linearized greedily (never wrong for a register). The history
    of a key is split where no operation is open; the possible register values at the end of
    one segment seed the next. A state budget turns a search that would take too long into
    an "unknown" result instead of a hang.

Command line: linearizability.py HISTORY.jsonl  (one JSON object per line, fields as above)
prints the report and exits 0 (linearizable), 1 (violation) or 2 (unknown).
"""

import json
import math
import sys
import time

INF = math.inf

OK, VIOLATION, UNKNOWN = "ok", "violation", "unknown"


class Op:
    __slots__ = ("client", "op", "key", "value", "invoke", "complete", "outcome", "final",
                 "node", "index")

    def __init__(self, client, op, key, value, invoke, complete, outcome="ok", final=False,
                 node=None, index=None):
        if op not in ("write", "read"):
            raise ValueError("op must be write or read, not %r" % (op,))
        if outcome not in ("ok", "fail", "unknown"):
            raise ValueError("outcome must be ok, fail or unknown, not %r" % (outcome,))
        if outcome == "ok" and complete is None:
            raise ValueError("an ok operation needs a completion time")
        self.client = client
        self.op = op
        self.key = key
        self.value = value
        self.invoke = float(invoke)
        self.complete = INF if complete is None or outcome == "unknown" else float(complete)
        self.outcome = outcome
        self.final = bool(final)
        self.node = node
        self.index = index

    @classmethod
    def from_dict(cls, d, index=None):
        return cls(d["client"], d["op"], d["key"], d.get("value"), d["invoke"],
                   d.get("complete"), d.get("outcome", "ok"), d.get("final", False),
                   d.get("node"), index if index is not None else d.get("index"))

    def to_dict(self):
        return {"client": self.client, "op": self.op, "key": self.key, "value": self.value,
                "invoke": self.invoke,
                "complete": None if self.complete == INF else self.complete,
                "outcome": self.outcome, "final": self.final, "node": self.node,
                "index": self.index}

    def describe(self):
        v = "not found" if self.value is None else repr(self.value)
        if self.op == "write":
            what = "write %s" % v
        else:
            what = "read -> %s" % v
        end = "inf" if self.complete == INF else "%.4f" % self.complete
        extra = []
        if self.outcome != "ok":
            extra.append(self.outcome)
        if self.final:
            extra.append("final read")
        if self.node is not None:
            extra.append("via node %s" % self.node)
        return "#%s client %s %s [%.4f, %s]%s" % (
            self.index, self.client, what, self.invoke, end,
            (" (" + ", ".join(extra) + ")") if extra else "")

    def __repr__(self):
        return "<Op %s>" % self.describe()


class KeyResult:
    def __init__(self, key, status, explanation="", excerpt=(), stats=None):
        self.key = key
        self.status = status
        self.explanation = explanation
        self.excerpt = list(excerpt)
        self.stats = stats or {}

    def format(self):
        lines = ["key %r: %s" % (self.key, self.status.upper())]
        if self.explanation:
            lines.append("  " + self.explanation.replace("\n", "\n  "))
        if self.excerpt:
            lines.append("  history excerpt (time-ordered):")
            for op in sorted(self.excerpt, key=lambda o: (o.invoke, o.complete)):
                lines.append("    " + op.describe())
        return "\n".join(lines)


class Result:
    """status: ok / violation / unknown; keys: {key: KeyResult}; first: the first bad key's
    KeyResult (violation before unknown) or None."""

    def __init__(self, keys):
        self.keys = keys
        bad = [r for r in keys.values() if r.status == VIOLATION]
        unk = [r for r in keys.values() if r.status == UNKNOWN]
        if bad:
            self.status, self.first = VIOLATION, bad[0]
        elif unk:
            self.status, self.first = UNKNOWN, unk[0]
        else:
            self.status, self.first = OK, None

    @property
    def ok(self):
        return self.status == OK

    def format(self):
        if self.first is None:
            return "linearizable: %d key(s) checked" % len(self.keys)
        others = [k for k, r in self.keys.items() if r.status != OK and r is not self.first]
        text = self.first.format()
        if others:
            text += "\n(also not OK: keys %s)" % ", ".join(repr(k) for k in others)
        return text


def _to_ops(history):
    ops = []
    for i, h in enumerate(history):
        if isinstance(h, Op):
            if h.index is None:
                h.index = i
            ops.append(h)
        else:
            ops.append(Op.from_dict(h, i))
    return ops


def _fmt_val(v):
    return "not found" if v is None else repr(v)


# ---- preparation ---------------------------------------------------------------------------

class _Prepared:
    """The operations of one key after dropping and tightening (see the module docstring)."""

    def __init__(self, key, ops):
        self.key = key
        self.all_ops = ops
        self.reads = [o for o in ops if o.op == "read" and o.outcome == "ok"]
        writes = [o for o in ops if o.op == "write" and o.outcome != "fail"]
        self.writes_by_value = {}
        self.duplicate = None
        for w in writes:
            if w.value is None:
                raise ValueError("key %r: write of None (None means not found)" % (key,))
            if w.value in self.writes_by_value:
                self.duplicate = (self.writes_by_value[w.value], w)
            self.writes_by_value[w.value] = w
        read_by = {}
        for r in self.reads:
            if r.value is not None:
                read_by.setdefault(r.value, []).append(r)
        self.read_by = read_by
        # Effective completion of each write: ok -> its own; unknown and read -> the earliest
        # completion of a read of its value; unknown and never read -> dropped.
        self.eff = {}
        for w in writes:
            if w.outcome == "ok":
                self.eff[w.value] = w.complete
            elif w.value in read_by:
                self.eff[w.value] = min(w.complete, min(r.complete for r in read_by[w.value]))
        self.writes = [w for w in writes if w.value in self.eff]


def _precheck(p):
    """Real-time rules that certainly mean a violation; returns (explanation, ops) or None.
    Sweeps in time order, so it stays fast on long histories."""
    if p.duplicate:
        a, b = p.duplicate
        return ("the history writes the value %r twice; values must be unique per key "
                "(a bug in the client, not the store)" % a.value, [a, b])
    for r in sorted(p.reads, key=lambda o: o.complete):
        if r.value is not None and r.value not in p.writes_by_value:
            return ("read returned %r, a value no write of this key wrote (or only a write "
                    "that certainly failed)" % r.value, [r])
        if r.value is not None:
            w = p.writes_by_value[r.value]
            if w.invoke > r.complete:
                return ("read returned %r before the write of that value was invoked (a read "
                        "from the future)" % r.value, [r, w])
    reads = sorted(p.reads, key=lambda o: o.invoke)
    # Stale reads and "not found" after a completed write: the acknowledged writes completed
    # before the read started, the one invoked last among them.
    ok_writes = sorted((w for w in p.writes if w.outcome == "ok"), key=lambda o: o.complete)
    j, latest = 0, None
    for r in reads:
        while j < len(ok_writes) and ok_writes[j].complete < r.invoke:
            if latest is None or ok_writes[j].invoke > latest.invoke:
                latest = ok_writes[j]
            j += 1
        if latest is None:
            continue
        if r.value is None:
            return ("read returned not found, but the write of %r had completed before the "
                    "read started (an acknowledged write was lost or not seen)"
                    % latest.value, [latest, r])
        w = p.writes_by_value[r.value]
        if latest is not w and latest.invoke > p.eff[w.value]:
            return ("stale read: it returned %r, but the write of %r started after that write "
                    "had completed and itself completed before the read started, so the read "
                    "must see %r or something newer" % (r.value, latest.value, latest.value),
                    [w, latest, r])
    # Reads going back in time: r1 completes before r2 starts, r2 returns an older value.
    by_complete = sorted(p.reads, key=lambda o: o.complete)
    j, best = 0, None  # best: the earlier read whose value's write was invoked last
    for r2 in reads:
        while j < len(by_complete) and by_complete[j].complete < r2.invoke:
            r1 = by_complete[j]
            if r1.value is not None and (best is None or p.writes_by_value[r1.value].invoke >
                                         p.writes_by_value[best.value].invoke):
                best = r1
            j += 1
        if best is None or best.value == r2.value:
            continue
        w1 = p.writes_by_value[best.value]
        if r2.value is None:
            return ("reads went back in time: a read returned %r and a later read (started "
                    "after it completed) returned not found" % best.value, [w1, best, r2])
        w2 = p.writes_by_value[r2.value]
        if p.eff[w2.value] < w1.invoke:
            return ("reads went back in time: a read returned %r, a later read (started after "
                    "it completed) returned %r, whose write completed before the write of %r "
                    "started" % (best.value, r2.value, best.value), [w2, w1, best, r2])
    return None


# ---- the search ----------------------------------------------------------------------------

class _Budget(Exception):
    pass


def _segments(ops):
    """Splits ops (sorted by invoke) where no operation is open."""
    segs, cur, horizon = [], [], -INF
    for o in ops:
        if cur and o.invoke > horizon:
            segs.append(cur)
            cur = []
            horizon = -INF
        cur.append(o)
        horizon = max(horizon, o.complete)
    if cur:
        segs.append(cur)
    return segs


def _search_segment(seg, comp, start_values, budget):
    """All register values possible after linearizing every op of seg, starting from any of
    start_values. comp[i]: effective completion of seg[i]. Returns (end_values, stuck) where
    stuck describes the deepest point reached when end_values is empty."""
    n = len(seg)
    full = (1 << n) - 1
    kinds = [o.op == "write" for o in seg]
    vals = [o.value for o in seg]
    inv = [o.invoke for o in seg]
    seen = set()
    ends = set()
    deepest = [(-1, 0, None)]  # (linearized count, bitset, value)

    def candidates(done):
        """Indexes that may be linearized next (invoked before the earliest completion among
        the ops not linearized yet)."""
        out = []
        min_ret = INF
        i = ((~done) & (done + 1)).bit_length() - 1  # the lowest op not linearized
        while i < n:
            if not (done >> i) & 1:
                if inv[i] > min_ret:
                    break
                out.append(i)
                if comp[i] < min_ret:
                    min_ret = comp[i]
            i += 1
        return [c for c in out if inv[c] <= min_ret]

    for v0 in start_values:
        stack = [(0, v0)]
        while stack:
            done, value = stack.pop()
            # Greedy: reads of the current value can always be linearized now.
            changed = True
            while changed:
                changed = False
                for c in candidates(done):
                    if not kinds[c] and vals[c] == value:
                        done |= 1 << c
                        changed = True
            st = (done, value)
            if st in seen:
                continue
            seen.add(st)
            budget[0] -= 1
            if budget[0] < 0:
                raise _Budget()
            if done == full:
                ends.add(value)
                continue
            cnt = bin(done).count("1")
            if cnt > deepest[0][0]:
                deepest[0] = (cnt, done, value)
            for c in candidates(done):
                if kinds[c]:
                    stack.append((done | (1 << c), vals[c]))
    stuck = None
    if not ends:
        _, done, value = deepest[0]
        pending = [i for i in range(n) if not (done >> i) & 1]
        blocker = min(pending, key=lambda i: comp[i])
        stuck = (done, value, blocker, pending)
    return ends, stuck


def check_key(key, ops, max_states=2_000_000, time_limit=None):
    """Checks one key's operations; returns a KeyResult."""
    t0 = time.monotonic()
    p = _Prepared(key, ops)
    stats = {"ops": len(ops), "reads": len(p.reads), "writes": len(p.writes)}
    pre = _precheck(p)
    if pre:
        expl, excerpt = pre
        return KeyResult(key, VIOLATION, expl, [o for o in excerpt if o is not None], stats)
    work = sorted(p.writes + p.reads, key=lambda o: (o.invoke, o.complete))
    segs = _segments([_Eff(o, p.eff.get(o.value) if o.op == "write" else o.complete)
                      for o in work])
    stats["segments"] = len(segs)
    stats["largest_segment"] = max((len(s) for s in segs), default=0)
    values = {None}
    earlier = []
    budget = [max_states]
    for si, seg in enumerate(segs):
        if time_limit is not None and time.monotonic() - t0 > time_limit:
            return KeyResult(key, UNKNOWN, "time limit of %.1f s reached at segment %d of %d"
                             % (time_limit, si + 1, len(segs)), (), stats)
        comp = [e.complete for e in seg]
        ops_seg = [e.op for e in seg]
        try:
            ends, stuck = _search_segment(ops_seg, comp, values, budget)
        except _Budget:
            return KeyResult(key, UNKNOWN, "search budget of %d states exhausted in a segment "
                             "of %d operations (too much concurrency to decide)"
                             % (max_states, len(seg)), ops_seg[:40], stats)
        if not ends:
            done, value, blocker, pending = stuck
            b = ops_seg[blocker]
            linearized = [ops_seg[i] for i in range(len(seg)) if (done >> i) & 1]
            expl = ("no linearization exists. The operations before %.4f can only leave the "
                    "register at %s; from there, the segment of %d concurrent operations that "
                    "follows cannot be ordered: the furthest attempt linearized %d of them, "
                    "leaving the register at %s, and then could not place %s"
                    % (seg[0].invoke, " or ".join(_fmt_val(v) for v in sorted(values, key=str)),
                       len(seg), len(linearized), _fmt_val(value), b.describe()))
            if b.op == "read":
                w = p.writes_by_value.get(b.value)
                expl += ("\n(the read needs the register at %s%s)"
                         % (_fmt_val(b.value),
                            "" if w is None else ", set by " + w.describe()))
            # Excerpt: the ops overlapping the blocker, the last linearized ones and its writer.
            around = [ops_seg[i] for i in pending
                      if ops_seg[i].invoke <= b.complete][:20]
            tail = sorted(linearized, key=lambda o: o.complete)[-8:]
            # ... and the end of the earlier history that fixed the starting value(s).
            before = sorted(earlier, key=lambda o: o.complete)[-10:]
            before += [p.writes_by_value[v] for v in values if v in p.writes_by_value]
            excerpt = []
            for o in before + tail + around + ([p.writes_by_value[b.value]]
                                      if b.op == "read" and b.value in p.writes_by_value
                                      else []):
                if o not in excerpt:
                    excerpt.append(o)
            return KeyResult(key, VIOLATION, expl, excerpt, stats)
        values = ends
        earlier.extend(ops_seg)
    stats["seconds"] = time.monotonic() - t0
    return KeyResult(key, OK, "", (), stats)


class _Eff:
    """An op with its effective completion (for the segment split)."""
    __slots__ = ("op", "invoke", "complete")

    def __init__(self, op, complete):
        self.op = op
        self.invoke = op.invoke
        self.complete = complete


def check(history, max_states=2_000_000, time_limit=None):
    """Checks a whole history (list of Op or dicts); returns a Result (keys in order of first
    appearance)."""
    ops = _to_ops(history)
    by_key = {}
    for o in ops:
        by_key.setdefault(o.key, []).append(o)
    results = {}
    t0 = time.monotonic()
    for k, kops in by_key.items():
        left = None if time_limit is None else max(0.1, time_limit - (time.monotonic() - t0))
        results[k] = check_key(k, kops, max_states, left)
    return Result(results)


# ---- acknowledged writes readable after healing ---------------------------------------------

def check_final_reads(history):
    """For every key with final reads (op read, final True): each ok final read must return a
    value whose write is not older than an acknowledged write, i.e. no acknowledged write
    started after the returned value's write had completed, and "not found" only if nothing
    was acknowledged. Returns a list of messages (empty: all good)."""
    ops = _to_ops(history)
    by_key = {}
    for o in ops:
        by_key.setdefault(o.key, []).append(o)
    problems = []
    for k, kops in by_key.items():
        finals = [o for o in kops if o.final and o.op == "read"]
        if not finals:
            continue
        acked = [o for o in kops if o.op == "write" and o.outcome == "ok"]
        writes = {o.value: o for o in kops if o.op == "write" and o.outcome != "fail"}
        reads = [o for o in kops if o.op == "read" and o.outcome == "ok"]
        ok_finals = [o for o in finals if o.outcome == "ok"]
        if not ok_finals:
            problems.append("key %r: no final read succeeded (%d attempted)"
                            % (k, len(finals)))
            continue
        # The newest acknowledged writes: those no other acknowledged write follows.
        last = [w for w in acked if not any(w2.invoke > w.complete for w2 in acked)]
        for r in ok_finals:
            if r.value is None:
                if acked:
                    problems.append(
                        "key %r: LOST WRITE: final read %s returned not found, but %d write(s) "
                        "were acknowledged, the last being %s"
                        % (k, "via node %s" % r.node if r.node is not None else "",
                           len(acked), "; ".join(w.describe() for w in last)))
                continue
            w = writes.get(r.value)
            if w is None:
                problems.append("key %r: final read %s returned %r, which no write wrote"
                                % (k, r.describe(), r.value))
                continue
            w_done = w.complete
            if w.outcome != "ok":
                firsts = [x.complete for x in reads if x.value == r.value]
                w_done = min([w.complete] + firsts)
            newer = [a for a in acked if a is not w and a.invoke > w_done]
            if newer:
                newest = max(newer, key=lambda a: a.complete)
                problems.append(
                    "key %r: LOST WRITE: final read %s returned %r (%s), but the acknowledged "
                    "write %s started after that write had completed; %d acknowledged "
                    "write(s) newer than the value read are missing"
                    % (k, "via node %s" % r.node if r.node is not None else "", r.value,
                       w.describe(), newest.describe(), len(newer)))
    return problems


# ---- files ---------------------------------------------------------------------------------

def save_history(path, history):
    with open(path, "w") as f:
        for o in _to_ops(history):
            f.write(json.dumps(o.to_dict()) + "\n")


def load_history(path):
    with open(path) as f:
        return [Op.from_dict(json.loads(line), i)
                for i, line in enumerate(f) if line.strip()]


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: %s HISTORY.jsonl\n" % argv[0])
        return 2
    h = load_history(argv[1])
    res = check(h)
    print(res.format())
    for m in check_final_reads(h):
        print(m)
    return {OK: 0, VIOLATION: 1, UNKNOWN: 2}[res.status]


if __name__ == "__main__":
    sys.exit(main(sys.argv))
