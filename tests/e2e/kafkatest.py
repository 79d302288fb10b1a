"""What the Kafka e2e tests share: the skip when the Kafka parts are missing, the input's
metrics, and waiting with the daemons' logs on a timeout."""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))

from kafkamock import KCAT, mock_binary  # noqa: E402
from sntest import BUILD, fail  # noqa: E402


def skip_unless_kafka():
    """Exit 0 with a skip line when the kafka plugin, kafka-mock or kcat is missing."""
    if not (os.path.exists(os.path.join(BUILD, "plugins", "sn_input_kafka.so"))
            and os.path.exists(mock_binary(BUILD)) and KCAT):
        print("skip: kafka input, kafka-mock or kcat not available")
        sys.exit(0)


def metric(d, name, missing=0.0):
    """The input:kafka instance's value of sentinel_<name>, or @missing."""
    try:
        st, raw, _ = d.request("GET", "/metrics")
    except OSError:
        return missing
    want = 'sentinel_%s{instance="input:kafka"} ' % name
    for line in raw.decode().splitlines():
        if line.startswith(want):
            return float(line.split()[-1])
    return missing


def wait(pred, timeout, what, daemons=()):
    """pred()'s first true value within timeout seconds; else fail with the daemons' logs
    (one daemon or a sequence of them)."""
    if hasattr(daemons, "logtext"):
        daemons = [daemons]
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    fail("timed out waiting for %s\n%s" % (what, "\n".join(d.logtext() for d in daemons)))
