#!/usr/bin/env python3
"""Confluent's own Python client against Switchboard, for the interop tests.

    confluent_clients.py produce --bootstrap B --registry URL [--user U --password P] --input F
        Each line of F: {"topic", "partition", "key", "ts", "value" (the JSON mirror),
        "writer": "current" | "next" | "previous", "framing": "confluent" | "single_object"}.
        "confluent" records go through confluent-kafka's AvroSerializer (auto-registering the
        writer schema under <topic>-value); "single_object" records are Avro single-object
        bytes whose writer schema is registered under the same subject. "next" is the topic's
        schema with a field added (with a default) at the front and at the end, and a symbol
        added to every enum; "previous" is its schema in schemas/avro/history.

    confluent_clients.py consume --bootstrap B --registry URL [...] --topics T1,T2 --partitions N
        Reads every record of the topics with confluent-kafka's AvroDeserializer and prints
        one JSON line per record: {"topic", "partition", "offset", "key", "ts", "value" (as
        Switchboard's JSON mirror)}.
"""
import argparse
import datetime
import io
import json
import os
import struct
import sys

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "schemas", "avro")
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def schema_text(topic, writer):
    name = topic[len("cc."):]
    if writer == "previous":
        with open(os.path.join(ROOT, "history", f"{name}.1.avsc")) as f:
            return f.read()
    with open(os.path.join(ROOT, f"{name}.avsc")) as f:
        text = f.read()
    if writer == "current":
        return text
    schema = json.loads(text)

    def add_symbols(v):
        if isinstance(v, dict):
            if v.get("type") == "enum":
                v["symbols"].append("added_symbol")
            for x in v.values():
                add_symbols(x)
        elif isinstance(v, list):
            for x in v:
                add_symbols(x)

    add_symbols(schema)
    schema["fields"].insert(0, {"name": "trace_id", "type": ["null", "string"], "default": None})
    schema["fields"].append({"name": "hops", "type": "long", "default": 0})
    return json.dumps(schema)


class Names:
    """The named types of a schema by full name, for walking it."""

    def __init__(self, schema):
        self.types = {}
        self.collect(schema, "")

    @staticmethod
    def full(name, ns):
        return name if "." in name or not ns else f"{ns}.{name}"

    def collect(self, s, ns):
        if isinstance(s, list):
            for b in s:
                self.collect(b, ns)
        elif isinstance(s, dict):
            t = s["type"]
            if t in ("record", "enum", "fixed"):
                full = self.full(s["name"], s.get("namespace", ns))
                self.types[full] = (s, full.rpartition(".")[0])
                if t == "record":
                    for f in s["fields"]:
                        self.collect(f["type"], full.rpartition(".")[0])
            elif t == "array":
                self.collect(s["items"], ns)
            elif t == "map":
                self.collect(s["values"], ns)

    def resolve(self, s, ns):
        """(schema, namespace inside it, full name or None)."""
        if isinstance(s, str):
            if s in PRIMITIVES:
                return s, ns, None
            full = self.full(s, ns)
            t, inner = self.types[full]
            return t, inner, full
        if isinstance(s, dict) and s["type"] in ("record", "enum", "fixed"):
            full = self.full(s["name"], s.get("namespace", ns))
            return s, full.rpartition(".")[0], full
        if isinstance(s, dict) and s["type"] in PRIMITIVES:
            return s["type"], ns, None
        return s, ns, None


def nullable(u):
    return len(u) == 2 and "null" in u


def to_avro(v, s, ns, names):
    """Switchboard's JSON mirror -> what fastavro writes (unions in tuple notation)."""
    s, ns, full = names.resolve(s, ns)
    if isinstance(s, list):
        if v is None:
            return None
        if nullable(s):
            other = [b for b in s if b != "null"][0]
            return to_avro(v, other, ns, names)
        ((tag, inner),) = v.items()
        for b in s:
            bs, bns, bfull = names.resolve(b, ns)
            if bfull and bfull.rpartition(".")[2] == tag:
                return (bfull, to_avro(inner, b, ns, names))
        raise ValueError(f"no branch {tag}")
    if s == "bytes":
        return v.encode("latin-1")
    if isinstance(s, str):
        return v
    t = s["type"]
    if t == "record":
        return {f["name"]: to_avro(v[f["name"]], f["type"], ns, names)
                for f in s["fields"] if f["name"] in v}
    if t == "array":
        return [to_avro(x, s["items"], ns, names) for x in v]
    if t == "map":
        return {k: to_avro(x, s["values"], ns, names) for k, x in v.items()}
    return v  # enum


