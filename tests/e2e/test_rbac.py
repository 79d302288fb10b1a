"""API keys and roles on every route: stored hashed, constant-time checked; /health stays open;
viewer < operator < admin, ingest is its own role; failures are audited and counted."""
import hashlib
import subprocess

from sntest import Daemon, SENTINELD, check, free_port

KEYS = {"ingest": "ingest-key-0123456789", "viewer": "viewer-key-0123456789",
        "operator": "operator-key-0123456789", "admin": "admin-key-0123456789"}
lines = "\n".join("api_key = %s-user:%s:sha256:%s" % (r, r, hashlib.sha256(k.encode()).hexdigest())
                  for r, k in KEYS.items())
d = Daemon(extra_core=lines).start()
try:
    ID = "0190f0e0-0000-7000-8000-000000000000"
    routes = [("GET", "/health/detailed", None, {"viewer", "operator", "admin"}),
              ("GET", "/metrics", None, {"viewer", "operator", "admin"}),
              ("GET", "/v1/incidents", None, {"viewer", "operator", "admin"}),
              ("GET", "/v1/incidents/" + ID, None, {"viewer", "operator", "admin"}),
              ("GET", "/v1/audit", None, {"viewer", "operator", "admin"}),
              ("POST", "/v1/incidents/%s/approve" % ID, "{}", {"operator", "admin"}),
              ("POST", "/v1/incidents/%s/reject" % ID, "{}", {"operator", "admin"}),
              ("POST", "/v1/events", '{"ts":1,"metric":"m","value":1}\n', {"ingest", "admin"}),
              ("GET", "/v1/notifications", None, {"viewer", "operator", "admin"}),
              ("GET", "/v1/silences", None, {"viewer", "operator", "admin"}),
              ("GET", "/v1/whoami", None, {"viewer", "operator", "admin"}),
              ("GET", "/v1/series/0000000000000001?from=0&to=1", None,
               {"viewer", "operator", "admin"}),
              ("POST", "/v1/silences", '{"matchers":{"service":"x"},"duration_s":60}',
               {"operator", "admin"}),
              ("POST", "/v1/silences/nope/expire", "{}", {"operator", "admin"})]
    st, _, _ = d.request("GET", "/health", key="")
    check(st == 200, "/health needs no key")
    for method, path, body, allowed in routes:
        st, _, hdr = d.request(method, path, body, key="")
        check(st == 401 and hdr.get("WWW-Authenticate") == "Bearer",
              "%s %s without a key: 401" % (method, path))
        st, _, _ = d.request(method, path, body, key="wrong-key-0123456789")
        check(st == 401, "%s %s with an unknown key: 401" % (method, path))
        for role, key in KEYS.items():
            st, _, _ = d.request(method, path, body, key=key)
            if role in allowed:
                check(st not in (401, 403), "%s %s as %s: allowed (%d)" % (method, path, role, st))
            else:
                check(st == 403, "%s %s as %s: 403 (%d)" % (method, path, role, st))
    st, _, _ = d.request("GET", "/v1/incidents", headers={"X-API-Key": KEYS["viewer"]}, key="")
    check(st == 200, "X-API-Key header accepted")
    st, who = d.json("GET", "/v1/whoami", key=KEYS["operator"])
    check(st == 200 and who == {"name": "operator-user", "role": "operator"},
          "/v1/whoami names the key and its role: %s" % who)
    st, _, hdr = d.request("GET", "/health", headers={"X-Request-ID": "abc-123"}, key="")
    check(hdr.get("X-Request-ID") == "abc-123", "X-Request-ID echoed")
    st, _, hdr = d.request("GET", "/health", key="")
    check(len(hdr.get("X-Request-ID", "")) == 36, "X-Request-ID generated")
    d.key = KEYS["admin"]
    # Audit appends are asynchronous: wait for the queue to reach the store.
    audit = d.wait_for(lambda: (lambda a: a if len(a["records"]) >= 2 * len(routes) else None)(
        d.json("GET", "/v1/audit?action=login_failed")[1]), what="login failures in the audit")
    check(len(audit["records"]) >= 2 * len(routes), "login failures audited")
    check(all("key" not in r["detail"] for r in audit["records"]), "no key text in the audit")
    st, raw, _ = d.request("GET", "/metrics")
    check(b"sentinel_http_auth_failures_total" in raw, "auth failures counted in /metrics")
    log = d.logtext()
    check(all(k not in log for k in KEYS.values()), "no key appears in the daemon log")
finally:
    d.cleanup()

# No key and a non-loopback listen: refused at start.
conf = Daemon(conf="[sentinel]\nlisten = 0.0.0.0:%d\n[input:events]\nplugin = http\n"
              "[detector:z]\nplugin = zscore\n"
              "[pipeline]\nedge = events -> z -> correlate\n" % free_port())
out = subprocess.run([SENTINELD, "-c", conf.conf_path], capture_output=True, text=True,
                     timeout=20)
check(out.returncode != 0 and "not loopback and no api_key" in out.stderr,
      "non-loopback listen without keys refused at start")
conf.cleanup()
