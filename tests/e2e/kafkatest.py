"""What the Kafka e2e tests share: the skip when the Kafka parts are missing, the base
configuration with a Kafka input, the input's metrics, reading a daemon's sqlite telemetry
store, and waiting with the daemons' logs on a timeout."""
import os
import sqlite3
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "support"))

from kafkamock import KCAT, mock_binary  # noqa: E402
from sntest import BASE_CONF, BUILD, wait_until  # noqa: E402


def skip_unless_kafka():
    """Exit 0 with a skip line when the kafka plugin, kafka-mock or kcat is missing."""
    if not (os.path.exists(os.path.join(BUILD, "plugins", "sn_input_kafka.so"))
            and os.path.exists(mock_binary(BUILD)) and KCAT):
        print("skip: kafka input, kafka-mock or kcat not available")
        sys.exit(0)


def conf_with(kafka_section):
    """sntest's base configuration with @kafka_section ([input:kafka] ..., already formatted)
    beside the HTTP input, feeding the same detector."""
    kafka = kafka_section.replace("{", "{{").replace("}", "}}")
    return BASE_CONF.replace("[input:events]\nplugin = http\n",
                             "[input:events]\nplugin = http\n\n" + kafka).replace(
        "edge = events -> latency", "edge = events -> latency\nedge = kafka -> latency")


def store_rows(d, sql):
    """The rows @sql finds in the daemon's sqlite telemetry store (read-only), or [] while the
    store does not exist yet or is busy."""
    path = os.path.join(d.dir, "sentinel.db")
    if not os.path.exists(path):
        return []
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
    try:
        return db.execute(sql).fetchall()
    except sqlite3.Error:
        return []
    finally:
        db.close()


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


# pred()'s first true value within timeout seconds, else a failure with the daemons' logs.
wait = wait_until
