"""The operator console at /ui/ in a real headless Chromium, driven over W3C WebDriver: the key
prompt, the incident list with its 5 s refresh, an incident page (timeline, hypotheses, plan, a
chart of the anomalous series with the anomaly marked), Approve refused for a viewer and done by
an operator (checked through the API), the audit log filtered by action, no external resource,
no console error. A second daemon with no telemetry store and no keys checks the chart's
fallback and Reject as a loopback caller."""
import hashlib
import os
import re
import sys

from sntest import Daemon, check, fail, scenario

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    print("skip: %s is missing (Debian packages chromium, chromium-driver)" % CHROMIUM)
    sys.exit(0)

from webdriver import Chrome, WebDriverError  # noqa: E402

KEYS = {"ingest": "ingest-key-0123456789", "viewer": "viewer-key-0123456789",
        "operator": "operator-key-0123456789", "admin": "admin-key-0123456789"}
LINES = "\n".join("api_key = %s-user:%s:sha256:%s" % (r, r, hashlib.sha256(k.encode()).hexdigest())
                  for r, k in KEYS.items())
# Console errors a test provokes on purpose: Chromium logs every non-2xx fetch as a network error.
EXPECTED_NET = re.compile(r"status of (401|403|501)")


def api(d, path, key=KEYS["admin"]):
    st, body = d.json("GET", path, key=key)
    if st != 200:
        fail("GET %s answered %d: %r" % (path, st, body))
    return body


def texts(b, css):
    return [e.text for e in b.find_all(css)]


def console_errors(b):
    entries = b.browser_log()
    if entries is None:
        print("# chromedriver exposes no browser log: console check skipped")
        return []
    return [e for e in entries if e.get("level") == "SEVERE"
            and not (e.get("source") == "network" and EXPECTED_NET.search(e.get("message", "")))]


def external(b, origin):
    names = b.execute("return performance.getEntriesByType('resource').map(e => e.name)")
    return names, [n for n in names if not n.startswith(origin + "/")]


