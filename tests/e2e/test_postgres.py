"""sentineld with its state and audit in PostgreSQL (`state = pg`, a [store:pg] of plugin
postgres) against a throwaway PostgreSQL 15 server (tests/support/pgserver.py):

1. the checkout scenario runs to resolved; checkpoints and the audit chain are in the database;
   `sentinelctl audit verify -c CONF` loads the store plugin offline and passes; a plain psql
   session cannot change the audit table, and a superuser who drops the guard and edits a
   record is caught by the verifier;
2. kill -9 in the middle of a workflow (between the execution intent and its outcome), restart:
   the incident resumes from its checkpoint in PostgreSQL and resolves with one execution;
3. the PostgreSQL server restarts under a running daemon while an incident waits for approval:
   the store reconnects, the approval goes through, the chain still verifies;
4. two sentinelds share the database; the one running an incident is killed, the other takes
   its lease over once it expires and resolves the incident; one chain verifies.
The password reaches the daemon only through ${env:SN_PG_PASSWORD} and never appears in its log.
"""
import json
import os
import subprocess
import sys

from sntest import BASE_CONF, SENTINELCTL, SOURCE, Daemon, check, journal, scenario

sys.path.insert(0, os.path.join(SOURCE, "tests", "support"))
from pgserver import PgServer  # noqa: E402


def conf_for(pg, db):
    text = BASE_CONF.replace("state = local", "state = pg")
    return text + """
[store:pg]
plugin = postgres
dsn = host=127.0.0.1 port=%d dbname=%s user=sentinel password=${{env:SN_PG_PASSWORD}}
connections = 2
reconnect_max = 1s
""" % (pg.port, db)


def verify(d):
    return subprocess.run([SENTINELCTL, "audit", "verify", "-c", d.conf_path],
                          capture_output=True, text=True, timeout=60)


def incident(d, iid):
    st, doc = d.json("GET", "/v1/incidents/" + iid)
    return doc if st == 200 else None


def whole_log(d):
    with open(os.path.join(d.dir, "sentineld.log"), "rb") as f:
        return f.read().decode("utf-8", "replace")


def store_health(d):
    st, h = d.json("GET", "/health/detailed")
    return h["instances"].get("store:pg") if st == 200 else None


