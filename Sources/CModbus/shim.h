#ifndef EDGEPILOT_CMODBUS_SHIM_H
#define EDGEPILOT_CMODBUS_SHIM_H
#include <modbus.h>
#include <errno.h>

/* libmodbus reports failures through errno; Swift cannot read the thread-local errno macro directly. */
static inline int ep_modbus_errno(void) { return errno; }
#endif
