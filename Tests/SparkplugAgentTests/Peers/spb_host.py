"""A Sparkplug 3.0 host for EdgePilot's agent tests: records what the edge node publishes, sends commands.

Independent of EdgePilot's Swift code: payloads are decoded and commands encoded with the Eclipse Tahu schema as
shipped by mqtt-spb-wrapper (Tests/Peers/sparkplug_tahu.py). It subscribes to spBv1.0/<group>/# at QoS 1 and,
with --host-id, acts as the Primary Host: after every (re)connect it subscribes first, then publishes its retained
STATE {"online": true, "timestamp": now}, so the edge node's births (and replay) can never precede the recording.

Every message becomes one JSON line in --out: topic, qos, retain, receive time (ms) and the decoded payload.
Commands are JSON lines appended by the test to --commands (polled every 20 ms):
  {"cmd": "rebirth"}                                       NCMD Node Control/Rebirth = true
  {"cmd": "dcmd", "device": d, "metric": m, "datatype": "Float", "value": v}   ("values": [...]: one metric each;
                                                           "alias": n sends the alias without name and datatype)
  {"cmd": "dcmd_template", "device": d, "instance": i or "alias": a, "member": m, "datatype": "Double", "value": v}
                                                           DCMD writing one member of a template instance
  {"cmd": "ncmd", "metric": m, "datatype": "Int64", "value": v}   NCMD writing one node metric
  {"cmd": "raw", "topic": t, "hex": "..."}                 arbitrary bytes (malformed commands)
  {"cmd": "state", "online": bool}                         publish STATE now
Prints {"event": "listening"} once the first subscription is acknowledged; stops on SIGTERM. --cafile connects
over TLS (server certificate and host name verified), --username/--password authenticate.
"""

import argparse
import gzip
import json
import os
import signal
import sys
import threading
import time
import zlib

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Peers"))
from sparkplug_tahu import DT, metric, payload_to_dict, pb  # noqa: E402


def now_ms():
    return int(time.time() * 1000)