pg = PgServer().start()
os.environ["SN_PG_PASSWORD"] = pg.password
try:
    for db in ("e2e_flow", "e2e_crash", "e2e_restart", "e2e_silence"):
        rc, out, err = pg.psql("CREATE DATABASE %s" % db)
        check(rc == 0, "database %s created %s" % (db, err))

    # ---- 1. the checkout scenario, audit in PostgreSQL, offline verify ----
    d = Daemon(conf=conf_for(pg, "e2e_flow")).start()
    try:
        h = d.wait_for(lambda: (lambda x: x if x and x["ok"] else None)(store_health(d)),
                       what="the postgres store to be healthy")
        check(h["plugin"] == "postgres" and "connections up" in h["detail"],
              "health: " + h["detail"])
        d.post_file(scenario("checkout-deploy"))
        inc = d.wait_for(lambda: [i for i in d.incidents() if "checkout" in i["services"]
                                  and i["state"] in ("resolved", "escalated", "closed")],
                         timeout=60, what="the checkout incident to close")[0]
        doc = incident(d, inc["id"])
        check(doc["state"] == "resolved", "checkout incident resolved (was %s)" % doc["state"])
        check(len([x for x in doc["executions"] if x["state"] == "done"]) == 1,
              "exactly one execution")
    finally:
        rc = d.stop()
    check(rc == 0, "SIGTERM drains and exits 0")

    rc, out, _ = pg.psql("SELECT version, open, doc->>'state' FROM checkpoints WHERE id = '%s'"
                         % inc["id"], db="e2e_flow")
    check(rc == 0 and out.endswith("|f|resolved"), "the checkpoint in PostgreSQL: %s" % out)
    rc, out, _ = pg.psql("SELECT count(*), min(seq), max(seq) FROM audit", db="e2e_flow")
    n, lo, hi = (int(x) for x in out.split("|"))
    check(n >= 3 and lo == 1 and hi == n, "audit chain in PostgreSQL: %d records, 1..%d" % (n, hi))
    rc, out, _ = pg.psql("SELECT string_agg(version::text, ',') FROM schema_migrations",
                         db="e2e_flow")
    check(out == "1", "migrations applied once: %s" % out)

    out = verify(d)
    check(out.returncode == 0 and "audit chain ok: %d records" % n in out.stdout,
          "sentinelctl audit verify: " + out.stdout.strip() + out.stderr.strip())

    rc, _, err = pg.psql("UPDATE audit SET actor = 'mallory' WHERE seq = 2", db="e2e_flow")
    check(rc != 0 and "append-only" in err, "psql UPDATE of the audit table refused: " + err)
    rc, _, err = pg.psql("DELETE FROM audit WHERE seq = %d" % n, db="e2e_flow")
    check(rc != 0 and "append-only" in err, "psql DELETE from the audit table refused")

    # A superuser can drop the guard; the chain still gives the change away.
    rc, _, err = pg.psql_admin(
        "ALTER TABLE audit DISABLE TRIGGER audit_append_only; "
        "UPDATE audit SET record = replace(record, '\"actor\":\"policy\"', "
        "'\"actor\":\"mallory\"') WHERE seq = (SELECT min(seq) FROM audit WHERE actor = 'policy')"
        "; ALTER TABLE audit ENABLE TRIGGER audit_append_only", db="e2e_flow")
    check(rc == 0, "superuser edits a record behind the trigger's back " + err)
    out = verify(d)
    check(out.returncode == 4 and "BROKEN" in out.stdout,
          "verify catches the edit: " + out.stdout.strip())
    log = whole_log(d)
    d.cleanup()

    # ---- 2. kill -9 mid-workflow, restart, resume from PostgreSQL ----
    d = Daemon(conf=conf_for(pg, "e2e_crash"), extra_mock="latency_ms = 3000").start()
    try:
        d.post_file(scenario("checkout-deploy"))
        inc = d.wait_for(lambda: [i for i in d.incidents() if i["state"] == "executing"],
                         timeout=60, what="the execution to start")[0]
        doc = incident(d, inc["id"])
        check(any(x["state"] == "intent" for x in doc["executions"]),
              "intent written before outcome")
        rc, out, _ = pg.psql("SELECT count(*) FROM checkpoints WHERE id = '%s' AND open"
                             % inc["id"], db="e2e_crash")
        check(out == "1", "the open incident is checkpointed in PostgreSQL")
        d.kill9()
        d.start()
        doc = d.wait_for(lambda: (lambda x: x if x and x["state"] == "resolved" else None)(
            incident(d, inc["id"])), timeout=60, what="the resumed incident to resolve")
        events = [t["event"] for t in doc["timeline"]]
        check("resumed" in events, "timeline shows the resume")
        execs = doc["executions"]
        check(len(execs) == 1 and execs[0]["state"] == "done", "one execution record, done")
        mutations = [j for j in journal(d) if j.get("op") == "execute"
                     and not j.get("deduplicated")]
        check(len(mutations) <= 1, "at most one mutating execute (%d)" % len(mutations))
    finally:
        rc = d.stop()
    check(rc == 0, "SIGTERM drains and exits 0 after the crash and resume")
    out = verify(d)
    check(out.returncode == 0 and "audit chain ok" in out.stdout,
          "the chain verifies across the crash: " + out.stdout.strip() + out.stderr.strip())
    log += whole_log(d)
    d.cleanup()

    # ---- 3. PostgreSQL restarts under a running daemon ----
    d = Daemon(conf=conf_for(pg, "e2e_restart")).start()
    try:
        d.post_file(scenario("payments-memory"))
        waiting = d.wait_for(lambda: d.incidents("awaiting_approval"), timeout=60,
                             what="an approval request")[0]
        pg.restart(down_s=1.5)
        d.wait_for(lambda: (lambda x: x and x["ok"])(store_health(d)), timeout=30,
                   what="the store to reconnect")
        st, _ = d.json("POST", "/v1/incidents/%s/approve" % waiting["id"], "{}")
        check(st == 200, "approval after the database restart accepted")
        doc = d.wait_for(lambda: (lambda x: x if x and x["state"] == "resolved" else None)(
            incident(d, waiting["id"])), timeout=60, what="resolution after the restart")
        check(len(doc["executions"]) == 1, "one execution")
        st, body, _ = d.request("GET", "/metrics")
        text = body.decode()
        check('sentinel_store_reconnects_total{instance="store:pg"}' in text,
              "reconnects are counted in /metrics")
        rc, out, _ = pg.psql("SELECT open FROM checkpoints WHERE id = '%s'" % waiting["id"],
                             db="e2e_restart")
        check(out == "f", "the resolved checkpoint is closed in PostgreSQL")
    finally:
        rc = d.stop()
    check(rc == 0, "SIGTERM drains and exits 0")
    out = verify(d)
    check(out.returncode == 0 and "audit chain ok" in out.stdout,
          "the chain verifies across the database restart: " + out.stdout.strip())
    log += whole_log(d)
    d.cleanup()

    # ---- 4. scale-out: two sentinelds share the store; one dies, the other takes over ----
    rc, out, err = pg.psql("CREATE DATABASE e2e_pair")
    check(rc == 0, "database e2e_pair created " + err)
    a = Daemon(conf=conf_for(pg, "e2e_pair"), extra_core="instance_id = node-a\nlease_ttl = 3",
               extra_mock="latency_ms = 3000").start()
    b = Daemon(conf=conf_for(pg, "e2e_pair"), extra_core="instance_id = node-b\nlease_ttl = 3",
               extra_mock="latency_ms = 3000").start()
    try:
        a.post_file(scenario("checkout-deploy"))
        inc = a.wait_for(lambda: [i for i in a.incidents() if i["state"] == "executing"],
                         timeout=60, what="node-a to start executing")[0]
        rc, out, _ = pg.psql("SELECT lease_owner FROM checkpoints WHERE id = '%s'" % inc["id"],
                             db="e2e_pair")
        check(out == "node-a", "node-a holds the lease (%s)" % out)
        a.kill9()
        doc = b.wait_for(lambda: (lambda x: x if x and x["state"] == "resolved" else None)(
            incident(b, inc["id"])), timeout=60, what="node-b to take over and resolve")
        check(len(doc["executions"]) == 1 and doc["executions"][0]["state"] == "done",
              "one execution record after the takeover")
        rc, out, _ = pg.psql("SELECT lease_owner || ' ' || open FROM checkpoints WHERE id = '%s'"
                             % inc["id"], db="e2e_pair")
        check(out == "node-b false", "node-b took the lease and closed the incident (%s)" % out)
    finally:
        rc = b.stop()
    check(rc == 0, "node-b drains and exits 0")
    out = verify(b)
    check(out.returncode == 0 and "audit chain ok" in out.stdout,
          "one chain written by both nodes verifies: " + out.stdout.strip())
    log += whole_log(a) + whole_log(b)
    a.cleanup()
    b.cleanup()

    # ---- 5. silences are answered once stored: a refused write is a 503, not a lost 201 ----
    FAIL_SQL = ("CREATE FUNCTION refuse_silence() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.id LIKE 'silence/%%' THEN RAISE EXCEPTION 'e2e: refused'; END IF; "
                "RETURN NEW; END $$; CREATE TRIGGER refuse_silence BEFORE %s ON checkpoints "
                "FOR EACH ROW EXECUTE FUNCTION refuse_silence()")
    UNDO_SQL = "DROP TRIGGER refuse_silence ON checkpoints; DROP FUNCTION refuse_silence()"
    d = Daemon(conf=conf_for(pg, "e2e_silence")).start()
    try:
        d.wait_for(lambda: (lambda x: x and x["ok"])(store_health(d)),
                   what="the postgres store to be healthy")
        body = json.dumps({"matchers": {"service": "cart"}, "duration_s": 3600})
        rc, _, err = pg.psql_admin(FAIL_SQL % "INSERT OR UPDATE", db="e2e_silence")
        check(rc == 0, "a trigger refuses silence rows " + err)
        st, out = d.json("POST", "/v1/silences", body)
        check(st == 503 and "not created" in out["error"],
              "a silence the store refuses is answered 503 (%d %s)" % (st, out))
        check(d.json("GET", "/v1/silences")[1]["silences"] == [],
              "and it is not listed, so it silences nothing")
        pg.psql_admin(UNDO_SQL, db="e2e_silence")
        st, made = d.json("POST", "/v1/silences", body)
        check(st == 201, "with the trigger gone it is created (%d)" % st)
        rc, out, _ = pg.psql("SELECT count(*) FROM checkpoints WHERE id = 'silence/%s' AND open"
                             % made["id"], db="e2e_silence")
        check(out == "1", "the 201 came after the row was in PostgreSQL (%s)" % out)
        pg.psql_admin(FAIL_SQL % "UPDATE", db="e2e_silence")
        st, out = d.json("POST", "/v1/silences/%s/expire" % made["id"])
        check(st == 503 and "stays active" in out["error"],
              "an expiry the store refuses is answered 503 (%d %s)" % (st, out))
        listed = d.json("GET", "/v1/silences")[1]["silences"]
        check(len(listed) == 1 and listed[0]["active"] and not listed[0]["expired"],
              "and the silence stays active, as stored")
        pg.psql_admin(UNDO_SQL, db="e2e_silence")
        st, _ = d.json("POST", "/v1/silences/%s/expire" % made["id"])
        rc, out, _ = pg.psql("SELECT open FROM checkpoints WHERE id = 'silence/%s'" % made["id"],
                             db="e2e_silence")
        check(st == 200 and out == "f", "a second try expires it, stored closed (%d %s)"
              % (st, out))
        acts = [r["action"] for r in d.json("GET", "/v1/audit")[1]["records"]]
        check(acts.count("silence_create") == 1 and acts.count("silence_expire") == 1,
              "only what was stored is audited (%s)" % [a for a in acts if "silence" in a])
    finally:
        rc = d.stop()
    check(rc == 0, "sentineld drains and exits 0")
    log += whole_log(d)
    d.cleanup()
    check(pg.password not in log, "the database password never appears in the daemons' logs")
finally:
    pg.stop()
print("1..ok")
