/* start.S: entry point and Mach trap stubs of the freestanding i386 workload.
 *
 * GNU Mach starts a boot-script task with %esp pointing at argc, followed by
 * argv[], a null word, envp[], a null word. Traps use the i386 Mach ABI:
 * %eax = -trap number, `lcall $7,$0`, arguments are the caller's cdecl
 * arguments (the kernel reads them from the user stack at esp+4), and the
 * result comes back in %eax.
 */
	.text
	.globl	_start
_start:
	movl	%esp, %eax		/* &argc */
	andl	$-16, %esp		/* ABI alignment for the C code */
	subl	$12, %esp
	pushl	%eax
	call	wl_main
1:	jmp	1b			/* wl_main never returns */

#define TRAP(name, num)		\
	.globl	name;		\
	.type	name, @function;\
name:				\
	movl	$(num), %eax;	\
	lcall	$7, $0;		\
	ret

TRAP(mach_msg_trap, -25)
TRAP(mach_reply_port, -26)
TRAP(mach_thread_self, -27)
TRAP(mach_task_self, -28)
TRAP(mach_host_self, -29)
TRAP(mach_print, -30)
TRAP(swtch_pri, -59)
TRAP(swtch, -60)
TRAP(thread_switch, -61)

	.section .note.GNU-stack,"",@progbits
