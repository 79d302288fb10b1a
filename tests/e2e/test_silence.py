"""Silences and maintenance windows on a real sentineld, through the API and sentinelctl: a
silenced incident is recorded and analysed but neither notifies nor remediates without a human;
weekly windows apply only inside their hours; silences survive a restart; creation and expiry
are audited; bad silences are refused with the reason."""
import datetime
import json
import os
import subprocess

from sntest import BASE_CONF, SENTINELCTL, Daemon, check, scenario

conf = BASE_CONF.replace("[notifier:log]\nplugin = log\n",
                         "[notifier:log]\nplugin = log\n\n[notifier:hook]\nplugin = webhook\n"
                         "url = http://127.0.0.1:9/hook\nmax_retries = 0\n")


def ctl(d, *args):
    env = dict(os.environ, SENTINEL_URL="http://127.0.0.1:%d" % d.port)
    return subprocess.run([SENTINELCTL] + list(args), capture_output=True, text=True, env=env)


d = Daemon(conf=conf).start()
try:
    out = ctl(d, "silence", "add", "--match", "service=checkout", "--duration", "2h",
              "--comment", "deploy window")
    check(out.returncode == 0 and len(out.stdout.strip()) == 36,
          "sentinelctl silence add prints the new id: %r %r" % (out.stdout, out.stderr))
    sid = out.stdout.strip()
    listed = d.json("GET", "/v1/silences")[1]["silences"]
    check(len(listed) == 1 and listed[0]["active"] and listed[0]["created_by"] == "api:loopback",
          "the silence is listed active, with its author")

    d.post_file(scenario("checkout-deploy"))
    inc = d.wait_for(lambda: [i for i in d.incidents() if "checkout" in i["services"]
                              and i["state"] not in ("gathering", "analyzing")],
                     what="the checkout incident")[0]
    doc = d.json("GET", "/v1/incidents/" + inc["id"])[1]
    events = [t["event"] for t in doc["timeline"]]
    check(doc.get("silenced_by") == sid, "the incident is recorded with the silence that held")
    check(doc["hypotheses"] and doc["plan"], "and still analysed and planned")
    check(doc["state"] == "awaiting_approval" and "executed" not in events,
          "a low-risk plan is not auto-approved under a silence: %s" % doc["state"])
    st, raw, _ = d.request("GET", "/metrics")
    check(b"notifications_silenced_total" in raw, "suppressed notifications are counted")
    check(d.json("GET", "/v1/notifications")[1]["notifications"] == [],
          "nothing went to the outbox")

    # Weekly windows: one around now applies, one twelve hours away does not.
    now = datetime.datetime.now(datetime.timezone.utc)
    day = now.strftime("%a").lower()[:3]
    around = "%s@%s-%s" % (day, (now - datetime.timedelta(minutes=30)).strftime("%H:%M"),
                           (now + datetime.timedelta(minutes=30)).strftime("%H:%M"))
    later = (now + datetime.timedelta(hours=12))
    away = "%s@%s-%s" % (later.strftime("%a").lower()[:3], later.strftime("%H:%M"),
                         (later + datetime.timedelta(minutes=30)).strftime("%H:%M"))
    a = ctl(d, "silence", "add", "--match", "host=db*", "--duration", "7d", "--weekly", around)
    b = ctl(d, "silence", "add", "--match", "host=db*", "--duration", "7d", "--weekly", away)
    check(a.returncode == 0 and b.returncode == 0, "weekly silences are created")
    act = {s["id"]: s["active"] for s in d.json("GET", "/v1/silences")[1]["silences"]}
    check(act[a.stdout.strip()] is True and act[b.stdout.strip()] is False,
          "a weekly window applies only inside its hours")

    # Bad input is refused with the reason.
    st, body = d.json("POST", "/v1/silences", json.dumps({"matchers": {}, "duration_s": 60}))
    check(st == 400 and "matchers" in body["error"], "empty matchers refused: %s" % body)
    st, body = d.json("POST", "/v1/silences", json.dumps({"matchers": {"service": "x"}}))
    check(st == 400 and "duration_s" in body["error"], "no end refused: %s" % body)
    bad = ctl(d, "silence", "add", "--match", "service=x", "--duration", "2h", "--weekly",
              "funday@09:00-10:00")
    check(bad.returncode == 2 and "weekly days" in bad.stderr,
          "a bad weekly day is refused: %s" % bad.stderr.strip())

    # Expired right after creation, while the creation is still being stored: the expiry is
    # stored too (a second save of the same version was refused, and after a restart the
    # silence came back active).
    st, quick = d.json("POST", "/v1/silences",
                       json.dumps({"matchers": {"service": "quick"}, "duration_s": 3600}))
    st2, _ = d.json("POST", "/v1/silences/%s/expire" % quick["id"])
    check(st == 201 and st2 == 200, "a silence created and expired at once (%d, %d)" % (st, st2))

    # Survives a restart; expiry is audited; expiring twice is a conflict.
    d.stop()
    check("could not store silence" not in d.logtext(), "every silence change was stored")
    d.start()
    # Each stored silence is read back by its own asynchronous load: wait for all three.
    ids = [s["id"] for s in d.wait_for(
        lambda: (lambda l: l if len(l) >= 3 else None)(d.json("GET", "/v1/silences")[1]["silences"]),
        what="three silences after the restart")]
    check(sid in ids and len(ids) == 3 and quick["id"] not in ids,
          "silences survive a restart, and the expired one stays expired (%d listed)" % len(ids))
    out = ctl(d, "silence", "expire", sid)
    check(out.returncode == 0, "sentinelctl silence expire")
    check(ctl(d, "silence", "expire", sid).returncode == 4, "expiring twice is a conflict (4)")
    check(ctl(d, "silence", "expire", "nope").returncode == 3, "an unknown silence is 3")
    acts = [r["action"] for r in d.json("GET", "/v1/audit")[1]["records"]]
    check(acts.count("silence_create") == 4 and acts.count("silence_expire") == 2,
          "creation and expiry are audited")
    listed = ctl(d, "silence", "list")
    check("expired" in listed.stdout and "deploy window" in listed.stdout,
          "sentinelctl silence list shows the table")
finally:
    d.cleanup()
