"""End to end: sentineld with the slack notifier pointed at a Slack TEST DOUBLE
(slack_double.py). The payments-memory scenario waits for approval; the double receives the
incident's first message (after a 429 with Retry-After) and, threaded under it, the approval
request with Approve/Reject buttons. The test then signs interactivity payloads exactly like
Slack and posts them to /hooks/slack/interact: a forged or stale signature gets 401 and changes
nothing, a user outside `approvers` is refused and audited, alice approves, a replay of her
click is refused; the incident runs and resolves with the approval naming slack:alice, the
double gets the response_url update and the threaded follow-ups."""
import hashlib
import hmac
import json
import os
import time
import urllib.parse

from sntest import BASE_CONF, Daemon, check, scenario
from slack_double import SlackDouble

TOKEN = "xoxb-e2e-T0KEN-4242"
SECRET = "e2e-signing-secret-8f742231b10e"
os.environ["SN_E2E_SLACK_TOKEN"] = TOKEN
os.environ["SN_E2E_SLACK_SECRET"] = SECRET

double = SlackDouble(TOKEN).start()
# The incident's first message is rate limited once: it must arrive after Retry-After.
double.fail_next("chat.postMessage", status=429, retry_after=1)

SLACK_CONF = """
[notifier:slack]
plugin = slack
token = ${{env:SN_E2E_SLACK_TOKEN}}
channel = C0SENTINEL
api_url = %s
signing_secret = ${{env:SN_E2E_SLACK_SECRET}}
approvers = U0ALICE=alice
approvers = U0BOB=bob
console_url = http://console.example
response_url_prefix = %s/actions/
retry_base = 50ms
""" % (double.api_url, double.url)


def sign(body, ts=None, secret=SECRET):
    ts = str(int(time.time()) if ts is None else ts)
    mac = hmac.new(secret.encode(), ("v0:" + ts + ":").encode() + body, hashlib.sha256)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + mac.hexdigest(),
            "Content-Type": "application/x-www-form-urlencoded"}


