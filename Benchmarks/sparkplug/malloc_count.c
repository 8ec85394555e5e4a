/* Counts heap allocations for sparkplugbench when LD_PRELOADed (built by run.sh).
 * Wraps malloc/calloc/realloc/posix_memalign/aligned_alloc and forwards to the next definition. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

static _Atomic uint64_t count;

uint64_t edgepilot_malloc_count(void) { return atomic_load(&count); }

static void *(*next_malloc)(size_t);
static void *(*next_calloc)(size_t, size_t);
static void *(*next_realloc)(void *, size_t);
static int (*next_posix_memalign)(void **, size_t, size_t);
static void *(*next_aligned_alloc)(size_t, size_t);

/* dlsym itself may call calloc before next_calloc is known: serve that from a small static arena. */
static char bootstrap[4096];
static size_t bootstrap_used;

void *malloc(size_t n) {
    if (!next_malloc) next_malloc = dlsym(RTLD_NEXT, "malloc");
    atomic_fetch_add(&count, 1);
    return next_malloc(n);
}

void *calloc(size_t a, size_t b) {
    if (!next_calloc) {
        static int resolving;
        if (resolving) {
            void *p = bootstrap + bootstrap_used;
            bootstrap_used += (a * b + 15) & ~(size_t)15;
            return p;
        }
        resolving = 1;
        next_calloc = dlsym(RTLD_NEXT, "calloc");
        resolving = 0;
    }
    atomic_fetch_add(&count, 1);
    return next_calloc(a, b);
}

void *realloc(void *p, size_t n) {
    if (!next_realloc) next_realloc = dlsym(RTLD_NEXT, "realloc");
    atomic_fetch_add(&count, 1);
    return next_realloc(p, n);
}

int posix_memalign(void **p, size_t a, size_t n) {
    if (!next_posix_memalign) next_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    atomic_fetch_add(&count, 1);
    return next_posix_memalign(p, a, n);
}

void *aligned_alloc(size_t a, size_t n) {
    if (!next_aligned_alloc) next_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    atomic_fetch_add(&count, 1);
    return next_aligned_alloc(a, n);
}

/* free() of a bootstrap pointer must not reach the real free. */
void free(void *p) {
    static void (*next_free)(void *);
    if ((char *)p >= bootstrap && (char *)p < bootstrap + sizeof bootstrap) return;
    if (!next_free) next_free = dlsym(RTLD_NEXT, "free");
    next_free(p);
}
