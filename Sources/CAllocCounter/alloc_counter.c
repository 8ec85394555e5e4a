// Counts heap allocations per thread by interposing the allocator entry points.
// Why interpose instead of using malloc hooks: glibc removed __malloc_hook in 2.34, and an
// LD_PRELOAD library would have to be injected by whoever runs the tests. Symbols defined in the
// executable take precedence over libc's for every shared object (ELF interposition), so simply
// linking this file into a test binary counts allocations made by Swift's runtime too.
#define _GNU_SOURCE
#include "CAllocCounter.h"

#include <errno.h>
#include <stddef.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);
extern void __libc_free(void *ptr);

// initial-exec TLS: no lazy allocation of the TLS block, which would recurse into malloc.
static __thread uint64_t alloc_count __attribute__((tls_model("initial-exec")));
static __thread uint64_t free_count __attribute__((tls_model("initial-exec")));

uint64_t ep_alloc_count_thread(void) { return alloc_count; }
uint64_t ep_free_count_thread(void) { return free_count; }

void *malloc(size_t size) {
    alloc_count++;
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    alloc_count++;
    return __libc_calloc(count, size);
}

void *realloc(void *ptr, size_t size) {
    if (ptr != NULL && size == 0) {
        free_count++;
    } else {
        alloc_count++;
    }
    return __libc_realloc(ptr, size);
}

void free(void *ptr) {
    if (ptr != NULL) {
        free_count++;
    }
    __libc_free(ptr);
}

void *memalign(size_t alignment, size_t size) {
    alloc_count++;
    return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) {
    alloc_count++;
    return __libc_memalign(alignment, size);
}

int posix_memalign(void **result, size_t alignment, size_t size) {
    // Same validation as glibc: a power of two multiple of sizeof(void *).
    if (alignment % sizeof(void *) != 0 || (alignment & (alignment - 1)) != 0 || alignment == 0) {
        return EINVAL;
    }
    alloc_count++;
    void *p = __libc_memalign(alignment, size);
    if (p == NULL) {
        return ENOMEM;
    }
    *result = p;
    return 0;
}

void *valloc(size_t size) {
    alloc_count++;
    return __libc_valloc(size);
}

void *pvalloc(size_t size) {
    alloc_count++;
    return __libc_pvalloc(size);
}
