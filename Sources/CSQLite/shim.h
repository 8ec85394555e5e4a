#ifndef EDGEPILOT_CSQLITE_SHIM_H
#define EDGEPILOT_CSQLITE_SHIM_H
#include <sqlite3.h>

/* SQLITE_TRANSIENT is a cast macro that Swift cannot import; binding text needs it. */
static inline sqlite3_destructor_type ep_sqlite_transient(void) { return SQLITE_TRANSIENT; }
#endif
