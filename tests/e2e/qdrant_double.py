"""A Qdrant REST test double (standard library only), following the OpenAPI excerpt in
shared/specs/qdrant-openapi-excerpt.json (Qdrant v1.19): the subset Sentinel and its tests use,
with Qdrant's shapes, status codes and error envelope.

  collections  GET /collections, PUT/GET/DELETE /collections/{c}, GET /collections/{c}/exists,
               PUT /collections/{c}/index
  points       PUT /collections/{c}/points (PointsList or PointsBatch; ?wait=true|false),
               POST /collections/{c}/points (get by ids), .../points/delete, .../points/count,
               .../points/scroll
  search       POST /collections/{c}/points/search (legacy: result is the bare list) and
               POST /collections/{c}/points/query (result {"points": [...]})
  health       GET /healthz, /readyz, /livez (no key needed)

Semantics kept from Qdrant: point ids are unsigned integers or UUIDs (anything else is a 400);
Cosine collections normalise vectors on insert and score by dot product (higher is closer), Dot
scores the raw dot product, Euclid and Manhattan score the distance (lower is closer, and
score_threshold is an upper bound there); a vector of the wrong size is a 400; filters with
must / should / must_not / min_should, conditions match (value, any, except, text), range,
is_empty, is_null, has_id, values_count and nested filters, keys with dots and "[]"; an array
payload value matches when any element does. Every answer is {"result", "status": "ok",
"time"}; errors are {"status": {"error": "..."}, "time"} with 400/404/409, and 401 with a plain
text body when an API key is configured and the request has neither "api-key: KEY" nor
"Authorization: Bearer KEY".

Test controls (no key needed), also reachable in-process on the QdrantDouble object:
  GET  /__double/requests          every request so far: method, path, query, body, authorized
  POST /__double/fail              {"status": 429|503|..., "count": n, "retry_after": s,
                                    "match": "substring of the path", "method": "PUT"}
  POST /__double/reset             forget collections, requests and failures

Run alone:  python3 qdrant_double.py [--port N] [--port-file FILE] [--api-key KEY]
"""
import argparse
import json
import math
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DISTANCES = ("Cosine", "Dot", "Euclid", "Manhattan")


class QdrantError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def _norm_id(pid):
    """The canonical form of a point id, or QdrantError(400)."""
    if isinstance(pid, bool):
        pass
    elif isinstance(pid, int) and 0 <= pid < 2 ** 64:
        return pid
    elif isinstance(pid, str):
        try:
            return str(uuid.UUID(pid))
        except ValueError:
            pass
    raise QdrantError(400, "Format error in JSON body: value %s is not a valid point ID, valid "
                           "values are either an unsigned integer or a UUID" % json.dumps(pid))


def _values(payload, key):
    """Every value at @key (dots for nesting, "[]" to flatten arrays), flattened once more at
    the end like Qdrant does for arrays of values."""
    cur = [payload]
    for part in key.split("."):
        flat = part.endswith("[]")
        name = part[:-2] if flat else part
        nxt = []
        for c in cur:
            if isinstance(c, dict) and name in c:
                v = c[name]
                if flat and isinstance(v, list):
                    nxt.extend(v)
                else:
                    nxt.append(v)
        cur = nxt
    out = []
    for v in cur:
        if isinstance(v, list):
            out.extend(v)
        else:
            out.append(v)
    return out


def _same(a, b):
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float))
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


