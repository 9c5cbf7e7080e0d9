/* workload.c: a freestanding i386 bootstrap task for GNU Mach that exercises
 * real kernel paths (IPC, port rights, VM, threads) and prints its own ground
 * truth to the console with the mach_print trap, one "truth ..." line per
 * operation, so a tracer's output can be checked against it.
 *
 * Boot module line (GRUB):  module /boot/workload workload [ARGS] '$(task-create)' '$(task-resume)'
 * Arguments (all optional):
 *   rounds=N   number of full rounds (default 3); 0 skips straight to the loop
 *   report=N   after the rounds, the endless IPC loop prints "bench count=..."
 *              every N iterations (default 100000); 0 makes the loop silent
 *   wait=MS    sleep MS milliseconds before the first round (a receive with
 *              a timeout), so that a tracer can attach to the running kernel
 *   idle=1     after the rounds, block forever in one receive instead of the
 *              IPC loop (handy with a debugger: no further kernel activity)
 *
 * Message sizes on this kernel (x86_64 GNU Mach with 32-bit user tasks):
 * the user header is 24 bytes, the kernel's is 32; copyinmsg takes
 * send_size as the kernel size, so the user passes send_size = user size + 8
 * and receives msgh_size = kernel size - 8. The truth lines print the
 * send_size argument given to mach_msg_trap (what kernel.function("mach_msg_trap")
 * sees as $send_size) and the user size.
 */

typedef unsigned int u32;
typedef int s32;
typedef u32 mach_port_t;

extern s32 mach_msg_trap(void *msg, u32 option, u32 send_size, u32 rcv_size,
			 mach_port_t rcv_name, u32 timeout, mach_port_t notify);
extern mach_port_t mach_reply_port(void);
extern mach_port_t mach_thread_self(void);
extern mach_port_t mach_task_self(void);
extern s32 mach_print(const char *s);
extern s32 swtch(void);
extern s32 swtch_pri(s32 pri);
extern s32 thread_switch(mach_port_t thread, s32 option, u32 time);

#define MACH_SEND_MSG 1u
#define MACH_RCV_MSG 2u
#define MACH_RCV_TIMEOUT 0x100u
#define T_BOOLEAN 0u
#define T_INTEGER_32 2u
#define T_PORT_NAME 15u
#define T_MOVE_SEND 17u
#define T_COPY_SEND 19u
#define T_MAKE_SEND 20u
#define T_MAKE_SEND_ONCE 21u
#define RIGHT_RECEIVE 1u
#define RIGHT_DEAD_NAME 4u
#define MSGH_BITS(remote, local) ((remote) | ((local) << 8))
/* A short-form, inline mach_msg_type_t: name, size in bits, count. */
#define TYPE(name, bits, n) ((name) | ((bits) << 8) | ((u32)(n) << 16) | (1u << 28))

/* Routine ids: subsystem base + position in the .defs file (mach 2000,
 * mach_port 3200), counted over gnumach-dev's mach.defs / mach_port.defs. */
#define ID_THREAD_TERMINATE 2016
#define ID_THREAD_SET_STATE 2018
#define ID_VM_ALLOCATE 2021
#define ID_VM_DEALLOCATE 2023
#define ID_THREAD_CREATE 2061
#define ID_THREAD_RESUME 2063
#define ID_PORT_ALLOCATE 3204
#define ID_PORT_DESTROY 3205
#define ID_PORT_DEALLOCATE 3206

/* Ids of the workload's own messages. */
#define ID_SELF_MSG 1000
#define ID_THREAD_MSG 1100
#define ID_BENCH_MSG 999

typedef struct {
	u32 bits;
	u32 size;
	mach_port_t remote;
	mach_port_t local;
	u32 seqno;
	s32 id;
} header_t;

/* ---- console output ---------------------------------------------------- */

static char line[256];
static u32 line_len;

static void out_str(const char *s)
{
	while (*s && line_len < sizeof line - 2)
		line[line_len++] = *s++;
}

static void out_dec(u32 v)
{
	char tmp[12];
	int n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n && line_len < sizeof line - 2)
		line[line_len++] = tmp[--n];
}

