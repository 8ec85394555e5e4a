"""Independent Sparkplug B decoding for EdgePilot's tests.

Uses the Eclipse Tahu schema as compiled and shipped by the mqtt-spb-wrapper package (not EdgePilot's own .proto),
so a field-number or type mistake in our schema shows up as a mismatch. The module file is loaded directly: the
package's __init__ pulls in its MQTT entity classes, which we do not need.
"""

import importlib.util
import os
import struct


def load_tahu_schema():
    spec = importlib.util.find_spec("mqtt_spb_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "mqtt-spb-wrapper is not installed: .venv/bin/pip install --no-deps -r requirements-nodeps.txt"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "spb_protobuf", "sparkplug_b_pb2.py")
    module_spec = importlib.util.spec_from_file_location("tahu_sparkplug_b_pb2", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


pb = load_tahu_schema()
DT = pb.DataType


def _signed(value, bits):
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


_ARRAY_FORMATS = {
    DT.Int8Array: "b",
    DT.Int16Array: "h",
    DT.Int32Array: "i",
    DT.Int64Array: "q",
    DT.UInt8Array: "B",
    DT.UInt16Array: "H",
    DT.UInt32Array: "I",
    DT.UInt64Array: "Q",
    DT.FloatArray: "f",
    DT.DoubleArray: "d",
    DT.DateTimeArray: "Q",
}


def typed_value(datatype, field, raw):
    """Interprets a value field by the Sparkplug datatype, following the payload chapter's rules."""
    if field is None:
        return None
    if datatype in (DT.Int8, DT.Int16, DT.Int32):
        return _signed(raw, 32)
    if datatype == DT.Int64:
        return _signed(raw, 64)
    if datatype in _ARRAY_FORMATS:
        size = struct.calcsize("<" + _ARRAY_FORMATS[datatype])
        return list(struct.unpack("<%d%s" % (len(raw) // size, _ARRAY_FORMATS[datatype]), raw))
    if datatype == DT.BooleanArray:
        (count,) = struct.unpack("<I", raw[:4])
        bits = raw[4:]
        return [bool(bits[i // 8] & (0x80 >> (i % 8))) for i in range(count)]
    if datatype == DT.StringArray:
        return [s.decode("utf-8") for s in raw.split(b"\0")[:-1]]
    if isinstance(raw, bytes):
        return raw.hex()
    return raw


def _property_set(ps):
    out = {}
    for key, pv in zip(ps.keys, ps.values):
        field = pv.WhichOneof("value")
        out[key] = {
            "type": pv.type,
            "has_type": pv.HasField("type"),
            "is_null": pv.is_null,
            "field": field,
            "value": getattr(pv, field) if field else None,
        }
    return out


def _template(t):
    parameters = []
    for p in t.parameters:
        field = p.WhichOneof("value")
        parameters.append(
            {
                "name": p.name if p.HasField("name") else None,
                "type": p.type if p.HasField("type") else None,
                "field": field,
                "value": getattr(p, field) if field else None,
            }
        )
    return {
        "version": t.version if t.HasField("version") else None,
        "template_ref": t.template_ref if t.HasField("template_ref") else None,
        "is_definition": t.is_definition if t.HasField("is_definition") else None,
        "metrics": [metric_to_dict(m) for m in t.metrics],
        "parameters": parameters,
    }


def metric_to_dict(m):
    field = m.WhichOneof("value")
    raw = getattr(m, field) if field else None
    template = None
    if field == "template_value":
        template, raw = _template(raw), None
    return {
        "template": template,
        "name": m.name if m.HasField("name") else None,
        "alias": m.alias if m.HasField("alias") else None,
        "timestamp": m.timestamp if m.HasField("timestamp") else None,
        "datatype": m.datatype if m.HasField("datatype") else None,
        "datatype_name": DT.Name(m.datatype) if m.HasField("datatype") else None,
        "is_null": m.is_null,
        "is_historical": m.is_historical,
        "is_transient": m.is_transient,
        "field": field,
        "raw": raw.hex() if isinstance(raw, bytes) else raw,
        "value": typed_value(m.datatype, field, raw) if template is None else None,
        "properties": _property_set(m.properties) if m.HasField("properties") else None,
        # The two arrays of the PropertySet as sent: the map above would hide a mismatch.
        "property_counts": [len(m.properties.keys), len(m.properties.values)] if m.HasField("properties") else None,
    }


def payload_to_dict(data):
    p = pb.Payload()
    p.ParseFromString(data)
    return {
        "timestamp": p.timestamp if p.HasField("timestamp") else None,
        "seq": p.seq if p.HasField("seq") else None,
        "metrics": [metric_to_dict(m) for m in p.metrics],
    }


def metric(name, datatype, value=None, alias=None, timestamp=None):
    """Builds a Tahu Metric for commands sent by the test host."""
    m = pb.Payload.Metric()
    if name is not None:
        m.name = name
    if alias is not None:
        m.alias = alias
    if timestamp is not None:
        m.timestamp = timestamp
    m.datatype = datatype
    if value is None:
        m.is_null = True
    elif datatype == DT.Boolean:
        m.boolean_value = value
    elif datatype in (DT.Int8, DT.Int16, DT.Int32, DT.UInt8, DT.UInt16, DT.UInt32):
        m.int_value = value & 0xFFFFFFFF
    elif datatype in (DT.Int64, DT.UInt64, DT.DateTime):
        m.long_value = value & 0xFFFFFFFFFFFFFFFF
    elif datatype == DT.Float:
        m.float_value = value
    elif datatype == DT.Double:
        m.double_value = value
    elif datatype in (DT.String, DT.Text, DT.UUID):
        m.string_value = value
    else:
        raise ValueError("unsupported datatype %d" % datatype)
    return m
