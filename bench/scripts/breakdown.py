#!/usr/bin/env python3
"""Where a request's CPU goes, from a folded perf profile (inferno-collapse-perf output).

    bench/scripts/breakdown.py FOLDED CPU_US_PER_REQUEST

Each sample is charged to the phase of its deepest frame that names one (so SQLite called from
the function counts as SQLite, an index key built inside an insert as index keys). Frames of the
allocator name no phase: malloc/free is charged to whatever phase called it, and its total share is
printed on its own line. CPU µs per request (from profile.sh) turns shares into microseconds.
"""
import re
import sys

# Order does not matter: the deepest matching frame wins.
PHASES = [
    ("HTTP: hyper, sockets", r"^hyper::|hyper_util|^mio::|tokio::net::|tokio::io::|writev|sock_|tcp_|__inet|ip_|__netif|net_rx|skb|^__GI___libc_recv|readv|do_iter_readv|sys_read|read_limited|Incoming"),
    ("JSON decode (request body, args)", r"serde_json::de|parse_json|from_clean_json|from_convex_json|unwrap_args|serde_json::value::de"),
    ("validation (args, returns, schema)", r"validator::|check_args|check_returns|engine::validate|check_fields|check_document"),
    ("the function and its ctx.db calls", r"^ticket_hub_functions::|tickethub_runtime::db::|serde_bridge|invoke_(query|mutation)"),
    ("document encode/decode", r"tickethub_store::codec"),
    ("index keys", r"tickethub_value::key::|key_of|IndexInfo"),
    ("SQLite statements (B-trees)", r"^sqlite3|^rusqlite|run_cached|^btree|^balance|^pcache1Fetch|^pager(?!WalFrames)|^vdbe(?!Commit)|^walIndex|^walFind"),
    ("SQLite commit (WAL frames, page cache)", r"vdbeCommit|sqlite3VdbeHalt|pagerWalFrames|walFrames|pcache1Truncate|pager_end_transaction"),
    ("fsync (CPU part)", r"unixSync|fsync|fdatasync|ext4_sync"),
    ("response: JSON encode", r"serde_json::ser|to_clean_json|to_convex_json|FunctionResponse|api::serialize|Format::encode|json_response"),
    ("writer hand-off (queue, oneshot, wake-ups)", r"oneshot|std::sync::mpsc|mpmc|run_on_writer|Store::submit|futex|unpark|Writer::run$|Writer::gather|CommitLog|hooks"),
    ("tokio scheduling, park/wake (epoll, futex)", r"tokio::runtime::(scheduler|park|task|context)|^schedule$|__schedule|epoll|ep_poll|__x64_sys_futex"),
    ("tracing, request ids, function log", r"^tracing|tracing_subscriber|tracing_core|observe::|record_call|RequestId"),
    ("routing, auth, call set-up", r"tickethub_router::(route|api::handle|api::prepare|credentials|cors)|resolve_identity|canonicalize_path|Inner::resolve|check_client_version"),
]
PREEMPTED = "preempted (other processes on the shared cores)"
ALLOC = re.compile(r"malloc|^_int_|^__GI___libc_free|cfree|tcache|realloc|unlink_chunk|__rust_alloc|__rust_dealloc|GlobalAlloc")
COMPILED = [(name, re.compile(p)) for name, p in PHASES]


def main():
    folded, cpu_us = sys.argv[1], float(sys.argv[2])
    totals = {name: 0 for name, _ in PHASES}
    totals[PREEMPTED] = 0
    other = 0
    alloc = 0
    total = 0
    for line in open(folded):
        stack, n = line.rstrip("\n").rsplit(" ", 1)
        n = int(n)
        total += n
        frames = stack.split(";")
        if ALLOC.search(frames[-1]):
            alloc += n
        phase = None
        if frames[-1].startswith("finish_task_switch") and not any(
            f.startswith(("__x64_sys_", "__do_sys")) for f in frames
        ):
            # Switched back in after an involuntary preemption: the machine's other load.
            phase = PREEMPTED
        for frame in [] if phase else reversed(frames):
            for name, pattern in COMPILED:
                if pattern.search(frame):
                    phase = name
                    break
            if phase:
                break
        if phase:
            totals[phase] += n
        else:
            other += n
    print(f"| phase | share of server CPU | µs per request |")
    print(f"|---|--:|--:|")
    for name, n in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {100 * n / total:.1f}% | {cpu_us * n / total:.1f} |")
    print(f"| other | {100 * other / total:.1f}% | {cpu_us * other / total:.1f} |")
    print(f"| **total** | 100% | {cpu_us:.1f} |")
    print(f"| (of which malloc/free, across phases) | {100 * alloc / total:.1f}% | {cpu_us * alloc / total:.1f} |")


if __name__ == "__main__":
    main()