static void out_hex(u32 v)
{
	static const char digits[] = "0123456789abcdef";
	int shift = 28;
	out_str("0x");
	while (shift > 0 && ((v >> shift) & 0xf) == 0)
		shift -= 4;
	for (; shift >= 0; shift -= 4)
		if (line_len < sizeof line - 2)
			line[line_len++] = digits[(v >> shift) & 0xf];
}

static void out_end(void)
{
	line[line_len++] = '\n';
	line[line_len] = 0;
	mach_print(line);
	line_len = 0;
}

static void fail(const char *what, u32 code)
{
	out_str("truth error op=");
	out_str(what);
	out_str(" kr=");
	out_hex(code);
	out_end();
}

/* ---- RPCs to kernel objects -------------------------------------------- */

static mach_port_t task_port;
static mach_port_t reply_port;

/* Big enough for every request and reply used here. */
typedef union {
	header_t h;
	u32 w[128];
} rpc_buf_t;

/* Sends a request whose body is `body_words` words already placed in
 * m->w[6..] to `dest`, waits for the reply on the task's reply port, and
 * returns the reply's RetCode (or the mach_msg error). */
static s32 rpc(rpc_buf_t *m, mach_port_t dest, s32 id, u32 body_words)
{
	s32 kr;
	m->h.bits = MSGH_BITS(T_COPY_SEND, T_MAKE_SEND_ONCE);
	m->h.size = 0;
	m->h.remote = dest;
	m->h.local = reply_port;
	m->h.seqno = 0;
	m->h.id = id;
	kr = mach_msg_trap(m, MACH_SEND_MSG | MACH_RCV_MSG, 24 + 4 * body_words + 8,
			   sizeof *m, reply_port, 0, 0);
	if (kr != 0)
		return kr;
	if (m->h.id != id + 100)
		return -1;
	/* Reply body: RetCode type, RetCode, then the out arguments. */
	return (s32)m->w[7];
}

static s32 port_allocate(u32 right, mach_port_t *name)
{
	rpc_buf_t m;
	s32 kr;
	m.w[6] = TYPE(T_INTEGER_32, 32, 1);
	m.w[7] = right;
	kr = rpc(&m, task_port, ID_PORT_ALLOCATE, 2);
	if (kr == 0)
		*name = m.w[9];
	return kr;
}

static s32 port_name_op(s32 id, mach_port_t name)
{
	rpc_buf_t m;
	m.w[6] = TYPE(T_PORT_NAME, 32, 1);
	m.w[7] = name;
	return rpc(&m, task_port, id, 2);
}

static s32 vm_allocate(u32 *addr, u32 size, u32 anywhere)
{
	rpc_buf_t m;
	s32 kr;
	m.w[6] = TYPE(T_INTEGER_32, 32, 1);
	m.w[7] = *addr;
	m.w[8] = TYPE(T_INTEGER_32, 32, 1);
	m.w[9] = size;
	m.w[10] = TYPE(T_BOOLEAN, 32, 1);
	m.w[11] = anywhere;
	kr = rpc(&m, task_port, ID_VM_ALLOCATE, 6);
	if (kr == 0)
		*addr = m.w[9];
	return kr;
}

static s32 vm_deallocate(u32 addr, u32 size)
{
	rpc_buf_t m;
	m.w[6] = TYPE(T_INTEGER_32, 32, 1);
	m.w[7] = addr;
	m.w[8] = TYPE(T_INTEGER_32, 32, 1);
	m.w[9] = size;
	return rpc(&m, task_port, ID_VM_DEALLOCATE, 4);
}

static s32 thread_create(mach_port_t *thread)
{
	rpc_buf_t m;
	s32 kr = rpc(&m, task_port, ID_THREAD_CREATE, 0);
	if (kr == 0)
		*thread = m.w[9];
	return kr;
}

