/* The bundled demo: a tiny "request server" with two worker threads.
 * Each request has a client name, a method and a payload length; handle_request() is
 * where snaptap's demo script looks. Usage: demo [REQUESTS] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum method { GET, PUT, DELETE };

struct request {
    int id;
    enum method method;
    const char *client;
    size_t len;
};

static const char *clients[] = {"alice", "bob", "carol", "dave"};
static volatile unsigned long checksum;

__attribute__((noinline)) int handle_request(struct request *req, int worker)
{
    unsigned long c = strlen(req->client) + (unsigned long)req->method;
    for (size_t i = 0; i < req->len; i += 64)
        c += i ^ (unsigned long)req->id;
    checksum += c;
    return req->len > 4000 ? 503 : 200;
}

struct worker_arg {
    int worker;
    int count;
};

static void *worker(void *p)
{
    struct worker_arg *a = p;
    unsigned seed = 12345u + (unsigned)a->worker;
    for (int i = 0; i < a->count; i++) {
        struct request r;
        r.id = a->worker * 100000 + i;
        r.method = (enum method)(rand_r(&seed) % 3);
        r.client = clients[rand_r(&seed) % 4];
        r.len = (size_t)(rand_r(&seed) % 5000);
        handle_request(&r, a->worker);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    pthread_t th[2];
    struct worker_arg args[2] = {{0, n / 2}, {1, n - n / 2}};
    for (int t = 0; t < 2; t++)
        pthread_create(&th[t], NULL, worker, &args[t]);
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    printf("demo: served %d requests (checksum %lu)\n", n, checksum);
    return 0;
}