d = Daemon(extra_core="telemetry = local\n" + LINES).start()
d2 = None
b = None
try:
    origin = "http://127.0.0.1:%d" % d.port
    st, raw, hdr = d.request("GET", "/ui/", key="")
    csp = hdr.get("Content-Security-Policy", "")
    check(st == 200 and "script-src 'self'" in csp and "unsafe-inline" not in csp,
          "/ui/ is served without a key, under a CSP with no inline script")
    page = raw.decode()
    check("<script>" not in page and "style=" not in page and "http://" not in page
          and "https://" not in page, "index.html has no inline script or style, no external URL")
    for name in ("app.js", "api.js", "charts.js", "app.css"):
        st, _, _ = d.request("GET", "/ui/" + name, key="")
        check(st == 200, "/ui/%s is embedded in the daemon" % name)

    d.key = KEYS["ingest"]
    d.post_file(scenario("checkout-deploy"))
    checkout = d.wait_for(lambda: [i for i in api(d, "/v1/incidents")["incidents"] if "checkout" in i["services"]
                                   and i["state"] == "resolved"], what="checkout resolved")[0]

    b = Chrome(chromium=CHROMIUM)
    b.get(origin + "/ui/")
    banner = b.wait(lambda: b.find("#banner").text, what="the key prompt")
    check("needs an API key" in banner, "without a key the page asks for one: %r" % banner)
    b.find("#api-key").send_keys(KEYS["viewer"])
    b.find("#key-use").click()
    b.wait(lambda: b.find_all('#incident-table tr[data-id="%s"]' % checkout["id"]),
           what="the incident list")
    check(not b.find("#banner").text, "the prompt goes once a valid key is given")
    stored = b.execute("return [sessionStorage.getItem('sentinel.apiKey'), localStorage.length, "
                       "location.href, document.getElementById('api-key').value]")
    check(stored[0] == KEYS["viewer"] and stored[1] == 0, "the key is in sessionStorage only")
    check(KEYS["viewer"] not in stored[2] and stored[3] == "",
          "the key is neither in the URL nor left in the input")

    # The list refreshes by itself: an incident opened now shows up without a reload.
    b.execute("window.__noReload = 1")
    d.post_file(scenario("payments-memory"))
    pay = d.wait_for(lambda: [i for i in api(d, "/v1/incidents?state=awaiting_approval")["incidents"]],
                     what="payments waiting for approval")[0]
    check("payments" in pay["services"], "payments waits for a human")
    row = '#incident-table tr[data-id="%s"]' % pay["id"]
    b.wait(lambda: b.find_all(row), timeout=12, what="the list refresh")
    check(b.execute("return window.__noReload") == 1, "the list refreshed in place (5 s timer)")
    check(len(b.find_all("#incident-table tbody tr[data-id]")) == 2, "the list shows both incidents")
    headers = texts(b, "#incident-table thead th")
    check(headers[:3] == ["Incident", "State", "Severity"] and "Age" in headers,
          "the table has headers: %s" % headers)
    for inc in (checkout, pay):
        r = b.find('#incident-table tr[data-id="%s"]' % inc["id"])
        state, sev, age = r.find("td.state").text, r.find("td.severity").text, r.find("td.age").text
        check(state == inc["state"].replace("_", " ") and sev == inc["severity"]
              and re.match(r"^\d+(s|m|h \d\dm|d \d+h)$", age),
              "row %s: state %r, severity %r, age %r" % (inc["title"], state, sev, age))

    # The incident page.
    b.find(row + " td.title a").click()
    b.wait(lambda: "payments" in b.find("#incident-title").text, what="the incident page")
    check(b.execute("return location.hash") == "#/incidents/" + pay["id"], "routed by hash")
    b.wait(lambda: len(b.find_all("#timeline-table tbody tr[data-event]")) >= 4, what="timeline")
    events = [e.attribute("data-event") for e in b.find_all("#timeline-table tbody tr")]
    check("opened" in events and "approval_needed" in events, "timeline rows: %s" % events)
    hyp = texts(b, "#hypotheses-table tbody tr")
    check(len(hyp) >= 1 and "payments" in hyp[0], "hypotheses listed: %r" % hyp[:1])
    plan = texts(b, "#plan-table tbody tr")
    check(len(plan) == 1 and "scale_deployment" in plan[0]
          and "deployment/shop/payments" in plan[0], "plan row: %r" % plan)
    b.wait(lambda: b.find_all("#charts svg.chart circle.anomaly-point"), what="the chart")
    check(len(b.find_all("#charts svg.chart path.series-line")) >= 1,
          "the chart draws the series read from /v1/series")
    check(len(b.find_all("#charts svg.chart .expected-point")) >= 1
          and len(b.find_all("#charts svg.chart .onset-line")) == 1,
          "the chart marks the expected value and the onset")
    check(not b.find_all("#charts .chart-note"), "no fallback note with a telemetry store")
    npts = b.execute("return document.querySelector('#charts path.series-line')"
                     ".getAttribute('d').split(/[ML]/).length - 1")
    check(npts > 100, "the series covers the window around the onset (%d points)" % npts)

    # A viewer cannot approve: 403 shown, buttons disabled, nothing changes.
    approve = b.find("#approve-btn")
    check(approve.enabled(), "Approve offered before the role is known")
    b.find("#decision-reason").send_keys("viewer tries")
    approve.click()
    msg = b.wait(lambda: (lambda t: t if "viewer" in t else None)(b.find("#decision-msg").text),
                 what="the 403 message")
    check("This key is a viewer: approving needs operator." in msg, "403 explained: %r" % msg)
    check(not b.find("#approve-btn").enabled() and not b.find("#reject-btn").enabled(),
          "Approve and Reject disabled for a viewer key")
    doc = api(d, "/v1/incidents/" + pay["id"])
    check(doc["state"] == "awaiting_approval" and doc["approvals"] == [],
          "the refused click changed nothing")

    # The operator key approves.
    b.find("#api-key").send_keys(KEYS["operator"])
    b.find("#key-use").click()
    b.wait(lambda: b.find("#approve-btn").enabled(), what="Approve re-enabled for a new key")
    b.find("#decision-reason").send_keys("memory growth confirmed, scaling out")
    b.find("#approve-btn").click()
    msg = b.wait(lambda: (lambda t: t if t.startswith("Approved") else None)(
        b.find("#decision-msg").text), what="the approval message")
    check("Approved" in msg, "the page confirms the approval: %r" % msg)
    doc = d.wait_for(lambda: (lambda x: x if x["state"] != "awaiting_approval" else None)(
        api(d, "/v1/incidents/" + pay["id"])), what="the incident to move on")
    check(doc["state"] in ("executing", "verifying", "resolved"),
          "the incident moved on: %s" % doc["state"])
    last = doc["approvals"][-1]
    check(last["actor"] == "api:operator-user" and last["decision"] == "approved"
          and last["reason"] == "memory growth confirmed, scaling out",
          "the approval names the operator key: %s" % last)
    b.wait(lambda: "api:operator-user" in b.find("#approvals-table").text,
           what="the approval on the page")
    check(True, "the incident page shows the approval")

    # The audit log, filtered by action.
    b.find('nav a[data-nav="audit"]').click()
    b.wait(lambda: b.find("#audit-action"), what="the audit page")
    b.find("#audit-action").send_keys("approve")
    b.find("#audit-apply").click()
    b.wait(lambda: "action=approve" in b.execute("return location.hash"), what="filter in hash")
    rows = b.wait(lambda: b.find_all("#audit-table tbody tr[data-action]"), what="audit rows")
    actions = [r.attribute("data-action") for r in rows]
    check(actions and set(actions) == {"approve"}, "only approvals listed: %s" % actions)
    mine = [r.text for r in rows if "api:operator-user" in r.text]
    check(len(mine) == 1 and pay["id"] in mine[0] and "approved" in mine[0],
          "the audit page lists the operator's approval: %r" % mine)

    # The read-only pages: silences and notifications.
    st, sil = d.json("POST", "/v1/silences", '{"matchers":{"service":"search"},"duration_s":600,'
                     '"comment":"index rebuild"}', key=KEYS["operator"])
    check(st == 201, "a silence created through the API")
    b.find('nav a[data-nav="silences"]').click()
    rows = b.wait(lambda: texts(b, "#silences-table tbody tr"), what="the silences page")
    check(len(rows) == 1 and "service=search" in rows[0] and "active" in rows[0]
          and "index rebuild" in rows[0], "the silences page lists it: %r" % rows)
    b.find('nav a[data-nav="notifications"]').click()
    b.wait(lambda: b.find_all("#notifications-table"), what="the notifications page")
    check(texts(b, "#notifications-table thead th")[:3] == ["Incident", "Notifier", "Event"],
          "the notifications page renders its table")

    # Nothing came from anywhere but the daemon, nothing went wrong in the page.
    names, ext = external(b, origin)
    check(len(names) >= 5 and not ext, "%d resources, all from the daemon (%s)" % (len(names), ext))
    check(b.execute("return document.querySelectorAll('[style], script:not([src])').length") == 0,
          "no inline style attribute or inline script in the live DOM")
    errs = console_errors(b)
    check(not errs, "no console errors: %s" % errs)

    # No telemetry store, no keys (loopback is admin): the chart falls back, Reject works.
    d2 = Daemon().start()
    d2.post_file(scenario("payments-memory"))
    w = d2.wait_for(lambda: d2.incidents("awaiting_approval"), what="d2 approval")[0]
    origin2 = "http://127.0.0.1:%d" % d2.port
    b.get(origin2 + "/ui/#/incidents/" + w["id"])
    note = b.wait(lambda: b.find("#charts .chart-note").text, what="the fallback note")
    check("No telemetry store" in note, "501 explained under the chart: %r" % note)
    check(len(b.find_all("#charts circle.anomaly-point")) >= 1
          and not b.find_all("#charts path.series-line"),
          "without a store the chart shows the document's anomaly points only")
    b.find("#decision-reason").send_keys("not now")
    b.find("#reject-btn").click()
    b.wait(lambda: b.find("#decision-msg").text.startswith("Rejected"), what="reject message")
    doc = d2.wait_for(lambda: (lambda x: x if x["approvals"] else None)(
        d2.json("GET", "/v1/incidents/" + w["id"])[1]), what="the rejection")
    check(doc["approvals"][-1]["actor"] == "api:loopback"
          and doc["approvals"][-1]["decision"] == "rejected", "Reject through the page as loopback")
    names, ext = external(b, origin2)
    check(not ext, "second daemon: no external resource (%s)" % ext)
    errs = console_errors(b)
    check(not errs, "second daemon: no console errors: %s" % errs)
except WebDriverError as e:
    fail("webdriver: %s" % e)
except TimeoutError as e:
    fail(str(e))
finally:
    if b:
        b.quit()
    d.cleanup()
    if d2:
        d2.cleanup()
print("1..ok")
