#!/usr/bin/env python3
"""Summarises the callgrind profiles bench/callgrind.sh writes (not meant to be run alone).

Usage: cgstat.py DIR N1 N2 WORKLOAD...
DIR holds WORKLOAD.CONFIG.N.cg for CONFIG in none, guard and N in N1, N2 (callgrind
output files, event Ir). Every figure is a difference between the N2 and the N1 run of the
same workload and configuration divided by N2 - N1: the cost of one more transaction, with
startup (dynamic linking, _PG_init, relcache initialisation) and shutdown cancelled out.
"""
import os
import re
import sys
from collections import defaultdict

# Reading from the client socket and waiting for it: what they cost depends on timing.
WAIT = {"secure_read", "secure_raw_read", "WaitEventSetWait", "ModifyWaitEvent", "epoll_wait", "recv"}
NAME = re.compile(r"^\((\d+)\)(?: (.*))?$")


class Profile:
    """Self cost, calls and per-callee inclusive cost of every function of one profile."""

    def __init__(self, path):
        self.total = 0
        self.self_cost = defaultdict(int)  # fn -> Ir
        self.calls = defaultdict(int)  # fn -> number of calls to it
        self.call_cost = defaultdict(int)  # (caller, callee) -> inclusive Ir of those calls
        names = {"ob": {}, "fn": {}}
        ob = cob = fn = cfn = None
        pending_call = False

        def name(kind, value):
            m = NAME.match(value)
            if not m:
                return value
            if m.group(2) is not None:
                names[kind][m.group(1)] = m.group(2)
            return names[kind][m.group(1)]

        def short(obj):
            return (obj or "?").rsplit("/", 1)[-1]

        for line in open(path, encoding="utf-8", errors="replace"):
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                cost = int(line.split()[1]) if len(line.split()) > 1 else 0
                if pending_call:
                    self.call_cost[(fn, cfn)] += cost
                    pending_call = False
                    cob = ob
                else:
                    self.self_cost[fn] += cost
                continue
            key, _, value = line.partition("=")
            if key == "ob":
                ob = cob = name("ob", value)
            elif key == "fn":
                fn = (short(ob), name("fn", value))
                cob = ob
            elif key == "cob":
                cob = name("ob", value)
            elif key == "cfn":
                cfn = (short(cob), name("fn", value))
            elif key == "calls":
                self.calls[cfn] += int(value.split()[0])
                pending_call = True
            elif line.startswith("totals:") or line.startswith("summary:"):
                self.total = int(line.split()[1])
        if not self.total:
            self.total = sum(self.self_cost.values())

    def inclusive(self, f):
        return self.self_cost[f] + sum(v for (a, _), v in self.call_cost.items() if a == f)

    def called_cost(self, name):
        """Inclusive cost of all calls to the functions called `name`, from elsewhere."""
        return sum(v for (a, b), v in self.call_cost.items() if b[1] == name and a[1] != name)

    def work(self):
        """Total minus reading from the client socket (secure_read: the wait for the next
        message and the recv, whose cost depends on whether it had arrived yet)."""
        return self.total - self.called_cost("secure_read")


def per_txn(a, b, n):
    return (b - a) / n


