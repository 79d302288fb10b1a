"""SIGHUP reload, live: a broken configuration is refused and the running one stays; a valid one
is applied in place (same process, same open incidents): new inputs and their routes appear,
removed ones disappear, API keys and executor settings switch, unchanged instances carry over;
changes that need a restart (detectors, stores, listen) are refused with the reason."""
import hashlib
import json
import signal
import time

from sntest import Daemon, check, scenario

MORE_INPUT = """
[input:more]
plugin = http
"""


def reloads(d, n, key=None):
    """Wait for the n-th config_reload audit record and return it."""
    def got():
        st, body = d.json("GET", "/v1/audit?action=config_reload", key=key)
        recs = body["records"] if st == 200 else []
        return recs if len(recs) >= n else None
    return d.wait_for(got, what="reload %d to be audited" % n)[n - 1]


def rewrite(d, text):
    with open(d.conf_path, "w") as f:
        f.write(text)
    d.proc.send_signal(signal.SIGHUP)


d = Daemon().start()
try:
    good = open(d.conf_path).read()
    pid = d.proc.pid

    rewrite(d, good.replace("threshold = 4", "treshold = 4"))
    rec = reloads(d, 1)
    check(rec["detail"]["result"] == "refused", "broken config refused on SIGHUP")
    check(any("did you mean 'threshold'" in e for e in rec["detail"]["errors"]),
          "the audit record carries the error")
    check(d.request("GET", "/health")[0] == 200, "the daemon keeps serving the old graph")
    check("did you mean 'threshold'" in d.logtext(), "the reload error names the typo")

    rewrite(d, good)
    rec = reloads(d, 2)
    check(rec["detail"]["result"] == "applied" and rec["detail"]["added"] == []
          and rec["detail"]["replaced"] == [] and rec["detail"]["kept"] >= 8,
          "an unchanged config is applied with every instance kept: %s" % rec["detail"])

    # A new input appears with its route, wired into the graph.
    st, _, _ = d.request("POST", "/hooks/more/events", '{"ts":1,"metric":"m","value":1}\n')
    check(st == 404, "no /hooks/more route before the reload (%d)" % st)
    with_more = good.replace("[notifier:log]", MORE_INPUT + "\n[notifier:log]").replace(
        "edge = events -> latency", "edge = events -> latency\nedge = more -> latency")
    rewrite(d, with_more)
    rec = reloads(d, 3)
    check(rec["detail"]["result"] == "applied" and rec["detail"]["added"] == ["input:more"],
          "the new input is added live: %s" % rec["detail"])
    st, body, _ = d.request("POST", "/hooks/more/events",
                            '{"ts":1795600800000,"metric":"m","value":1}\n')
    check(st == 200, "the new input's route answers (%d %r)" % (st, body))
    st, health = d.json("GET", "/health/detailed")
    check(health["instances"]["input:more"]["ok"], "the new input is started and healthy")

    # Keys and executor settings switch live; the executor is replaced, not duplicated.
    key = "reload-admin-key-0123456789"
    keyed = with_more.replace("group_wait = 60", "group_wait = 60\napi_key = ops:admin:sha256:" +
                              hashlib.sha256(key.encode()).hexdigest())
    keyed = keyed.replace("max_per_minute = 60", "max_per_minute = 60\ndry_run = true")
    rewrite(d, keyed)
    d.key = key
    rec = reloads(d, 4, key=key)
    check(rec["detail"]["result"] == "applied"
          and rec["detail"]["replaced"] == ["executor:mock"],
          "changed executor settings replace the executor: %s" % rec["detail"])
    st, _, _ = d.request("GET", "/v1/incidents", key="")
    check(st == 401, "a key added by reload is required at once (%d)" % st)
    check(d.request("GET", "/v1/incidents", key=key)[0] == 200, "the new key is accepted")

    d.post_file(scenario("checkout-deploy"))
    inc = d.wait_for(lambda: [i for i in d.incidents() if "checkout" in i["services"]
                              and i["state"] in ("resolved", "escalated", "closed")],
                     timeout=60, what="the checkout incident to close")[0]
    st, doc = d.json("GET", "/v1/incidents/" + inc["id"])
    events = [t["event"] for t in doc["timeline"]]
    check("dry_run" in events and "executed" not in events,
          "dry_run set by reload applies to the next incident: %s" % events)

    # Restart-only changes are refused with the reason; the running graph stays.
    rewrite(d, keyed.replace("threshold = 4", "threshold = 5"))
    rec = reloads(d, 5, key=key)
    check(rec["detail"]["result"] == "restart needed"
          and "[detector:latency]" in rec["detail"]["reason"],
          "a detector change needs a restart: %s" % rec["detail"])

    # Removing the input drops its route.
    rewrite(d, keyed.replace(MORE_INPUT, "").replace("edge = more -> latency\n", ""))
    rec = reloads(d, 6, key=key)
    check(rec["detail"]["removed"] == ["input:more"], "the input is removed: %s" % rec["detail"])
    st, _, _ = d.request("POST", "/hooks/more/events", '{"ts":1,"metric":"m","value":1}\n')
    check(st == 404, "its route is gone (%d)" % st)
    st, metrics, _ = d.request("GET", "/metrics")
    check(b'config_reloads_total{result="applied"} 4' in metrics,
          "reloads are counted by result")
    time.sleep(0.1)
    check(d.proc.poll() is None and d.proc.pid == pid, "the same process kept running")
finally:
    d.cleanup()
