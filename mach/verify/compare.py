#!/usr/bin/env python3
"""compare.py GDB_LOG SERIAL_LOG: checks the tapset's expressions (as
evaluated by tapset_gdb.py at each probed kernel function) against the
workload's own truth lines. Prints one line per check; exit 1 on a mismatch."""
import re
import sys


def kv(line):
    return dict(re.findall(r"(\w+)=(\S+)", line))


def main():
    taps = [l.rstrip("\n") for l in open(sys.argv[1], errors="replace") if l.startswith("tap ")]
    truth = [l.strip().replace("\r", "") for l in open(sys.argv[2], errors="replace")]
    truth = [l for l in truth if l.startswith("truth ")]
    fails = 0

    def check(ok, what):
        nonlocal fails
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            fails += 1

    def taps_of(alias):
        return [kv(t) for t in taps if t.split()[1] == alias]

    wl = lambda d: d.get("task_name", "").endswith("workload")
    traps = taps_of("mach.msg.trap")
    sends = taps_of("mach.ipc.send")
    recvs = taps_of("mach.ipc.receive")
    n = 0
    for t in (kv(l) for l in truth if l.startswith("truth msg ")):
        n += 1
        i, s = t["id"], t["send_size"]
        check(any(x["id"] == i and x["send_size"] == s and x["option"] == "3" and wl(x) for x in traps),
              f"mach.msg.trap id={i} send_size={s} option=3 task_name()=*workload")
        check(any(x["id"] == i and x["size"] == s for x in sends), f"mach.ipc.send id={i} size={s}")
        check(any(x["id"] == i and x["size"] == s for x in recvs), f"mach.ipc.receive id={i} size={s}")
    check(n > 0, f"{n} truth msg lines seen")

    vret = taps_of("mach.vm.allocate.return")
    vdel = taps_of("mach.vm.deallocate")
    for t in (kv(l) for l in truth if l.startswith("truth vm_allocate ")):
        check(any(x["size"] == t["size"] and x["addr"] == t["addr"] and x["kr"] == "0" and wl(x) for x in vret),
              f"mach.vm.allocate.return size={t['size']} addr={t['addr']}")
    for t in (kv(l) for l in truth if l.startswith("truth vm_deallocate ")):
        check(any(x["size"] == t["size"] and x["addr"] == t["addr"] for x in vdel),
              f"mach.vm.deallocate size={t['size']} addr={t['addr']}")

    # The same results read from the MIG replies at ipc_kmsg_put (mach.ipc.put),
    # which works without return-time reads of out-parameters.
    puts = taps_of("mach.ipc.put")
    for t in (kv(l) for l in truth if l.startswith("truth vm_allocate ")):
        check(any(x["id"] == "2121" and x["reply_retcode"] == "0" and x["reply_value"] == t["addr"] for x in puts),
              f"mach.ipc.put id=2121 (vm_allocate reply) reply_value={t['addr']}")
    for t in (kv(l) for l in truth if l.startswith("truth port_allocate ")):
        check(any(x["id"] == "3304" and x["reply_retcode"] == "0" and x["reply_value"] == t["name"] for x in puts),
              f"mach.ipc.put id=3304 (mach_port_allocate reply) reply_value={t['name']}")
    for t in (kv(l) for l in truth if l.startswith("truth thread_create ")):
        check(any(x["id"] == "2161" and x["reply_retcode"] == "0" and x["reply_value"] == t["thread"] for x in puts),
              f"mach.ipc.put id=2161 (thread_create reply) reply_value={t['thread']}")

    pret = taps_of("mach.port.allocate.return")
    rights = {"receive": "1", "dead_name": "4"}
    for t in (kv(l) for l in truth if l.startswith("truth port_allocate ")):
        check(any(x["right"] == rights[t["right"]] and x["name"] == t["name"] for x in pret),
              f"mach.port.allocate.return right={rights[t['right']]} name={t['name']}")
    for kind in ("deallocate", "destroy"):
        got = taps_of("mach.port." + kind)
        for t in (kv(l) for l in truth if l.startswith(f"truth port_{kind} ") or (kind == "destroy" and l.startswith("truth thread_port_destroy "))):
            check(any(x["name"] == t["name"] for x in got), f"mach.port.{kind} name={t['name']}")
    for t in (kv(l) for l in truth if l.startswith("truth stack_allocate ")):
        check(any(x["size"] == t["size"] and x["addr"] == t["addr"] and x["kr"] == "0" for x in vret),
              f"mach.vm.allocate.return (thread stack) size={t['size']} addr={t['addr']}")
    for t in (kv(l) for l in truth if l.startswith("truth stack_deallocate ")):
        check(any(x["size"] == t["size"] and x["addr"] == t["addr"] for x in vdel),
              f"mach.vm.deallocate (thread stack) size={t['size']} addr={t['addr']}")

    created = [x for x in taps_of("mach.thread.create.return") if x["parent_task"].endswith("workload") and x["kr"] == "0"]
    # The bootstrap creates the workload's first thread too; the rest are the workload's own.
    own = created[1:]
    ncreate = sum(1 for l in truth if l.startswith("truth thread_create "))
    check(len(own) == ncreate, f"mach.thread.create.return: {len(own)} threads created by the workload, truth says {ncreate}")
    states = taps_of("mach.thread.set_state")
    resumes = taps_of("mach.thread.resume")
    for k, t in enumerate(kv(l) for l in truth if l.startswith("truth thread_set_state ")):
        new = own[k]["new_thread"] if k < len(own) else "?"
        check(any(x["thread"] == new and x["flavor"] == "1" and x["count"] == "17" and x["eip"] == t["eip"] and x["uesp"] == t["esp"] for x in states),
              f"mach.thread.set_state thread={new} eip={t['eip']} uesp={t['esp']}")
        check(any(x["thread"] == new for x in resumes), f"mach.thread.resume thread={new}")
    for k, t in enumerate(kv(l) for l in truth if l.startswith("truth thread_msg ")):
        new = own[k]["new_thread"] if k < len(own) else "?"
        check(any(x["id"] == t["id"] and x["option"] == "1" and x["thread_id"] == new for x in traps),
              f"mach.msg.trap id={t['id']} option=1 from thread_id()={new} (the created thread)")
    sw = taps_of("mach.sched.switch")
    for k in range(len(own)):
        new = own[k]["new_thread"]
        check(any(x["new_thread"] == new and x["new_task"].endswith("workload") for x in sw),
              f"mach.sched.switch to the created thread {new} (thread_invoke new_thread, its task name)")
    nsw = sum(1 for l in truth if l == "truth thread_switch")
    check(len(taps_of("mach.thread.switch")) >= nsw > 0, f"mach.thread.switch hits >= {nsw}")

    printed = [t.split(" ", 2)[2] for t in taps if t.startswith("tap mach.print truth ")]
    check(printed == truth[: len(printed)] and len(printed) == len(truth),
          f"mach.print: {len(printed)} strings read by the probe equal the {len(truth)} truth lines on the console")
    print(f"{fails} failures")
    return 1 if fails else 0


sys.exit(main())