class Collection:
    def __init__(self, name, size, distance):
        self.name = name
        self.size = size
        self.distance = distance
        self.points = {}  # id -> {"vector", "payload", "version"}
        self.payload_schema = {}
        self.op = 0

    def info(self):
        return {
            "status": "green", "optimizer_status": "ok",
            "indexed_vectors_count": 0, "points_count": len(self.points),
            "segments_count": 1,
            "config": {
                "params": {"vectors": {"size": self.size, "distance": self.distance},
                           "shard_number": 1, "replication_factor": 1,
                           "write_consistency_factor": 1, "on_disk_payload": True},
                "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000,
                                "max_indexing_threads": 0, "on_disk": False},
                "optimizer_config": {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000,
                                     "default_segment_number": 0, "flush_interval_sec": 5},
                "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
                "quantization_config": None,
            },
            "payload_schema": {k: {"data_type": v, "points": len(self.points)}
                               for k, v in self.payload_schema.items()},
        }

    def prepare(self, vector):
        if isinstance(vector, dict):
            raise QdrantError(400, "Wrong input: Not existing vector name error: %s"
                              % ", ".join(vector))
        if not isinstance(vector, list) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector):
            raise QdrantError(400, "Format error in JSON body: vector must be a list of numbers")
        if len(vector) != self.size:
            raise QdrantError(400, "Wrong input: Vector dimension error: expected dim: %d, got %d"
                              % (self.size, len(vector)))
        v = [float(x) for x in vector]
        if self.distance == "Cosine":
            n = math.sqrt(sum(x * x for x in v))
            if n > 0:
                v = [x / n for x in v]
        return v

    def score(self, q, v):
        if self.distance in ("Cosine", "Dot"):
            return sum(a * b for a, b in zip(q, v))
        if self.distance == "Euclid":
            return math.sqrt(sum((a - b) ** 2 for a, b in zip(q, v)))
        return sum(abs(a - b) for a, b in zip(q, v))

    def closer_is_higher(self):
        return self.distance in ("Cosine", "Dot")

    # ---- filters ----

    def matches(self, pid, point, flt):
        if flt is None:
            return True
        if not isinstance(flt, dict):
            raise QdrantError(400, "Format error in JSON body: filter must be an object")
        unknown = set(flt) - {"must", "should", "must_not", "min_should"}
        if unknown:
            raise QdrantError(400, "Format error in JSON body: unknown field `%s`"
                              % sorted(unknown)[0])

        def lst(x):
            return [] if x is None else x if isinstance(x, list) else [x]

        if not all(self.cond(pid, point, c) for c in lst(flt.get("must"))):
            return False
        should = lst(flt.get("should"))
        if should and not any(self.cond(pid, point, c) for c in should):
            return False
        if any(self.cond(pid, point, c) for c in lst(flt.get("must_not"))):
            return False
        ms = flt.get("min_should")
        if ms:
            hit = sum(1 for c in lst(ms.get("conditions")) if self.cond(pid, point, c))
            if hit < ms.get("min_count", 1):
                return False
        return True

    def cond(self, pid, point, c):
        if not isinstance(c, dict):
            raise QdrantError(400, "Format error in JSON body: condition must be an object")
        payload = point["payload"] or {}
        if "has_id" in c:
            return pid in {_norm_id(x) for x in c["has_id"]}
        if set(c) & {"must", "should", "must_not", "min_should"}:
            return self.matches(pid, point, c)
        if "is_empty" in c and isinstance(c["is_empty"], dict):
            vals = _values(payload, c["is_empty"]["key"])
            return all(v is None for v in vals)
        if "is_null" in c and isinstance(c["is_null"], dict):
            vals = _values(payload, c["is_null"]["key"])
            return bool(vals) and any(v is None for v in vals)
        if "nested" in c:
            n = c["nested"]
            for item in _values(payload, n["key"]):
                if isinstance(item, dict) and self.matches(
                        pid, {"payload": item}, n.get("filter")):
                    return True
            return False
        key = c.get("key")
        if not isinstance(key, str):
            raise QdrantError(400, "Format error in JSON body: condition without a key")
        vals = [v for v in _values(payload, key) if v is not None]
        if "match" in c:
            m = c["match"]
            if "value" in m:
                return any(_same(v, m["value"]) for v in vals)
            if "any" in m:
                return any(_same(v, x) for v in vals for x in m["any"])
            if "except" in m:
                return bool(vals) and not any(_same(v, x) for v in vals for x in m["except"])
            if "text" in m:
                return any(isinstance(v, str) and m["text"] in v for v in vals)
            raise QdrantError(400, "Format error in JSON body: unknown match")
        if "range" in c:
            r = c["range"]
            nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
            return any(("gt" not in r or r["gt"] is None or v > r["gt"])
                       and ("gte" not in r or r["gte"] is None or v >= r["gte"])
                       and ("lt" not in r or r["lt"] is None or v < r["lt"])
                       and ("lte" not in r or r["lte"] is None or v <= r["lte"]) for v in nums)
        if "values_count" in c:
            r, n = c["values_count"], len(vals)
            return (("gt" not in r or n > r["gt"]) and ("gte" not in r or n >= r["gte"])
                    and ("lt" not in r or n < r["lt"]) and ("lte" not in r or n <= r["lte"]))
        if c.get("is_empty") is True:
            return not vals
        if c.get("is_null") is True:
            return any(v is None for v in _values(payload, key))
        raise QdrantError(400, "Format error in JSON body: unsupported condition %s"
                          % json.dumps(c)[:80])

    # ---- output ----

    @staticmethod
    def select_payload(payload, wp):
        if wp is None or wp is False:
            return None
        payload = payload or {}
        if wp is True:
            return payload
        if isinstance(wp, list):
            return {k: v for k, v in payload.items() if k in wp}
        if isinstance(wp, dict) and "include" in wp:
            return {k: v for k, v in payload.items() if k in wp["include"]}
        if isinstance(wp, dict) and "exclude" in wp:
            return {k: v for k, v in payload.items() if k not in wp["exclude"]}
        return payload

    def record(self, pid, p, wp, wv, score=None):
        out = {"id": pid}
        if score is not None:
            out["version"] = p["version"]
            out["score"] = score
        out["payload"] = self.select_payload(p["payload"], wp)
        out["vector"] = p["vector"] if wv else None
        if score is None:
            out["shard_key"] = None
            out["order_value"] = None
        return out


