#!/usr/bin/env python3
"""e2e_compare.py SNAPTAP_OUTPUT: checks the output of tapset/examples/e2e.stp
(run by e2e.sh) against the workload's truth lines, which the same output
carries as "console truth ..." lines read by the mach.print probe."""
import re
import sys


def kv(line):
    return dict(re.findall(r"(\w+)=(\S+)", line))


lines = [l.rstrip("\n") for l in open(sys.argv[1], errors="replace")]
truth = [l[len("console "):] for l in lines if l.startswith("console truth ")]
taps = [l.split(" ", 2) for l in lines if l.startswith("tap ")]
fails = 0


def check(ok, what):
    global fails
    print(("ok    " if ok else "FAIL  ") + what)
    fails += 0 if ok else 1


def of(kind):
    return [kv(t[2]) for t in taps if len(t) > 2 and t[1] == kind]


check(any(t.startswith("truth done") for t in truth), "the workload's truth lines arrived through mach.print, up to 'truth done'")
for t in (kv(l) for l in truth if l.startswith("truth msg ")):
    check(any(x["id"] == t["id"] and x["send_size"] == t["send_size"] and x["option"] == "3" and x["task"].endswith("workload") for x in of("msg_trap")),
          f"msg_trap id={t['id']} send_size={t['send_size']} task=*workload")
    check(any(x["id"] == t["id"] and x["size"] == t["send_size"] for x in of("ipc_send")), f"ipc_send id={t['id']}")
    check(any(x["id"] == t["id"] and x["size"] == t["send_size"] for x in of("ipc_receive")), f"ipc_receive id={t['id']}")
replies = of("rpc_reply")
for kind, routine, key in (("vm_allocate", "vm_allocate", "addr"), ("port_allocate", "mach_port_allocate", "name"), ("thread_create", "thread_create", "thread")):
    for t in (kv(l) for l in truth if l.startswith(f"truth {kind} ")):
        check(any(x["routine"] == routine and x["kr"] == "0" and x["value"] == t[key] for x in replies),
              f"rpc_reply routine={routine} value={t[key]}")
for t in (kv(l) for l in truth if l.startswith("truth vm_allocate ")):
    check(any(x["size"] == t["size"] and x["anywhere"] == "1" for x in of("vm_allocate")), f"vm_allocate size={t['size']}")
for t in (kv(l) for l in truth if l.startswith("truth stack_allocate ")):
    check(any(x["routine"] == "vm_allocate" and x["value"] == t["addr"] for x in replies), f"rpc_reply routine=vm_allocate value={t['addr']} (thread stack)")
for t in (kv(l) for l in truth if l.startswith("truth vm_deallocate ") or l.startswith("truth stack_deallocate ")):
    check(any(x["size"] == t["size"] and x["addr"] == t["addr"] for x in of("vm_deallocate")), f"vm_deallocate addr={t['addr']}")
for t in (kv(l) for l in truth if l.startswith("truth thread_set_state ")):
    check(any(x["eip"] == t["eip"] and x["uesp"] == t["esp"] for x in of("thread_set_state")), f"thread_set_state eip={t['eip']} uesp={t['esp']}")
for t in (kv(l) for l in truth if l.startswith("truth thread_msg ")):
    check(any(x["id"] == t["id"] and x["option"] == "1" for x in of("msg_trap")), f"msg_trap id={t['id']} from the created thread")
for kind in ("port_deallocate", "port_destroy"):
    for t in (kv(l) for l in truth if l.startswith(f"truth {kind} ") or (kind == "port_destroy" and l.startswith("truth thread_port_destroy "))):
        check(any(x["name"] == t["name"] for x in of(kind)), f"{kind} name={t['name']}")
check(len(of("thread_switch")) >= sum(1 for l in truth if l == "truth thread_switch") > 0, "thread_switch")
print(f"{fails} failures")
sys.exit(1 if fails else 0)
