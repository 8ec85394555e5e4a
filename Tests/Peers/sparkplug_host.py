"""A minimal Sparkplug 3.0 Primary Host Application for EdgePilot's integration test.

It connects with MQTT 5 (so that "retain as published" shows the publisher's retain flag), subscribes to the
group's topics, publishes its STATE birth (retained JSON, QoS 1) once the subscription is acknowledged, records
every message as one JSON line (topic, QoS, retain, payload decoded with the Tahu schema), and after the first
NBIRTH plus --rebirth-after data messages sends one NCMD "Node Control/Rebirth" = true, encoded with the Tahu
schema. Stops on SIGTERM or after --duration seconds.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sparkplug_tahu import DT, metric, payload_to_dict, pb  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--host-id", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rebirth-after", type=int, default=3)
    ap.add_argument("--duration", type=float, default=60)
    args = ap.parse_args()

    out = open(args.out, "w", buffering=1)
    lock = threading.Lock()
    done = threading.Event()
    state = {"births": 0, "data_since_birth": 0, "ncmd_sent": False}
    state_topic = "spBv1.0/STATE/%s" % args.host_id

    def record(obj):
        with lock:
            out.write(json.dumps(obj) + "\n")

    def state_payload(online):
        return json.dumps({"online": online, "timestamp": int(time.time() * 1000)})

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="sparkplug-test-host", protocol=mqtt.MQTTv5
    )
    client.will_set(state_topic, state_payload(False), qos=1, retain=True)

    def on_connect(c, userdata, flags, reason_code, properties):
        c.subscribe(
            "spBv1.0/%s/#" % args.group, options=SubscribeOptions(qos=1, retainAsPublished=True)
        )

    def on_subscribe(c, userdata, mid, reason_codes, properties):
        c.publish(state_topic, state_payload(True), qos=1, retain=True)
        record({"event": "ready"})

    def on_message(c, userdata, msg):
        entry = {"topic": msg.topic, "qos": msg.qos, "retain": bool(msg.retain)}
        try:
            entry["payload"] = payload_to_dict(msg.payload)
        except Exception as e:  # recorded so that the Swift test shows what did not parse
            entry["error"] = repr(e)
        record(entry)
        kind = msg.topic.split("/")[2]
        if kind == "NBIRTH":
            state["births"] += 1
            state["data_since_birth"] = 0
        elif kind in ("NDATA", "DDATA"):
            state["data_since_birth"] += 1
            if state["births"] == 1 and state["data_since_birth"] >= args.rebirth_after and not state["ncmd_sent"]:
                state["ncmd_sent"] = True
                p = pb.Payload()
                p.timestamp = int(time.time() * 1000)
                p.metrics.append(metric("Node Control/Rebirth", DT.Boolean, True, timestamp=p.timestamp))
                c.publish("spBv1.0/%s/NCMD/%s" % (args.group, args.node), p.SerializeToString(), qos=0)
                record({"event": "ncmd_sent"})

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    client.connect("127.0.0.1", args.port, keepalive=30)
    client.loop_start()
    done.wait(args.duration)
    client.loop_stop()
    client.disconnect()
    out.close()


if __name__ == "__main__":
    main()