class QdrantDouble:
    """In-process Qdrant double: start(), .url, .requests, fail(...), stop()."""

    def __init__(self, api_key=None, port=0, host="127.0.0.1"):
        self.api_key = api_key
        self.lock = threading.RLock()
        self.collections = {}
        self.requests = []
        self.failures = []
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://%s:%d" % (host, self.port)
        self.thread = None

    # ---- control ----

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def fail(self, status, count=1, retry_after=None, match="", method=None):
        """The next @count requests whose path contains @match (and method, if given) answer
        @status with Qdrant's error envelope (and Retry-After: @retry_after)."""
        with self.lock:
            self.failures.append({"status": status, "count": count, "retry_after": retry_after,
                                  "match": match, "method": method})

    def reset(self):
        with self.lock:
            self.collections.clear()
            self.requests.clear()
            self.failures.clear()

    def requests_to(self, method, path_part):
        with self.lock:
            return [r for r in self.requests
                    if r["method"] == method and path_part in r["path"]]

    # ---- routing ----

    def _injected(self, method, path):
        with self.lock:
            for f in self.failures:
                if f["count"] > 0 and f["match"] in path and (
                        not f["method"] or f["method"] == method):
                    f["count"] -= 1
                    return f
        return None

    def route(self, method, path, query, body):
        """(status, result) or QdrantError."""
        parts = [p for p in path.split("/") if p]
        wait = query.get("wait", ["false"])[0] == "true"
        with self.lock:
            if parts == ["collections"] and method == "GET":
                return 200, {"collections": [{"name": n} for n in sorted(self.collections)]}
            if len(parts) < 2 or parts[0] != "collections":
                raise QdrantError(404, "Not found")
            name = parts[1]
            rest = parts[2:]
            coll = self.collections.get(name)
            if not rest:
                if method == "PUT":
                    return 200, self._create(name, body)
                if method == "DELETE":
                    return 200, self.collections.pop(name, None) is not None
                if method == "GET":
                    return 200, self._need(name).info()
            if rest == ["exists"] and method == "GET":
                return 200, {"exists": coll is not None}
            coll = self._need(name)
            if rest == ["index"] and method == "PUT":
                fname = (body or {}).get("field_name")
                schema = (body or {}).get("field_schema")
                if not isinstance(fname, str):
                    raise QdrantError(400, "Format error in JSON body: missing field `field_name`")
                if isinstance(schema, dict):
                    schema = schema.get("type")
                coll.payload_schema[fname] = schema or "keyword"
                coll.op += 1
                return 200, {"operation_id": coll.op, "status": "completed"}
            if rest == ["points"] and method == "PUT":
                return 200, self._upsert(coll, body, wait)
            if rest == ["points"] and method == "POST":
                ids = [_norm_id(x) for x in (body or {}).get("ids", [])]
                return 200, [coll.record(i, coll.points[i], body.get("with_payload", True),
                                         body.get("with_vector", False))
                             for i in ids if i in coll.points]
            if rest == ["points", "delete"] and method == "POST":
                body = body or {}
                if "points" in body:
                    gone = [_norm_id(x) for x in body["points"]]
                else:
                    gone = [i for i, p in coll.points.items()
                            if coll.matches(i, p, body.get("filter"))]
                for i in gone:
                    coll.points.pop(i, None)
                coll.op += 1
                return 200, {"operation_id": coll.op,
                             "status": "completed" if wait else "acknowledged"}
            if rest == ["points", "count"] and method == "POST":
                flt = (body or {}).get("filter")
                return 200, {"count": sum(1 for i, p in coll.points.items()
                                          if coll.matches(i, p, flt))}
            if rest == ["points", "scroll"] and method == "POST":
                return 200, self._scroll(coll, body or {})
            if rest == ["points", "search"] and method == "POST":
                return 200, self._search(coll, body or {}, "vector")
            if rest == ["points", "query"] and method == "POST":
                return 200, {"points": self._search(coll, body or {}, "query")}
        raise QdrantError(404, "Not found")

    def _need(self, name):
        coll = self.collections.get(name)
        if coll is None:
            raise QdrantError(404, "Not found: Collection `%s` doesn't exist!" % name)
        return coll

    def _create(self, name, body):
        if name in self.collections:
            raise QdrantError(409, "Wrong input: Collection `%s` already exists!" % name)
        vectors = (body or {}).get("vectors")
        if not isinstance(vectors, dict) or "size" not in vectors:
            raise QdrantError(400, "Wrong input: only a single unnamed vector "
                                   "{\"size\", \"distance\"} is supported by this double")
        size, dist = vectors.get("size"), vectors.get("distance")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise QdrantError(400, "Format error in JSON body: vectors.size must be >= 1")
        if dist not in DISTANCES:
            raise QdrantError(400, "Format error in JSON body: unknown variant `%s`, expected one "
                                   "of `Cosine`, `Euclid`, `Dot`, `Manhattan`" % dist)
        self.collections[name] = Collection(name, size, dist)
        return True

    def _upsert(self, coll, body, wait):
        body = body or {}
        if "points" in body:
            items = body["points"]
            if not isinstance(items, list):
                raise QdrantError(400, "Format error in JSON body: points must be a list")
            rows = [(p.get("id"), p.get("vector"), p.get("payload")) for p in items]
        elif "batch" in body:
            b = body["batch"]
            ids, vecs = b.get("ids", []), b.get("vectors", [])
            pls = b.get("payloads") or [None] * len(ids)
            if not (len(ids) == len(vecs) == len(pls)):
                raise QdrantError(400, "Wrong input: batch lengths differ")
            rows = list(zip(ids, vecs, pls))
        else:
            raise QdrantError(400, "Format error in JSON body: expected `points` or `batch`")
        prepared = []
        for pid, vec, payload in rows:  # validate all first: the operation is all or nothing
            if payload is not None and not isinstance(payload, dict):
                raise QdrantError(400, "Format error in JSON body: payload must be an object")
            prepared.append((_norm_id(pid), coll.prepare(vec), payload))
        coll.op += 1
        for pid, vec, payload in prepared:
            coll.points[pid] = {"vector": vec, "payload": payload or {}, "version": coll.op}
        return {"operation_id": coll.op, "status": "completed" if wait else "acknowledged"}

    def _search(self, coll, body, field):
        q = body.get(field)
        if field == "query" and isinstance(q, dict) and "nearest" in q:
            q = q["nearest"]
        if isinstance(q, dict) and "vector" in q:  # NamedVectorStruct {"name", "vector"}
            q = q["vector"]
        if q is None:
            raise QdrantError(400, "Format error in JSON body: missing field `%s`" % field)
        limit = body.get("limit", 10 if field == "query" else None)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise QdrantError(400, "Format error in JSON body: missing or invalid field `limit`")
        offset = body.get("offset") or 0
        thr = body.get("score_threshold")
        qv = coll.prepare(q)
        higher = coll.closer_is_higher()
        hits = []
        for pid, p in coll.points.items():
            if not coll.matches(pid, p, body.get("filter")):
                continue
            s = coll.score(qv, p["vector"])
            if thr is not None and ((higher and s < thr) or (not higher and s > thr)):
                continue
            hits.append((s, pid, p))
        hits.sort(key=lambda h: (-h[0] if higher else h[0], str(h[1])))
        hits = hits[offset:offset + limit]
        return [coll.record(pid, p, body.get("with_payload", False),
                            body.get("with_vector", False), score=s) for s, pid, p in hits]

    def _scroll(self, coll, body):
        limit = body.get("limit", 10)
        ids = sorted(coll.points, key=lambda i: (isinstance(i, str), str(i) if isinstance(i, str)
                                                 else i))
        start = body.get("offset")
        if start is not None:
            start = _norm_id(start)
            ids = [i for i in ids if (isinstance(i, str), str(i)) >= (isinstance(start, str),
                                                                       str(start))]
        ids = [i for i in ids if coll.matches(i, coll.points[i], body.get("filter"))]
        page, nxt = ids[:limit], (ids[limit] if len(ids) > limit else None)
        return {"points": [coll.record(i, coll.points[i], body.get("with_payload", True),
                                       body.get("with_vector", False)) for i in page],
                "next_page_offset": nxt}

    # ---- HTTP ----

    def _handler(self):
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def _send(self, status, body, ctype="application/json", headers=None):
                data = body if isinstance(body, bytes) else body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _json(self, status, doc, headers=None):
                self._send(status, json.dumps(doc), headers=headers)

            def _authorized(self):
                if not double.api_key:
                    return True
                if self.headers.get("api-key") == double.api_key:
                    return True
                return self.headers.get("Authorization") == "Bearer " + double.api_key

            def _handle(self, method):
                t0 = time.time()
                split = urlsplit(self.path)
                path, query = split.path, parse_qs(split.query)
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body, bad_json = None, None
                if raw:
                    try:
                        body = json.loads(raw)
                    except ValueError as e:
                        bad_json = str(e)
                if path.startswith("/__double/"):
                    return self._control(method, path, body)
                if path in ("/healthz", "/readyz", "/livez"):
                    return self._send(200, "healthz check passed", "text/plain")
                authorized = self._authorized()
                with double.lock:
                    double.requests.append({"method": method, "path": path,
                                            "query": split.query, "body": body,
                                            "authorized": authorized, "ts": t0})
                if not authorized:
                    return self._send(401, "Must provide an API key or an Authorization bearer "
                                           "token", "text/plain")
                f = double._injected(method, path)
                if f:
                    hdr = {"Retry-After": str(f["retry_after"])} if f["retry_after"] else None
                    msg = {429: "Too many requests: rate limit exceeded",
                           503: "Service unavailable: injected by the test double"}.get(
                        f["status"], "Service internal error: injected by the test double")
                    return self._json(f["status"], {"status": {"error": msg},
                                                    "time": time.time() - t0}, headers=hdr)
                if bad_json:
                    return self._json(400, {"status": {"error": "Format error in JSON body: "
                                                                + bad_json},
                                            "time": time.time() - t0})
                try:
                    status, result = double.route(method, path, query, body)
                    self._json(status, {"result": result, "status": "ok",
                                        "time": time.time() - t0})
                except QdrantError as e:
                    self._json(e.status, {"status": {"error": e.message},
                                          "time": time.time() - t0})
                except (AttributeError, KeyError, TypeError, ValueError) as e:
                    self._json(400, {"status": {"error": "Format error in JSON body: %s" % e},
                                     "time": time.time() - t0})

            def _control(self, method, path, body):
                if path == "/__double/requests" and method == "GET":
                    with double.lock:
                        return self._json(200, double.requests)
                if path == "/__double/fail" and method == "POST":
                    b = body or {}
                    double.fail(b.get("status", 503), b.get("count", 1), b.get("retry_after"),
                                b.get("match", ""), b.get("method"))
                    return self._json(200, {"ok": True})
                if path == "/__double/reset" and method == "POST":
                    double.reset()
                    return self._json(200, {"ok": True})
                return self._json(404, {"status": {"error": "Not found"}})

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

            def do_DELETE(self):
                self._handle("DELETE")

        return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--api-key", default=os.environ.get("QDRANT_API_KEY"))
    a = ap.parse_args()
    d = QdrantDouble(api_key=a.api_key, port=a.port)
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write(str(d.port))
        os.replace(a.port_file + ".tmp", a.port_file)
    print("qdrant double on %s" % d.url, flush=True)
    try:
        d.server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
