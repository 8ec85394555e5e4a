#!/usr/bin/env bash
# The demo: installs what is needed, builds the agent, starts the quadruple-tank plant simulator (Modbus TCP on
# 127.0.0.1:5020), runs the agent on it with the demo configuration (state kept in ./demo-run), and shows the live
# tags. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
run="$root/demo-run"

./scripts/bootstrap.sh
echo "==> building edgepilot (release)"
swift build -c release -j 2 --product edgepilot
bin="$(swift build -c release --show-bin-path)/edgepilot"

mkdir -p "$run"
# The shipped config uses the installed paths (/run, /var/lib); the demo keeps everything in ./demo-run.
sed -e "s|/run/edgepilot/control.sock|$run/control.sock|" -e "s|/var/lib/edgepilot/history.db|$run/history.db|" \
  Config/demo-plant.yaml > "$run/edgepilot.yaml"
cp Config/demo-plant-registers.csv "$run/"
# Publish to a local broker as a Sparkplug B edge node, as the agent would to Ignition's MQTT Engine.
broker_port=1884
cat >> "$run/edgepilot.yaml" <<YAML

sparkplug:
  group_id: demo
  edge_node_id: edgepilot-demo
  brokers:
    - url: mqtt://127.0.0.1:$broker_port
  bdseq_path: $run/sparkplug.bdseq
YAML
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$broker_port" > "$run/mosquitto.conf"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "==> starting the plant simulator on 127.0.0.1:5020"
.venv/bin/python Simulators/quadtank_sim.py --host 127.0.0.1 --port 5020 --control-port 5021 --noise 0.02 \
  > "$run/simulator.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$run/simulator.log" 2>/dev/null && break; sleep 0.1; done

echo "==> starting a local MQTT broker on 127.0.0.1:$broker_port"
/usr/sbin/mosquitto -c "$run/mosquitto.conf" > "$run/mosquitto.log" 2>&1 &
pids+=($!)

echo "==> starting the agent (log: $run/agent.log)"
"$bin" run --config "$run/edgepilot.yaml" > "$run/agent.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S "$run/control.sock" ] && break; sleep 0.1; done
sleep 1

export EDGEPILOT_SOCKET="$run/control.sock"
"$bin" status
echo
echo "Try, in another terminal:  export EDGEPILOT_SOCKET=$run/control.sock"
echo "  $bin loops                          # the tanks loop under MPC"
echo "  $bin loop tanks setpoint tank1/level 14   # change a setpoint; watch it settle"
echo "  $bin history tank1/level --since 2m"
echo "  $bin mqtt status                     # the Sparkplug session on the local broker"
echo "  mosquitto_sub -p $broker_port -t 'spBv1.0/#' -v   # the raw Sparkplug traffic (protobuf payloads)"
echo
if [ -t 1 ]; then
  "$bin" tags --watch
else
  for _ in 1 2 3; do "$bin" tags; sleep 2; done
fi
