"""SIGHUP: a broken configuration is refused and the running one stays (still serving, audit
says so); a valid one is accepted and audited."""
import signal
import time

from sntest import Daemon, check

d = Daemon().start()
try:
    good = open(d.conf_path).read()
    with open(d.conf_path, "w") as f:
        f.write(good.replace("threshold = 4", "treshold = 4"))
    d.proc.send_signal(signal.SIGHUP)
    rec = d.wait_for(lambda: d.json("GET", "/v1/audit?action=config_reload")[1]["records"],
                     what="the reload to be audited")
    check(rec[0]["detail"]["result"] == "refused", "broken config refused on SIGHUP")
    check(d.request("GET", "/health")[0] == 200, "the daemon keeps serving the old graph")
    check("did you mean 'threshold'" in d.logtext(), "the reload error names the typo")
    with open(d.conf_path, "w") as f:
        f.write(good)
    d.proc.send_signal(signal.SIGHUP)
    rec = d.wait_for(lambda: (lambda r: r if len(r) >= 2 else None)(
        d.json("GET", "/v1/audit?action=config_reload")[1]["records"]), what="second reload")
    check(rec[1]["detail"]["result"] == "unchanged instances", "valid config accepted")
    time.sleep(0.1)
    check(d.proc.poll() is None, "still running")
finally:
    d.cleanup()
