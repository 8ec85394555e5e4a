#ifndef EP_ALLOC_COUNTER_H
#define EP_ALLOC_COUNTER_H

#include <stdint.h>

/// Number of heap allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc,
/// memalign, valloc, pvalloc) made by the calling thread since it started.
/// Linking this target into an executable interposes those functions process-wide; each call
/// is forwarded to glibc's __libc_* implementation, so behaviour is unchanged apart from counting.
uint64_t ep_alloc_count_thread(void);

/// Number of frees (free, and realloc to size 0) made by the calling thread since it started.
uint64_t ep_free_count_thread(void);

#endif
