#ifndef EDGEPILOT_CZLIB_SHIM_H
#define EDGEPILOT_CZLIB_SHIM_H
#include <zlib.h>

/* deflateInit2/inflateInit2 are macros that pass the library version and stream size; Swift cannot import them. */
static inline int ep_deflate_init2(z_streamp s, int level, int window_bits) {
    return deflateInit2(s, level, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY);
}
static inline int ep_inflate_init2(z_streamp s, int window_bits) { return inflateInit2(s, window_bits); }
#endif
