"""End to end: a real sentineld with the `pagerduty` notifier against the Events API v2 TEST
DOUBLE (pagerduty_double.py; PagerDuty itself cannot be reached from the tests).

- checkout-deploy (auto-approved): the first trigger is throttled (429, Retry-After: 1) and
  retried after the wait with the same body; acknowledge and resolve follow in order.
- payments-memory (waits for a human): trigger on opened, re-trigger on approval_needed (same
  alert, no second page), approve through POST /v1/incidents/ID/approve -> acknowledge ->
  resolve, all with dedup_key "sentinel-<id>"; the trigger carries severity, custom details and
  the console link.
- a second instance with an invalid routing key: every event is answered 400 once and never
  retried; the log carries the double's error message and neither routing key.
"""
import json
import os
import time

from pagerduty_double import PagerDutyDouble, self_test
from sntest import BASE_CONF, Daemon, check, scenario

GOOD = "0123456789abcdef0123456789abcdef"  # 32 characters, like an integration key
BAD = "not-a-valid-routing-key"

self_test()
check(True, "the test double accepts the spec's example events and answers like the spec")

pd = PagerDutyDouble().start()
os.environ["SN_TEST_PD_KEY"] = GOOD
os.environ["SN_TEST_PD_BAD_KEY"] = BAD
extra = """
[notifier:pagerduty]
plugin = pagerduty
routing_key = ${{env:SN_TEST_PD_KEY}}
api_url = %s
console_url = http://127.0.0.1:{port}/ui
retry_base = 200ms

[notifier:pd_bad]
plugin = pagerduty
routing_key = ${{env:SN_TEST_PD_BAD_KEY}}
api_url = %s
retry_base = 50ms
""" % (pd.url, pd.url)
# notify_retries = 1: the core's outbox does not deliver a failed notification again, so what the
# double sees is the notifier's own retrying (the outbox is tested on its own).
d = Daemon(conf=BASE_CONF + extra, extra_core="notify_retries = 1")


def good_calls(dedup):
    return [c for c in pd.snapshot() if c["event"] and c["event"].get("routing_key") == GOOD
            and c["event"].get("dedup_key") == dedup]


def accepted(dedup):
    return [c["event"]["event_action"] for c in good_calls(dedup) if c["status"] == 202]


def full_log():
    with open(os.path.join(d.dir, "sentineld.log"), "rb") as f:
        return f.read().decode("utf-8", "replace")


