"""Symbol hygiene and audit tamper detection.

- sentineld links no plugin code: none of the plugins' entry points or kind functions appear in
  its dynamic symbol table, and every plugin .so exports only sn_plugin_entry.
- After a workflow, altering or deleting an audit record in the database (as someone with file
  access could, after dropping the append-only triggers) makes `sentinelctl audit verify` fail
  naming the record.
"""
import glob
import os
import sqlite3
import subprocess

from sntest import BUILD, SENTINELCTL, SENTINELD, Daemon, check, scenario

nm = subprocess.run(["nm", "-D", "--defined-only", SENTINELD], capture_output=True, text=True)
syms = [l.split()[-1] for l in nm.stdout.splitlines() if l.strip()]
check(not [s for s in syms if "plugin_entry" in s or s.startswith(("zs_", "mk_", "sq_"))],
      "sentineld exports no plugin code")
plugins = glob.glob(os.path.join(BUILD, "plugins", "sn_*.so"))
check(len(plugins) >= 9, "plugins built (%d)" % len(plugins))
for p in plugins:
    out = subprocess.run(["nm", "-D", "--defined-only", p], capture_output=True, text=True).stdout
    exported = [l.split()[-1] for l in out.splitlines() if l.split()[1] in "TDBRtdbr"[:4]]
    check(exported == ["sn_plugin_entry"], "%s exports only sn_plugin_entry (%s)"
          % (os.path.basename(p), exported))

d = Daemon().start()
try:
    d.post_file(scenario("checkout-deploy"))
    d.wait_for(lambda: d.incidents("resolved"), what="resolution")
finally:
    d.stop()


def verify():
    return subprocess.run([SENTINELCTL, "audit", "verify", "-c", d.conf_path],
                          capture_output=True, text=True)


out = verify()
check(out.returncode == 0, "untouched chain verifies: " + out.stdout.strip())
db = sqlite3.connect(os.path.join(d.dir, "sentinel.db"))
try:
    db.execute("UPDATE audit SET record = record WHERE seq = 2")
    check(False, "the append-only trigger refused UPDATE")
except sqlite3.DatabaseError as e:
    check("append-only" in str(e), "the append-only trigger refuses UPDATE")
db.execute("DROP TRIGGER audit_no_update")
db.execute("DROP TRIGGER audit_no_delete")
db.execute("UPDATE audit SET record = replace(record, '\"actor\":\"policy\"', '\"actor\":\"mallory\"')"
           " WHERE action = 'approve'")
db.commit()
out = verify()
check(out.returncode == 4 and "hash mismatch" in out.stdout,
      "altered record detected: " + out.stdout.strip())
db.execute("UPDATE audit SET record = replace(record, '\"actor\":\"mallory\"', '\"actor\":\"policy\"')")
db.execute("DELETE FROM audit WHERE seq = 3")
db.commit()
out = verify()
check(out.returncode == 4 and "record removed" in out.stdout,
      "removed record detected: " + out.stdout.strip())
db.execute("DELETE FROM audit WHERE seq <= 3")
db.commit()
out = verify()
check(out.returncode == 4 and "no retention anchor" in out.stdout,
      "records removed from the start of the chain detected: " + out.stdout.strip())
db.execute("INSERT INTO audit_anchor(seq, hash) VALUES(3, 'f00d')")
db.commit()
out = verify()
check(out.returncode == 4 and "BROKEN" in out.stdout,
      "a forged anchor whose hash does not chain is detected: " + out.stdout.strip())
import json as _json
rec4 = _json.loads(db.execute("SELECT record FROM audit WHERE seq = 4").fetchone()[0])
db.execute("UPDATE audit_anchor SET hash = ? WHERE seq = 3", (rec4["prev_hash"],))
db.commit()
out = verify()
check(out.returncode == 0 and "retention anchor" in out.stdout,
      "a chain that starts behind a matching retention anchor verifies: " + out.stdout.strip())
db.close()
d.cleanup()