def main():
    d, n1, n2, workloads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    n = n2 - n1
    prof = {(w, c, k): Profile(f"{d}/{w}.{c}.{k}.cg") for w in workloads for c in ("none", "guard") for k in (n1, n2)}
    guard_obj = lambda f: f[0].startswith("pg_migration_guard")

    print("Instructions (Ir) per transaction, from the difference between runs of "
          f"{n1} and {n2} transactions; reading from the client socket (secure_read, whose cost "
          "depends on whether the next message had arrived) left out:\n")
    print("| workload | none Ir/txn | guard Ir/txn | guard - none | % | in the guard's library | "
          "guard - none with socket reads |")
    print("|---|---|---|---|---|---|---|")
    for w in workloads:
        t = {c: per_txn(prof[(w, c, n1)].work(), prof[(w, c, n2)].work(), n) for c in ("none", "guard")}
        raw = {c: per_txn(prof[(w, c, n1)].total, prof[(w, c, n2)].total, n) for c in ("none", "guard")}
        a, b = prof[(w, "guard", n1)], prof[(w, "guard", n2)]
        own = sum(per_txn(a.self_cost[f], b.self_cost[f], n) for f in b.self_cost if guard_obj(f))
        print(f"| {w} | {t['none']:,.0f} | {t['guard']:,.0f} | {t['guard'] - t['none']:+,.0f} "
              f"| {(t['guard'] / t['none'] - 1) * 100:+.3f} % | {own:,.0f} | {raw['guard'] - raw['none']:+,.0f} |")

    peers = [c for c in os.environ.get("PEERS", "").split() if all(os.path.exists(f"{d}/{w}.{c}.{k}.cg") for w in workloads for k in (n1, n2))]
    if peers:
        print("\nThe peers (PEERS), the same way:\n")
        print("| workload | configuration | Ir/txn | - none | % |")
        print("|---|---|---|---|---|")
        for w in workloads:
            base = per_txn(prof[(w, "none", n1)].work(), prof[(w, "none", n2)].work(), n)
            for c in ["guard"] + peers:
                if c == "guard":
                    t = per_txn(prof[(w, c, n1)].work(), prof[(w, c, n2)].work(), n)
                else:
                    t = per_txn(Profile(f"{d}/{w}.{c}.{n1}.cg").work(), Profile(f"{d}/{w}.{c}.{n2}.cg").work(), n)
                print(f"| {w} | {c} | {t:,.0f} | {t - base:+,.0f} | {(t / base - 1) * 100:+.3f} % |")

    for w in workloads:
        a, b = prof[(w, "guard", n1)], prof[(w, "guard", n2)]
        fns = sorted({f for f in b.self_cost if guard_obj(f)} | {f for f in b.calls if guard_obj(f)},
                     key=lambda f: -per_txn(a.inclusive(f), b.inclusive(f), n))
        print(f"\n{w}: the guard's functions (self = own instructions; inclusive excludes the chained "
              "standard_ProcessUtility / previous hook):\n")
        print("| function | calls/txn | self Ir/call | inclusive Ir/call | self Ir/txn |")
        print("|---|---|---|---|---|")
        for f in fns:
            calls = per_txn(a.calls[f], b.calls[f], n)
            if calls <= 0:
                continue
            chained = sum(per_txn(a.call_cost[(f, g)], b.call_cost[(f, g)], n)
                          for g in {g for (x, g) in b.call_cost if x == f} if g[1] == "standard_ProcessUtility")
            selfc = per_txn(a.self_cost[f], b.self_cost[f], n)
            incl = per_txn(a.inclusive(f), b.inclusive(f), n) - chained
            print(f"| {f[1]} | {calls:g} | {selfc / calls:,.1f} | {incl / calls:,.1f} | {selfc:,.1f} |")

        na, nb = prof[(w, "none", n1)], prof[(w, "none", n2)]
        diffs = []
        for f in set(b.self_cost) | set(nb.self_cost):
            if f[1] in WAIT:
                continue
            dg = per_txn(a.self_cost[f], b.self_cost[f], n)
            dn = per_txn(na.self_cost[f], nb.self_cost[f], n)
            if abs(dg - dn) >= 0.5:
                diffs.append((dg - dn, dn, dg, f))
        diffs.sort(key=lambda x: -abs(x[0]))
        print(f"\n{w}: functions whose own cost per transaction differs (guard - none, |diff| >= 0.5 Ir/txn; "
              "the client socket read and wait left out):\n")
        print("| function | object | none Ir/txn | guard Ir/txn | diff |")
        print("|---|---|---|---|---|")
        for diff, dn, dg, f in diffs[:20]:
            print(f"| {f[1]} | {f[0]} | {dn:,.1f} | {dg:,.1f} | {diff:+,.1f} |")
        if len(diffs) > 20:
            rest = sum(x[0] for x in diffs[20:])
            print(f"| ({len(diffs) - 20} more) | | | | {rest:+,.1f} |")


if __name__ == "__main__":
    main()
