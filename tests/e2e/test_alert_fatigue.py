"""Alert fatigue, measured: on the generated six hours of scripts/alert_fatigue.py, Sentinel's
detect + correlate path pages at least 80 % less than threshold-only alerting and misses no
true incident."""
import os
import sys

from sntest import SENTINELD, SOURCE, check

sys.path.insert(0, os.path.join(SOURCE, "scripts"))
import alert_fatigue as af  # noqa: E402

lines, values, truth = af.generate()
pages = af.threshold_pages(values)
r = af.evaluate(truth, pages, af.run_sentinel(SENTINELD, lines))
check(r["true_incidents"] == 8 and r["threshold_pages"] > 100,
      "the scenario pages %d times on thresholds" % r["threshold_pages"])
check(r["sentinel_missed"] == 0, "every true incident is caught (missed: %s)" % r["missed"])
check(r["reduction_pct"] >= 80, "pages cut by %.1f %% (%d incidents vs %d threshold pages)"
      % (r["reduction_pct"], r["sentinel_pages"], r["threshold_pages"]))