def from_avro(v, s, ns, names):
    """What fastavro reads (return_record_name) -> Switchboard's JSON mirror."""
    if isinstance(v, datetime.datetime):
        # fastavro reads a timestamp-millis as a datetime; the mirror keeps the ms.
        epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        return (v - epoch) // datetime.timedelta(milliseconds=1)
    s, ns, full = names.resolve(s, ns)
    if isinstance(s, list):
        if v is None:
            return None
        if nullable(s):
            other = [b for b in s if b != "null"][0]
            return from_avro(v, other, ns, names)
        if isinstance(v, tuple):
            tag, inner = v
            for b in s:
                bs, bns, bfull = names.resolve(b, ns)
                if bfull == tag:
                    return {tag.rpartition(".")[2]: from_avro(inner, b, ns, names)}
        raise ValueError(f"a union value without its branch name: {v!r}")
    if s == "bytes":
        return v.decode("latin-1")
    if isinstance(s, str):
        return v
    t = s["type"]
    if t == "record":
        return {f["name"]: from_avro(v[f["name"]], f["type"], ns, names) for f in s["fields"]}
    if t == "array":
        return [from_avro(x, s["items"], ns, names) for x in v]
    if t == "map":
        return {k: from_avro(x, s["values"], ns, names) for k, x in sorted(v.items())}
    return v


def registry(args):
    conf = {"url": args.registry}
    if args.user:
        conf["basic.auth.user.info"] = f"{args.user}:{args.password}"
    if args.ca:
        conf["ssl.ca.location"] = args.ca
    return SchemaRegistryClient(conf)


def produce(args):
    client = registry(args)
    producer = Producer({"bootstrap.servers": args.bootstrap, "batch.num.messages": 1,
                         "linger.ms": 0, "enable.idempotence": True})
    serializers = {}
    singles = {}
    with open(args.input) as f:
        lines = [json.loads(l) for l in f if l.strip()]
    for r in lines:
        topic, writer = r["topic"], r["writer"]
        text = schema_text(topic, writer)
        names = Names(json.loads(text))
        value = to_avro(r["value"], json.loads(text), "", names)
        if r["framing"] == "confluent":
            key = (topic, writer)
            if key not in serializers:
                serializers[key] = AvroSerializer(client, text, conf={"auto.register.schemas": True})
            payload = serializers[key](value, SerializationContext(topic, MessageField.VALUE))
        else:
            if (topic, writer) not in singles:
                client.register_schema(f"{topic}-value", Schema(text, "AVRO"))
                parsed = fastavro.parse_schema(json.loads(text))
                # fastavro gives the fingerprint's bytes little-endian, as the header has them.
                fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
                singles[(topic, writer)] = (parsed, b"\xc3\x01" + fp)
            parsed, header = singles[(topic, writer)]
            out = io.BytesIO()
            fastavro.schemaless_writer(out, parsed, value)
            payload = header + out.getvalue()
        producer.produce(topic, value=payload, key=r.get("key"), partition=r["partition"],
                         timestamp=r["ts"])
        producer.poll(0)
    if producer.flush(60) != 0:
        sys.exit("not every record was delivered")


def consume(args):
    client = registry(args)
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "interop-reader",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "fetch.wait.max.ms": 10})
    deserializer = AvroDeserializer(client, return_record_name=True)
    schemas = {}
    for topic in args.topics.split(","):
        for p in range(args.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            pos = low
            while pos < high:
                m = consumer.poll(5)
                if m is None:
                    position = consumer.position([TopicPartition(topic, p)])[0].offset
                    if position >= high:
                        break
                    continue
                if m.error():
                    sys.exit(f"consume {topic}/{p}: {m.error()}")
                pos = m.offset() + 1
                raw = m.value()
                value = deserializer(raw, SerializationContext(topic, MessageField.VALUE))
                schema_id = struct.unpack(">I", raw[1:5])[0]
                if schema_id not in schemas:
                    text = client.get_schema(schema_id).schema_str
                    schemas[schema_id] = (json.loads(text), Names(json.loads(text)))
                schema, names = schemas[schema_id]
                key = m.key().decode() if m.key() is not None else None
                print(json.dumps({"topic": topic, "partition": p, "offset": m.offset(),
                                  "key": key, "ts": m.timestamp()[1],
                                  "value": from_avro(value, schema, "", names)}))
    consumer.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["produce", "consume"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--ca", help="PEM CA certificates that verify an https registry")
    ap.add_argument("--input")
    ap.add_argument("--topics")
    ap.add_argument("--partitions", type=int, default=1)
    args = ap.parse_args()
    produce(args) if args.command == "produce" else consume(args)


if __name__ == "__main__":
    main()
