# tapset_gdb.py: gdb (Python) side of verify-tapset.sh.
#
# Connected to QEMU's gdbstub, it breaks on every kernel function that
# mach/tapset/mach.stp probes, evaluates there the same expressions the
# tapset's aliases and context functions use (written in gdb's C syntax),
# and prints one "tap ALIAS key=value ..." line per hit. Return values and
# out-parameters are read with finish breakpoints, as the tapset's .return
# aliases read them through @entry(). It stops when the workload prints
# "truth done". verify-tapset.sh then compares these lines with the
# workload's own truth lines.
import gdb


def v(expr):
    return gdb.parse_and_eval(expr)


def i(expr):
    return int(v(expr))


def out(line):
    gdb.write(line + "\n")
    gdb.flush()


def task_name():
    # tapset: task_name() = kernel_string(@var("active_threads")[0]->task->name)
    return v("active_threads[0]->task->name").string()


def thread_id():
    # tapset: thread_id() = @var("active_threads")[0] (the struct thread address)
    return i("(long)active_threads[0]")


def ctx():
    return "task_name=%s thread_id=%#x" % (task_name(), thread_id())


class Fin(gdb.FinishBreakpoint):
    def __init__(self, fn):
        super().__init__(gdb.newest_frame(), internal=True)
        self.silent = True
        self.fn = fn

    def stop(self):
        try:
            self.fn(self)
        except gdb.error as e:
            out("tap unreadable at return: %s" % e)
        return False

    def out_of_scope(self):
        out("tap note finish-breakpoint-out-of-scope")


class Probe(gdb.Breakpoint):
    def __init__(self, spec, fn):
        super().__init__(spec)
        self.silent = True
        self.fn = fn

    def stop(self):
        try:
            return bool(self.fn())
        except gdb.error as e:  # gdb.MemoryError is a subclass
            out("tap unreadable at %s: %s" % (self.location, e))
            return False


def msg_trap():
    # mach.msg.trap: the header is user memory (24-byte i386 layout):
    # msgh_id at +20, remote port name at +8, local at +12.
    m = i("(long)msg")
    out(
        "tap mach.msg.trap option=%d send_size=%d rcv_size=%d rcv_name=%d time_out=%d id=%d remote=%d local=%d %s"
        % (
            i("option"),
            i("send_size"),
            i("rcv_size"),
            i("rcv_name"),
            i("time_out"),
            i("*(int*)(%d+20)" % m),
            i("*(unsigned*)(%d+8)" % m),
            i("*(unsigned*)(%d+12)" % m),
            ctx(),
        )
    )


def ipc_send():
    out(
        "tap mach.ipc.send id=%d size=%d bits=%#x option=%d %s"
        % (
            i("kmsg->ikm_header.msgh_id"),
            i("kmsg->ikm_header.msgh_size"),
            i("kmsg->ikm_header.msgh_bits"),
            i("option"),
            ctx(),
        )
    )


def ipc_receive():
    out(
        "tap mach.ipc.receive id=%d size=%d bits=%#x %s"
        % (i("msg->msgh_id"), i("msg->msgh_size"), i("msg->msgh_bits"), ctx())
    )


def ipc_put():
    # tapset: reply_retcode = kernel_int($kmsg + 68), reply_value =
    # kernel_int($kmsg + 76) & 0xffffffff (ikm_header at +32; the MIG reply
    # body has RetCode at header+36 and the first out value at header+44).
    k = i("(long)kmsg")
    out(
        "tap mach.ipc.put id=%d size=%d uaddr=%#x reply_retcode=%d reply_value=%#x %s"
        % (
            i("kmsg->ikm_header.msgh_id"),
            i("size"),
            i("(long)msg"),
            i("*(int*)%d" % (k + 68)),
            i("*(unsigned*)%d" % (k + 76)),
            ctx(),
        )
    )


def kernel_rpc():
    out(
        "tap mach.ipc.kernel_rpc id=%d size=%d %s"
        % (i("request->ikm_header.msgh_id"), i("request->ikm_header.msgh_size"), ctx())
    )


