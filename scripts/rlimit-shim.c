/* LD_PRELOAD shim for running `stap --runtime=bpf` in a container: stapbpf raises
 * RLIMIT_MEMLOCK before loading its programs and gives up when the container forbids it,
 * although the kernel (>= 5.11) accounts BPF memory to the cgroup and needs no such limit.
 * Pretending the call succeeded is enough. Build: gcc -shared -fPIC -o rl.so rlimit-shim.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/resource.h>

int setrlimit(__rlimit_resource_t resource, const struct rlimit *rlim)
{
    if (resource == RLIMIT_MEMLOCK)
        return 0;
    int (*next)(__rlimit_resource_t, const struct rlimit *) =
        (int (*)(__rlimit_resource_t, const struct rlimit *))dlsym(RTLD_NEXT, "setrlimit");
    return next(resource, rlim);
}
