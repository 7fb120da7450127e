#!/usr/bin/env python3
"""Row 3 cross-check: a DDL migration's wall time in several configurations, interleaved
statement chunk by statement chunk instead of run by run.

    bench/interleave.py DDL_FILE CONFIG... [--chunk 100] [--rounds 4]

CONFIG is NAME=PORT[/DATABASE][|PGOPTIONS], for example
    none=55441  guard=55442  pgaudit=55443  off=55442|-c pg_migration_guard.mode=off
(the first CONFIG is the base of the ratios). DDL_FILE is bench/run.sh's migration
($BENCH_DIR/ddl.sql): every `bench_ddl.` in it becomes `bench_NAME.`, so configurations
that share a database work in schemas of their own, recreated (then VACUUM, CHECKPOINT)
before each round.

Each configuration keeps one psql session for the whole round; the migration is sent in
chunks of --chunk statements, each chunk to every configuration in a fresh random order,
timed from sending it to psql printing the marker after it. Within a chunk the
configurations run a few hundred milliseconds apart, so a slow phase of a shared machine
(bench/run.sh sees its rounds move by +-20 %) lands on all of them alike. Prints, per round,
each configuration's total and its ratio to the base, then the ratio of the sums.

What it does not separate: the guard's audit writer inserts the records of earlier chunks
while later chunks of any configuration run, so its work (60-70 ms per 3000 records, on
the other core when one is free) is spread over all configurations instead of charged to
the guard's; bench/run.sh, which runs the configurations one after another, charges it.
"""
import argparse
import os
import random
import subprocess
import time


def psql_args(target):
    port, _, db = target.partition('/')
    return ['psql', '-X', '-q', '-h', os.environ.get('PGHOST', '/tmp'), '-p', port, '-U', 'postgres', '-d', db or 'postgres']


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('ddl_file')
    ap.add_argument('configs', nargs='+', metavar='NAME=PORT[/DB][|PGOPTIONS]')
    ap.add_argument('--chunk', type=int, default=100)
    ap.add_argument('--rounds', type=int, default=4)
    a = ap.parse_args()
    configs = {}
    for c in a.configs:
        name, _, rest = c.partition('=')
        target, _, options = rest.partition('|')
        if not name or not target:
            ap.error(f'bad CONFIG {c!r}')
        configs[name] = (target, options)
    base = next(iter(configs))
    statements = [l for l in open(a.ddl_file) if l.strip() and 'bench_ddl.' in l]
    totals = {n: 0.0 for n in configs}
    for r in range(1, a.rounds + 1):
        for target in {t for t, _ in configs.values()}:
            resets = []
            for n, (t, _) in configs.items():
                if t == target:
                    resets += ['-c', f'DROP SCHEMA IF EXISTS bench_{n} CASCADE', '-c', f'CREATE SCHEMA bench_{n}']
            subprocess.run(psql_args(target) + ['-c', 'SET client_min_messages = warning'] + resets + ['-c', 'VACUUM', '-c', 'CHECKPOINT'], check=True)
        time.sleep(3)  # the guard's audit writer inserts the previous round's records
        sessions = {
            n: subprocess.Popen(psql_args(t) + ['-v', 'ON_ERROR_STOP=1'], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                env=dict(os.environ, PGOPTIONS=o))
            for n, (t, o) in configs.items()
        }

        def send(n, sql):
            p = sessions[n]
            start = time.perf_counter()
            p.stdin.write(sql + '\\echo chunk-done\n')
            p.stdin.flush()
            line = p.stdout.readline()
            if line.strip() != 'chunk-done':
                raise SystemExit(f'{n}: psql stopped ({line.strip() or "no output"}); see its error above')
            return time.perf_counter() - start

        for n in configs:
            send(n, 'SET client_min_messages = warning;\n')
        spent = {n: 0.0 for n in configs}
        order = list(configs)
        for i in range(0, len(statements), a.chunk):
            chunk = ''.join(statements[i:i + a.chunk])
            random.shuffle(order)
            for n in order:
                spent[n] += send(n, chunk.replace('bench_ddl.', f'bench_{n}.'))
        for p in sessions.values():
            p.stdin.close()
            p.wait()
        for n in configs:
            totals[n] += spent[n]
        print(f'round {r}: ' + ', '.join(f'{n} {spent[n] * 1000:.0f} ms' for n in configs) + '; '
              + ', '.join(f'{n}/{base} {spent[n] / spent[base]:.3f}' for n in configs if n != base), flush=True)
    print('all rounds: ' + ', '.join(f'{n}/{base} {totals[n] / totals[base]:.3f}' for n in configs if n != base))


if __name__ == '__main__':
    main()