try:
    d.start()
    # --- 429 then success, order kept ---------------------------------------------------------
    pd.fail_next(429, count=1, retry_after=1, routing_key=GOOD)
    d.post_file(scenario("checkout-deploy"))
    inc = d.wait_for(lambda: [i for i in d.incidents() if "checkout" in i["services"]
                              and i["state"] == "resolved"],
                     what="the checkout incident to resolve")[0]
    key1 = "sentinel-" + inc["id"]
    pd.wait_for(lambda calls: "resolve" in accepted(key1), what="the checkout resolve")
    calls = good_calls(key1)
    check(calls[0]["status"] == 429 and calls[0]["event"]["event_action"] == "trigger",
          "the first trigger is throttled (429)")
    check(calls[1]["status"] == 202 and calls[1]["raw"] == calls[0]["raw"],
          "the trigger is retried with the same body and accepted")
    gap = calls[1]["ts"] - calls[0]["ts"]
    check(0.9 <= gap < 5, "the retry waited for Retry-After: 1 (%.2f s)" % gap)
    check(accepted(key1) == ["trigger", "acknowledge", "resolve"],
          "trigger, acknowledge, resolve accepted in order: %s" % accepted(key1))
    check(len(calls) == 4, "no other call for the checkout alert (%d)" % len(calls))
    alert = pd.alert(GOOD, key1)
    check(alert["status"] == "resolved" and alert["pages"] == 1,
          "the double's alert is resolved after one page: %s" % alert)

    # --- human approval: trigger, re-trigger, approve -> acknowledge -> resolve ---------------
    d.post_file(scenario("payments-memory"))
    waiting = d.wait_for(lambda: d.incidents("awaiting_approval"), what="an approval request")[0]
    key2 = "sentinel-" + waiting["id"]
    pd.wait_for(lambda calls: accepted(key2) == ["trigger", "trigger"],
                what="trigger on opened and on approval_needed")
    ev = good_calls(key2)[-1]["event"]
    p = ev["payload"]
    check(p["summary"].startswith("[P2] Approval needed: ") and "payments" in p["summary"],
          "the approval trigger says so: %s" % p["summary"])
    check(p["severity"] == "error", "P2 maps to severity error (%s)" % p["severity"])
    check(p["source"] == "payments" and p["component"] == "payments", "source is the service")
    cd = p["custom_details"]
    check(cd["services"] == ["payments"] and cd["event"] == "approval_needed"
          and cd["incident"] == waiting["id"], "custom_details name incident, event, services")
    check(abs(cd["confidence"] - json.loads(d.request("GET", "/v1/incidents/" + waiting["id"])[1])
              ["confidence"]) < 1e-9, "custom_details carry the incident's confidence")
    check("memory" in cd["top_hypothesis"]["cause"], "custom_details carry the top hypothesis")
    check(any("scale_deployment deployment/shop/payments" in s for s in cd["plan_summary"]),
          "custom_details carry the plan summary: %s" % cd["plan_summary"])
    check(ev["links"][0]["href"] == "http://127.0.0.1:%d/ui/incidents/%s" % (d.port, waiting["id"]),
          "the alert links to the console: %s" % ev["links"][0]["href"])
    check(pd.alert(GOOD, key2)["pages"] == 1, "the re-trigger did not page again")

    st, _, _ = d.request("POST", "/v1/incidents/%s/approve" % waiting["id"], '{"reason":"ok"}')
    check(st == 200, "approve through the API answers 200")
    d.wait_for(lambda: d.json("GET", "/v1/incidents/" + waiting["id"])[1]["state"] == "resolved",
               what="the approved incident to resolve")
    pd.wait_for(lambda calls: "resolve" in accepted(key2), what="the payments resolve")
    check(accepted(key2) == ["trigger", "trigger", "acknowledge", "resolve"],
          "approve -> acknowledge -> resolve: %s" % accepted(key2))
    check(all(c["event"]["dedup_key"] == key2 for c in good_calls(key2)),
          "every event of the incident carries dedup_key %s" % key2)
    check(set(good_calls(key2)[2]["event"]) == {"routing_key", "event_action", "dedup_key"},
          "acknowledge carries only routing_key, event_action, dedup_key")
    check(pd.alert(GOOD, key2)["status"] == "resolved", "the double's alert is resolved")

    # --- invalid routing key: 400, never retried -------------------------------------------------
    time.sleep(1.0)  # room for any (wrong) retry; retry_base is 50 ms
    bad = [c for c in pd.snapshot() if c["event"] and c["event"].get("routing_key") == BAD]
    check(len(bad) == 7, "the bad instance sent each of the 7 events once (%d)" % len(bad))
    check(all(c["status"] == 400 for c in bad), "all answered 400")
    check(len(set(c["raw"] for c in bad)) == len(bad), "no event was sent twice")
    _, metrics, _ = d.request("GET", "/metrics")
    line = [l for l in metrics.decode().splitlines()
            if l.startswith("sentinel_notifier_pagerduty_failed_total")
            and 'instance="notifier:pd_bad"' in l]
    check(line and line[0].split()[-1] == "7", "pd_bad counts 7 failures: %s" % line)
    retried = [l for l in metrics.decode().splitlines()
               if l.startswith("sentinel_notifier_pagerduty_retries_total")
               and 'instance="notifier:pd_bad"' in l]
    check(not retried or retried[0].split()[-1] == "0", "pd_bad retried nothing: %s" % retried)
finally:
    rc = d.stop()
    pd.stop()
check(rc == 0, "SIGTERM drains and exits 0")
log = full_log()
check("Length of 'routing_key' is incorrect" in log, "the 400 error message is logged")
check(GOOD not in log and BAD not in log, "no routing key in the log")
d.cleanup()
print("1..ok")