static s32 thread_set_state_i386(mach_port_t thread, const u32 *state, u32 count)
{
	rpc_buf_t m;
	u32 i;
	m.w[6] = TYPE(T_INTEGER_32, 32, 1);
	m.w[7] = 1; /* i386_THREAD_STATE */
	m.w[8] = TYPE(T_INTEGER_32, 32, count);
	for (i = 0; i < count; i++)
		m.w[9 + i] = state[i];
	return rpc(&m, thread, ID_THREAD_SET_STATE, 3 + count);
}

static s32 thread_simple(s32 id, mach_port_t thread)
{
	rpc_buf_t m;
	return rpc(&m, thread, id, 0);
}

/* ---- the operations, each reporting its truth line ---------------------- */

/* Message buffer for self-IPC: up to 1024 bytes of user message. */
static union {
	header_t h;
	u32 w[512];
} msgbuf;

/* One SEND|RCV round trip through `port` (a receive right of ours): the
 * message is `send_size - 8` user bytes with id `id`. Returns 0 on success. */
static s32 self_msg(mach_port_t port, s32 id, u32 send_size, int quiet)
{
	s32 kr;
	u32 user_size = send_size - 8;
	msgbuf.h.bits = MSGH_BITS(T_MAKE_SEND, 0);
	msgbuf.h.size = 0;
	msgbuf.h.remote = port;
	msgbuf.h.local = 0;
	msgbuf.h.seqno = 0;
	msgbuf.h.id = id;
	msgbuf.w[6] = (u32)id * 7u; /* a body word to check after the trip */
	kr = mach_msg_trap(&msgbuf, MACH_SEND_MSG | MACH_RCV_MSG, send_size,
			   sizeof msgbuf, port, 0, 0);
	if (quiet)
		return kr;
	if (kr != 0) {
		fail("msg", (u32)kr);
		return kr;
	}
	out_str("truth msg id=");
	out_dec((u32)msgbuf.h.id);
	out_str(" send_size=");
	out_dec(send_size);
	out_str(" user_size=");
	out_dec(user_size);
	out_str(" rcv_size=");
	out_dec(sizeof msgbuf);
	out_str(" port=");
	out_hex(port);
	out_str(" received_size=");
	out_dec(msgbuf.h.size);
	out_str(msgbuf.h.size == user_size && msgbuf.h.id == id &&
				msgbuf.w[6] == (u32)id * 7u
			? " ok"
			: " MISMATCH");
	out_end();
	return 0;
}

/* The child thread's arguments, passed through statics because the child
 * starts with a fresh register state and stack. */
static volatile mach_port_t child_port;
static volatile u32 child_round;

static void child_main(void)
{
	union {
		header_t h;
		u32 w[16];
	} m;
	m.h.bits = MSGH_BITS(T_MAKE_SEND, 0);
	m.h.size = 0;
	m.h.remote = child_port;
	m.h.local = 0;
	m.h.seqno = 0;
	m.h.id = ID_THREAD_MSG + (s32)child_round;
	mach_msg_trap(&m, MACH_SEND_MSG, 32, 0, 0, 0, 0);
	/* Terminate ourselves: thread_terminate(mach_thread_self()). The
	 * reply never comes, so this is a send-only simpleroutine use. */
	m.h.bits = MSGH_BITS(T_COPY_SEND, 0);
	m.h.remote = mach_thread_self();
	m.h.local = 0;
	m.h.id = ID_THREAD_TERMINATE;
	mach_msg_trap(&m, MACH_SEND_MSG, 32, 0, 0, 0, 0);
	for (;;)
		swtch();
}

static u32 prev_stack;