def vm_allocate():
    addr_p = i("(long)addr")
    size, anywhere, req = i("size"), i("anywhere"), i("*(unsigned long*)%d" % addr_p)
    c = ctx()
    out("tap mach.vm.allocate size=%d anywhere=%d req_addr=%#x %s" % (size, anywhere, req, c))

    def ret(fb):
        out(
            "tap mach.vm.allocate.return size=%d addr=%#x kr=%d %s"
            % (size, i("*(unsigned long*)%d" % addr_p), int(fb.return_value), c)
        )

    Fin(ret)


def vm_deallocate():
    out("tap mach.vm.deallocate addr=%#x size=%d %s" % (i("start"), i("size"), ctx()))


def thread_create():
    child_p = i("(long)child_thread")
    parent = v("parent_task->name").string()
    out("tap mach.thread.create parent_task=%s %s" % (parent, ctx()))

    def ret(fb):
        out(
            "tap mach.thread.create.return parent_task=%s new_thread=%#x kr=%d"
            % (parent, i("*(long*)%d" % child_p), int(fb.return_value))
        )

    Fin(ret)


def thread_set_state():
    n = i("new_state_count")
    eip = i("new_state[12]") if n >= 13 else 0
    out(
        "tap mach.thread.set_state thread=%#x flavor=%d count=%d eip=%#x uesp=%#x %s"
        % (i("(long)thread"), i("flavor"), n, eip, i("new_state[15]") if n >= 16 else 0, ctx())
    )


def thread_resume():
    out("tap mach.thread.resume thread=%#x %s" % (i("(long)thread"), ctx()))


def thread_switch():
    out(
        "tap mach.thread.switch thread_name=%d option=%d option_time=%d %s"
        % (i("thread_name"), i("option"), i("option_time"), ctx())
    )


def port_allocate():
    namep = i("(long)namep")
    right = i("right")
    c = ctx()
    out("tap mach.port.allocate right=%d %s" % (right, c))

    def ret(fb):
        out(
            "tap mach.port.allocate.return right=%d name=%#x kr=%d %s"
            % (right, i("*(unsigned*)%d" % namep), int(fb.return_value), c)
        )

    Fin(ret)


def port_deallocate():
    out("tap mach.port.deallocate name=%#x %s" % (i("name"), ctx()))


def port_destroy():
    out("tap mach.port.destroy name=%#x %s" % (i("name"), ctx()))


def sched_switch():
    # Only switches that involve the workload, to keep the log short.
    if i("(long)old_thread") == 0 or i("(long)new_thread") == 0:
        return False
    old_name = v("old_thread->task->name").string()
    new_name = v("new_thread->task->name").string()
    if "workload" in old_name or "workload" in new_name:
        out(
            "tap mach.sched.switch old_thread=%#x old_task=%s new_thread=%#x new_task=%s"
            % (i("(long)old_thread"), old_name, i("(long)new_thread"), new_name)
        )


def mach_print():
    s = v("s").string()
    out("tap mach.print %s" % s.rstrip("\n"))
    return s.startswith("truth done")


def main():
    gdb.execute("set pagination off")
    gdb.execute("set confirm off")
    gdb.execute("target remote " + PORT)
    Probe("mach_msg_trap", msg_trap)
    Probe("ipc_mqueue_send", ipc_send)
    Probe("ipc_kmsg_copyout_header", ipc_receive)
    Probe("ipc_kmsg_put", ipc_put)
    Probe("ipc_kobject_server", kernel_rpc)
    Probe("vm_allocate", vm_allocate)
    Probe("vm_deallocate", vm_deallocate)
    Probe("thread_create", thread_create)
    Probe("thread_set_state", thread_set_state)
    Probe("thread_resume", thread_resume)
    Probe("thread_switch", thread_switch)
    Probe("mach_port_allocate", port_allocate)
    Probe("mach_port_deallocate", port_deallocate)
    Probe("mach_port_destroy", port_destroy)
    Probe("thread_invoke", sched_switch)
    Probe("mach_print", mach_print)
    gdb.execute("continue")
    out("tap end")
    gdb.execute("delete")
    gdb.execute("detach")


# verify-tapset.sh sets PORT (e.g. "localhost:1234") before calling main().
PORT = "localhost:1234"
