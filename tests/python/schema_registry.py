#!/usr/bin/env python3
"""A schema registry for the interop tests: the subset of Confluent's REST API that
Confluent's own clients (confluent-kafka's AvroSerializer and AvroDeserializer) and
Switchboard use. No Confluent-compatible registry server installs here (Confluent's is a JVM
service outside Debian and PyPI), so the tests run this one; docs/operations.md says so.

    GET  /schemas/ids/{id}                  {"schema": "..."}
    GET  /subjects                          ["cc.inbound-value", ...]
    GET  /subjects/{subject}/versions       [1, 2]
    GET  /subjects/{subject}/versions/{v}   {"subject", "version", "id", "schema"} (v or latest)
    POST /subjects/{subject}/versions       {"schema": "..."} -> {"id": n}
    POST /subjects/{subject}                lookup -> {"subject", "version", "id", "schema"}

Ids are global, and the same schema (compared after JSON normalisation) gets the same id in
every subject, as Confluent's registry does. Optional HTTP basic auth. The state is kept in a
JSON file, so a registry stopped and started again (an outage) answers as before.

    schema_registry.py --port P --state FILE [--user U --password P] [--cert PEM --key PEM]

With --cert and --key it serves HTTPS.
"""
import argparse
import base64
import json
import os
import re
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class State:
    def __init__(self, path):
        self.path = path
        self.ids = {}  # id -> schema text
        self.subjects = {}  # subject -> [id per version]
        if os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            self.ids = {int(k): v for k, v in saved["ids"].items()}
            self.subjects = saved["subjects"]

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"ids": self.ids, "subjects": self.subjects}, f)
        os.replace(tmp, self.path)

    @staticmethod
    def normal(text):
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))

    def id_of(self, text):
        want = self.normal(text)
        for i, t in self.ids.items():
            if self.normal(t) == want:
                return i
        return None

    def register(self, subject, text):
        i = self.id_of(text)
        if i is None:
            i = max(self.ids, default=0) + 1
            self.ids[i] = text
        versions = self.subjects.setdefault(subject, [])
        if i not in versions:
            versions.append(i)
        self.save()
        return i


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    args = ap.parse_args()
    state = State(args.state)
    auth = None
    if args.user:
        token = base64.b64encode(f"{args.user}:{args.password}".encode()).decode()
        auth = "Basic " + token

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def error(self, status, code, message):
            self.answer(status, {"error_code": code, "message": message})

        def authorised(self):
            if auth and self.headers.get("Authorization") != auth:
                self.error(401, 40101, "Unauthorized")
                return False
            return True

        def version(self, subject, v):
            versions = state.subjects.get(subject)
            if not versions:
                return self.error(404, 40401, f"Subject '{subject}' not found.")
            n = len(versions) if v == "latest" else int(v)
            if not 1 <= n <= len(versions):
                return self.error(404, 40402, f"Version {v} not found.")
            i = versions[n - 1]
            self.answer(200, {"subject": subject, "version": n, "id": i, "schema": state.ids[i]})

        def do_GET(self):
            if not self.authorised():
                return
            path = self.path.split("?")[0]
            if m := re.fullmatch(r"/schemas/ids/(\d+)", path):
                i = int(m[1])
                if i not in state.ids:
                    return self.error(404, 40403, f"Schema {i} not found")
                return self.answer(200, {"schema": state.ids[i]})
            if path == "/subjects":
                return self.answer(200, sorted(state.subjects))
            if m := re.fullmatch(r"/subjects/([^/]+)/versions", path):
                versions = state.subjects.get(m[1])
                if versions is None:
                    return self.error(404, 40401, f"Subject '{m[1]}' not found.")
                return self.answer(200, list(range(1, len(versions) + 1)))
            if m := re.fullmatch(r"/subjects/([^/]+)/versions/(\d+|latest)", path):
                return self.version(m[1], m[2])
            self.error(404, 404, f"no route {path}")

        def do_POST(self):
            if not self.authorised():
                return
            path = self.path.split("?")[0]
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                text = body["schema"]
                json.loads(text)
            except (ValueError, KeyError, TypeError):
                return self.error(422, 42201, "Invalid schema")
            if body.get("schemaType", "AVRO") != "AVRO":
                return self.error(422, 42201, "only Avro schemas here")
            if m := re.fullmatch(r"/subjects/([^/]+)/versions", path):
                return self.answer(200, {"id": state.register(m[1], text)})
            if m := re.fullmatch(r"/subjects/([^/]+)", path):
                i = state.id_of(text)
                versions = state.subjects.get(m[1], [])
                if i is None or i not in versions:
                    return self.error(404, 40403, "Schema not found")
                return self.version(m[1], str(versions.index(i) + 1))
            self.error(404, 404, f"no route {path}")

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