static void thread_round(u32 round, mach_port_t port)
{
	mach_port_t thread = 0;
	u32 stack = 0, size = 16384;
	u32 st[17], cs, ds, ss, es, fs, gs;
	s32 kr;

	/* The previous round's child has long terminated: free its stack so
	 * that any number of rounds fits in the address space. */
	if (prev_stack) {
		kr = vm_deallocate(prev_stack, size);
		if (kr)
			fail("stack_deallocate", (u32)kr);
		out_str("truth stack_deallocate size=");
		out_dec(size);
		out_str(" addr=");
		out_hex(prev_stack);
		out_end();
		prev_stack = 0;
	}
	kr = vm_allocate(&stack, size, 1);
	if (kr) {
		fail("stack_allocate", (u32)kr);
		return;
	}
	out_str("truth stack_allocate size=");
	out_dec(size);
	out_str(" addr=");
	out_hex(stack);
	out_end();
	prev_stack = stack;
	kr = thread_create(&thread);
	if (kr) {
		fail("thread_create", (u32)kr);
		return;
	}
	out_str("truth thread_create thread=");
	out_hex(thread);
	out_end();

	__asm__ volatile("movl %%cs,%0; movl %%ds,%1; movl %%ss,%2; movl %%es,%3;"
			 "movl %%fs,%4; movl %%gs,%5"
			 : "=r"(cs), "=r"(ds), "=r"(ss), "=r"(es), "=r"(fs), "=r"(gs));
	st[0] = gs;
	st[1] = fs;
	st[2] = es;
	st[3] = ds;
	st[4] = st[5] = st[6] = 0;		   /* edi esi ebp */
	st[7] = stack + size - 16;		   /* esp (ignored) */
	st[8] = st[9] = st[10] = st[11] = 0;	   /* ebx edx ecx eax */
	st[12] = (u32)(unsigned long)&child_main; /* eip */
	st[13] = cs;
	st[14] = 0x202;		   /* eflags: IF */
	st[15] = stack + size - 16; /* uesp */
	st[16] = ss;
	child_port = port;
	child_round = round;
	kr = thread_set_state_i386(thread, st, 17);
	if (kr) {
		fail("thread_set_state", (u32)kr);
		return;
	}
	out_str("truth thread_set_state thread=");
	out_hex(thread);
	out_str(" eip=");
	out_hex(st[12]);
	out_str(" esp=");
	out_hex(st[15]);
	out_end();
	kr = thread_simple(ID_THREAD_RESUME, thread);
	if (kr) {
		fail("thread_resume", (u32)kr);
		return;
	}
	out_str("truth thread_resume thread=");
	out_hex(thread);
	out_end();

	/* Receive the child's message (this blocks and switches to the child). */
	msgbuf.h.id = 0;
	kr = mach_msg_trap(&msgbuf, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof msgbuf,
			   port, 5000, 0);
	if (kr) {
		fail("thread_msg", (u32)kr);
	} else {
		out_str("truth thread_msg id=");
		out_dec((u32)msgbuf.h.id);
		out_str(" send_size=32 from=");
		out_hex(thread);
		out_str(msgbuf.h.id == ID_THREAD_MSG + (s32)round ? " ok" : " MISMATCH");
		out_end();
	}
	/* Let the child reach thread_terminate, then drop our name for it. The
	 * name holds two user references (thread_create's reply and the child's
	 * mach_thread_self()), so destroy it rather than deallocate one. */
	swtch_pri(0);
	kr = port_name_op(ID_PORT_DESTROY, thread);
	if (kr)
		fail("thread_port_destroy", (u32)kr);
	out_str("truth thread_port_destroy name=");
	out_hex(thread);
	out_end();
}

static u32 parse_num(const char *s)
{
	u32 v = 0;
	while (*s >= '0' && *s <= '9')
		v = v * 10 + (u32)(*s++ - '0');
	return v;
}

static int starts_with(const char *s, const char *p)
{
	while (*p)
		if (*s++ != *p++)
			return 0;
	return 1;
}

