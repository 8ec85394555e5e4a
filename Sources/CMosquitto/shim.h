#ifndef EDGEPILOT_CMOSQUITTO_SHIM_H
#define EDGEPILOT_CMOSQUITTO_SHIM_H
/* libmosquitto (Debian libmosquitto-dev): the MQTT v3.1.1 / v5 client API and the MQTT 5 property helpers. */
#include <mosquitto.h>
#include <mqtt_protocol.h>
#endif