def decompressed(raw, entry):
    """A compressed payload (uuid SPBV1.0_COMPRESSED) as MQTT Engine reads it: the body inflated with the algorithm
    its "algorithm" metric names, DEFLATE (zlib, RFC 1950) when there is none; recorded as entry["compressed"]."""
    outer = pb.Payload()
    outer.ParseFromString(raw)
    if outer.uuid != "SPBV1.0_COMPRESSED":
        return raw
    algorithm = "DEFLATE"
    for m in outer.metrics:
        if m.name == "algorithm":
            algorithm = m.string_value
    entry["compressed"] = algorithm
    entry["compressed_seq"] = outer.seq if outer.HasField("seq") else None
    if algorithm == "GZIP":
        return gzip.decompress(outer.body)
    if algorithm == "DEFLATE":
        return zlib.decompress(outer.body)
    raise ValueError("unknown compression algorithm %r" % algorithm)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--host-id")
    ap.add_argument("--out", required=True)
    ap.add_argument("--commands", required=True)
    ap.add_argument("--manual-state", action="store_true", help="publish STATE only when told to")
    ap.add_argument("--keepalive", type=int, default=5, help="MQTT keepalive (s); long to ride out a frozen broker")
    ap.add_argument("--cafile", help="connect with TLS, trusting this CA")
    ap.add_argument("--username")
    ap.add_argument("--password")
    args = ap.parse_args()

    out = open(args.out, "a", buffering=1)
    lock = threading.Lock()
    done = threading.Event()
    announced = threading.Event()
    state_topic = "spBv1.0/STATE/%s" % args.host_id if args.host_id else None

    def record(obj):
        with lock:
            out.write(json.dumps(obj) + "\n")

    def state_payload(online):
        return json.dumps({"online": online, "timestamp": now_ms()})

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="spb-test-host-%d" % os.getpid())
    client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
    if args.cafile:
        client.tls_set(ca_certs=args.cafile)
    if args.username:
        client.username_pw_set(args.username, args.password)
    if state_topic and not args.manual_state:
        client.will_set(state_topic, state_payload(False), qos=1, retain=True)

    def on_connect(c, userdata, flags, reason_code, properties):
        c.subscribe("spBv1.0/%s/#" % args.group, qos=1)

    def on_subscribe(c, userdata, mid, reason_codes, properties):
        if state_topic and not args.manual_state:
            c.publish(state_topic, state_payload(True), qos=1, retain=True)
        record({"event": "subscribed", "t": now_ms()})
        if not announced.is_set():
            announced.set()
            print(json.dumps({"event": "listening"}), flush=True)

    def on_disconnect(c, userdata, flags, reason_code, properties):
        record({"event": "disconnected", "t": now_ms()})

    def on_message(c, userdata, msg):
        if state_topic and msg.topic == state_topic:
            return
        entry = {"topic": msg.topic, "qos": msg.qos, "retain": bool(msg.retain), "t": now_ms()}
        entry["bytes"] = len(msg.payload)
        try:
            entry["payload"] = payload_to_dict(decompressed(msg.payload, entry))
        except Exception as e:  # recorded so that the Swift test shows what did not parse
            entry["error"] = repr(e)
        record(entry)

    def command(cmd):
        kind = cmd.get("cmd")
        if kind == "rebirth":
            p = pb.Payload()
            p.timestamp = now_ms()
            p.metrics.append(metric("Node Control/Rebirth", DT.Boolean, True, timestamp=p.timestamp))
            client.publish("spBv1.0/%s/NCMD/%s" % (args.group, args.node), p.SerializeToString(), qos=0)
        elif kind == "dcmd":
            p = pb.Payload()
            p.timestamp = now_ms()
            for value in cmd["values"] if "values" in cmd else [cmd["value"]]:
                m = metric(cmd["metric"], getattr(DT, cmd["datatype"]), value, timestamp=p.timestamp)
                if "alias" in cmd:
                    # As a host writes once the births gave aliases: the alias only, no name, no datatype.
                    m.ClearField("name")
                    m.ClearField("datatype")
                    m.alias = cmd["alias"]
                p.metrics.append(m)
            client.publish(
                "spBv1.0/%s/DCMD/%s/%s" % (args.group, args.node, cmd["device"]), p.SerializeToString(), qos=0
            )
        elif kind == "dcmd_template":
            # As MQTT Engine writes a UDT member: the instance metric (by alias when given) carrying the member.
            p = pb.Payload()
            p.timestamp = now_ms()
            m = p.metrics.add()
            if "alias" in cmd:
                m.alias = cmd["alias"]
            else:
                m.name = cmd["instance"]
            m.timestamp = p.timestamp
            m.datatype = DT.Template
            m.template_value.is_definition = False
            if "template_ref" in cmd:
                m.template_value.template_ref = cmd["template_ref"]
            m.template_value.metrics.append(
                metric(cmd["member"], getattr(DT, cmd["datatype"]), cmd["value"], timestamp=p.timestamp)
            )
            client.publish(
                "spBv1.0/%s/DCMD/%s/%s" % (args.group, args.node, cmd["device"]), p.SerializeToString(), qos=0
            )
        elif kind == "ncmd":
            p = pb.Payload()
            p.timestamp = now_ms()
            p.metrics.append(metric(cmd["metric"], getattr(DT, cmd["datatype"]), cmd["value"], timestamp=p.timestamp))
            client.publish("spBv1.0/%s/NCMD/%s" % (args.group, args.node), p.SerializeToString(), qos=0)
        elif kind == "raw":
            client.publish(cmd["topic"], bytes.fromhex(cmd["hex"]), qos=0)
        elif kind == "state":
            client.publish(state_topic, state_payload(bool(cmd["online"])), qos=1, retain=True)
        record({"event": "sent", "cmd": cmd, "t": now_ms()})

    def tail_commands():
        offset = 0
        while not done.is_set():
            try:
                with open(args.commands) as f:
                    f.seek(offset)
                    text = f.read()
            except FileNotFoundError:
                text = ""
            complete = text[: text.rfind("\n") + 1]
            offset += len(complete.encode())
            for line in complete.splitlines():
                if line.strip():
                    command(json.loads(line))
            time.sleep(0.02)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    client.connect("127.0.0.1", args.port, keepalive=args.keepalive)
    client.loop_start()
    threading.Thread(target=tail_commands, daemon=True).start()
    done.wait()
    client.loop_stop()
    client.disconnect()
    out.close()


if __name__ == "__main__":
    main()