void wl_main(u32 *sp)
{
	u32 argc = sp[0];
	char **argv = (char **)(sp + 1);
	u32 rounds = 3, report = 100000, idle = 0, wait = 0, i, r;
	mach_port_t port = 0, dead = 0;
	s32 kr;
	static const u32 sizes[] = {32, 64, 128, 256, 512, 1024};

	for (i = 1; i < argc && argv[i]; i++) {
		if (starts_with(argv[i], "rounds="))
			rounds = parse_num(argv[i] + 7);
		else if (starts_with(argv[i], "report="))
			report = parse_num(argv[i] + 7);
		else if (starts_with(argv[i], "idle="))
			idle = parse_num(argv[i] + 5);
		else if (starts_with(argv[i], "wait="))
			wait = parse_num(argv[i] + 5);
	}

	/* The kernel prints "start NAME: " without a newline before we run. */
	out_end();
	task_port = mach_task_self();
	reply_port = mach_reply_port();
	out_str("truth start task=");
	out_hex(task_port);
	out_str(" reply_port=");
	out_hex(reply_port);
	out_str(" thread=");
	out_hex(mach_thread_self());
	out_str(" rounds=");
	out_dec(rounds);
	out_str(" report=");
	out_dec(report);
	out_end();

	if (wait) {
		out_str("truth wait ms=");
		out_dec(wait);
		out_end();
		/* Nothing is ever sent to the reply port outside an RPC, so this
		 * receive just times out (MACH_RCV_TIMED_OUT). */
		mach_msg_trap(&msgbuf, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof msgbuf,
			      reply_port, wait, 0);
	}

	for (r = 0; r < rounds; r++) {
		out_str("truth round=");
		out_dec(r);
		out_end();

		kr = port_allocate(RIGHT_RECEIVE, &port);
		if (kr) {
			fail("port_allocate", (u32)kr);
			continue;
		}
		out_str("truth port_allocate right=receive name=");
		out_hex(port);
		out_end();

		for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
			self_msg(port, ID_SELF_MSG + (s32)(r * 10 + i), sizes[i], 0);

		{
			u32 addr = 0, size = 8192u << (r % 4);
			volatile u32 *p;
			kr = vm_allocate(&addr, size, 1);
			if (kr) {
				fail("vm_allocate", (u32)kr);
			} else {
				out_str("truth vm_allocate size=");
				out_dec(size);
				out_str(" addr=");
				out_hex(addr);
				out_end();
				/* Touch every page: zero-fill faults. */
				for (p = (volatile u32 *)(unsigned long)addr;
				     (u32)(unsigned long)p < addr + size; p += 1024)
					*p = r;
				kr = vm_deallocate(addr, size);
				if (kr)
					fail("vm_deallocate", (u32)kr);
				out_str("truth vm_deallocate size=");
				out_dec(size);
				out_str(" addr=");
				out_hex(addr);
				out_end();
			}
		}

		thread_round(r, port);

		out_str("truth thread_switch");
		out_end();
		thread_switch(0, 0, 0);

		kr = port_allocate(RIGHT_DEAD_NAME, &dead);
		if (kr) {
			fail("port_allocate_dead", (u32)kr);
		} else {
			out_str("truth port_allocate right=dead_name name=");
			out_hex(dead);
			out_end();
			kr = port_name_op(ID_PORT_DEALLOCATE, dead);
			if (kr)
				fail("port_deallocate", (u32)kr);
			out_str("truth port_deallocate name=");
			out_hex(dead);
			out_end();
		}

		kr = port_name_op(ID_PORT_DESTROY, port);
		if (kr)
			fail("port_destroy", (u32)kr);
		out_str("truth port_destroy name=");
		out_hex(port);
		out_end();
	}

	/* The endless loop: header-only SEND|RCV round trips to a port of our
	 * own, the fastest real kernel path, for benchmarks. */
	kr = port_allocate(RIGHT_RECEIVE, &port);
	if (kr)
		fail("port_allocate", (u32)kr);
	out_str("truth done rounds=");
	out_dec(rounds);
	out_str(" bench_port=");
	out_hex(port);
	out_str(" bench_id=");
	out_dec(ID_BENCH_MSG);
	out_end();
	if (idle) {
		/* Nobody ever sends to this port: the task sleeps for good. */
		for (;;)
			mach_msg_trap(&msgbuf, MACH_RCV_MSG, 0, sizeof msgbuf, port, 0, 0);
	}
	for (i = 0;;) {
		kr = self_msg(port, ID_BENCH_MSG, 32, 1);
		if (kr) {
			fail("bench_msg", (u32)kr);
			for (;;)
				swtch();
		}
		i++;
		if (report && i % report == 0) {
			out_str("bench count=");
			out_dec(i);
			out_end();
		}
	}
}