def click(user, action_id, incident, message, trigger, response):
    """A block_actions payload as Slack sends it, form-encoded (payload=<url-quoted JSON>)."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0TEAM"},
        "api_app_id": "A0SENTINEL",
        "token": "verification_token",
        "container": {"type": "message", "message_ts": message["ts"],
                      "channel_id": "C0SENTINEL", "is_ephemeral": False},
        "trigger_id": trigger,
        "team": {"id": "T0TEAM", "domain": "example"},
        "channel": {"id": "C0SENTINEL", "name": "incidents"},
        "message": {"type": "message", "ts": message["ts"], "text": message["text"],
                    "blocks": message["blocks"]},
        "response_url": double.response_url(response),
        "actions": [{"action_id": action_id, "block_id": "x", "value": incident,
                     "type": "button", "action_ts": "%.6f" % time.time(),
                     "text": {"type": "plain_text", "text": "Approve", "emoji": True}}],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def buttons(doc):
    for b in doc.get("blocks", []):
        if b.get("type") == "actions":
            return b["elements"]
    return []


d = Daemon(conf=BASE_CONF + SLACK_CONF).start()
try:
    d.post_file(scenario("payments-memory"))
    inc = d.wait_for(lambda: d.incidents("awaiting_approval"), what="an approval request")[0]
    iid = inc["id"]

    # ---- outgoing: first message, 429, approval request threaded under it ----
    approval_call = double.wait_for(
        lambda: [c for c in double.calls_to("chat.postMessage", ok=True) if buttons(c["json"])],
        what="the approval request")[0]
    posts = double.calls_to("chat.postMessage")
    check(posts[0]["status"] == 429, "the first chat.postMessage was answered 429")
    first = [c for c in double.calls_to("chat.postMessage", ok=True)
             if not c["json"].get("thread_ts")][0]
    check(first["at"] - posts[0]["at"] >= 0.95,
          "it was retried after Retry-After (%.2f s)" % (first["at"] - posts[0]["at"]))
    check(first["headers"].get("Authorization") == "Bearer " + TOKEN,
          "the bot token is sent as Bearer (expanded from ${env:...})")
    first_ts = first["answer"]["ts"]
    head = [b for b in first["json"]["blocks"] if b["type"] == "header"]
    check(head and inc["title"] in head[0]["text"]["text"], "the first message has a header")
    check(iid in json.dumps(first["json"]["blocks"]), "the first message names the incident")
    msg = approval_call["json"]
    check(msg.get("thread_ts") == first_ts, "the approval request is threaded under it")
    check(msg.get("reply_broadcast") is True, "and broadcast to the channel")
    els = buttons(msg)
    check([e["action_id"] for e in els] == ["sentinel_approve", "sentinel_reject"]
          and all(e["value"] == iid for e in els), "Approve/Reject buttons carry the incident id")
    text = json.dumps(msg["blocks"])
    check("*Plan*" in text and "risk *" in text and "blast radius" in text,
          "the plan with risk, downtime and blast radius is shown")
    check("http://console.example/ui/#/incidents/" + iid in text, "the console link is there")
    message = {"ts": approval_call["answer"]["ts"], "text": msg["text"], "blocks": msg["blocks"]}

    def state():
        return d.json("GET", "/v1/incidents/" + iid)[1]

    # ---- forged and stale: 401, nothing happens ----
    body = click("U0ALICE", "sentinel_approve", iid, message, "trig.forged", "forged")
    st, raw, _ = d.request("POST", "/hooks/slack/interact", body,
                           headers=sign(body, secret="not-the-secret"))
    check(st == 401, "a forged signature gets 401 (%d)" % st)
    st, raw, _ = d.request("POST", "/hooks/slack/interact", body,
                           headers=sign(body, ts=int(time.time()) - 301))
    check(st == 401, "a timestamp older than 5 minutes gets 401 (%d)" % st)
    hdrs = sign(body)
    hdrs["X-Slack-Signature"] = hdrs["X-Slack-Signature"][:-1] + (
        "0" if hdrs["X-Slack-Signature"][-1] != "0" else "1")
    st, _, _ = d.request("POST", "/hooks/slack/interact", body, headers=hdrs)
    check(st == 401, "a signature off by one digit gets 401 (%d)" % st)
    doc = state()
    check(doc["state"] == "awaiting_approval" and not [a for a in doc["approvals"]
                                                        if a["actor"].startswith("slack:")],
          "nothing changed: still awaiting approval")

    # ---- a user outside approvers: refused, told, audited ----
    body = click("U0MALLORY", "sentinel_approve", iid, message, "trig.mallory", "mallory")
    st, raw, _ = d.request("POST", "/hooks/slack/interact", body, headers=sign(body))
    check(st == 200 and b"not allowed" in raw, "a stranger is told 'not allowed' (%d %r)"
          % (st, raw[:80]))
    st, audit = d.json("GET", "/v1/audit?action=approval_refused")
    recs = audit["records"]
    check(len(recs) == 1 and recs[0]["actor"] == "slack:U0MALLORY"
          and recs[0].get("incident") == iid, "the refusal is audited as slack:U0MALLORY")
    eph = double.wait_for(lambda: [c for c in double.calls_to("actions")
                                   if c["path"].endswith("/mallory")], what="the ephemeral")[0]
    check(eph["json"].get("response_type") == "ephemeral"
          and eph["json"].get("replace_original") is False,
          "the stranger gets an ephemeral message through response_url")
    check(state()["state"] == "awaiting_approval", "still awaiting approval")

    # ---- alice approves; a replay is refused ----
    body = click("U0ALICE", "sentinel_approve", iid, message, "trig.alice", "alice")
    hdrs = sign(body)
    st, raw, _ = d.request("POST", "/hooks/slack/interact", body, headers=hdrs)
    check(st == 200, "alice's approval is answered 200 (%d %r)" % (st, raw[:80]))
    st, raw, _ = d.request("POST", "/hooks/slack/interact", body, headers=hdrs)
    check(st == 409, "the same payload again is refused (%d)" % st)
    d.wait_for(lambda: state()["state"] == "resolved", what="the approved incident to resolve")
    doc = state()
    slack_approvals = [a for a in doc["approvals"] if a["actor"].startswith("slack:")]
    check(len(slack_approvals) == 1 and slack_approvals[0]["actor"] == "slack:alice"
          and slack_approvals[0]["decision"] == "approved",
          "the incident's approval names slack:alice")
    st, audit = d.json("GET", "/v1/audit?actor=slack:alice")
    check(any(r["action"] == "approve" and r.get("incident") == iid for r in audit["records"]),
          "the approval is in the audit chain")

    upd = double.wait_for(lambda: [c for c in double.calls_to("actions")
                                   if c["path"].endswith("/alice")], what="the update")[0]["json"]
    check(upd.get("replace_original") is True and upd.get("text") == "Approved by alice",
          "the original message is replaced: 'Approved by alice'")
    check(not buttons(upd), "the buttons are gone")

    # A late click by bob: the message says it was already decided.
    body = click("U0BOB", "sentinel_reject", iid, message, "trig.bob", "bob")
    st, _, _ = d.request("POST", "/hooks/slack/interact", body, headers=sign(body))
    check(st == 200, "a late click is acknowledged")
    late = double.wait_for(lambda: [c for c in double.calls_to("actions")
                                    if c["path"].endswith("/bob")], what="the late update")[0]
    check("Already decided" in late["json"]["text"], "and told the incident was already decided")
    check(state()["state"] == "resolved", "the late click changed nothing")

    # ---- threaded follow-ups ----
    def replies():
        return [c["json"] for c in double.calls_to("chat.postMessage", ok=True)
                if c["json"].get("thread_ts") == first_ts]

    double.wait_for(lambda: any("Resolved" in json.dumps(r) for r in replies()),
                    what="the resolved reply")
    texts = [json.dumps(r["blocks"]) for r in replies()]
    check(any("Executing" in t for t in texts), "'executing' is threaded under the first message")
    check(any("Resolved" in t for t in texts), "'resolved' is threaded under the first message")
    tops = [c for c in double.calls_to("chat.postMessage", ok=True)
            if not c["json"].get("thread_ts")]
    check(len(tops) == 1, "one top-level message for the incident (%d)" % len(tops))
    check(not [c for c in double.calls_to("actions") if c["path"].endswith("/forged")],
          "nothing was sent for the forged request")
finally:
    rc = d.stop()
    double.stop()
check(rc == 0, "SIGTERM drains and exits 0")
log = open(os.path.join(d.dir, "sentineld.log")).read()
check(TOKEN not in log and SECRET not in log, "neither the token nor the signing secret is logged")
d.cleanup()
print("1..ok")
