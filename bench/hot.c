/* Benchmark target: calls hot() N times and prints the elapsed time of the loop, so a
 * tracer's per-hit overhead is (traced - untraced) / N. Usage: hot N */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct item {
    int id;
    long len;
    short kind;
};

volatile long sink;

__attribute__((noinline)) void hot(struct item *it)
{
    sink += it->id + it->len + it->kind;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 10000;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        struct item it = {(int)i, i * 3, (short)(i & 7)};
        hot(&it);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    fprintf(stderr, "elapsed_ns %lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
    return 0;
}
