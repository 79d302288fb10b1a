"""What the Kafka benchmarks share (bench_kafka.py, bench_kafka_lag.py): the pipeline under
test (Kafka -> zscore + iqr + seasonal, with a telemetry store), the records (100 series,
keyed by series so each stays in one partition), and the ClickHouse store section."""
import json

T0 = 1795600800000
SERIES = 100

_CONF = """
[sentinel]
listen = 127.0.0.1:{port}
state = local
{extra_core}
@TELEMETRY@

[store:local]
plugin = sqlite
path = {dir}/sentinel.db

[input:kafka]
plugin = kafka
brokers = @BOOT@
topics = bench
group_id = @GROUP@
@INPUT@

[detector:latency]
plugin = zscore

[detector:spread]
plugin = iqr

[detector:daily]
plugin = seasonal

[pipeline]
edge = kafka -> latency, spread, daily
edge = latency, spread, daily -> correlate
"""


def conf(boot, group, telemetry=None, input_lines=(), ch_url=None, ch_db=None, ch_lines=()):
    """The configuration text (for sntest.Daemon) of one sentineld consuming topic `bench`:
    @telemetry names the [sentinel] telemetry store ("local" is the sqlite one, "ch" a
    ClickHouse store at @ch_url/@ch_db, added here), or None for none; @input_lines and
    @ch_lines are extra "key = value" lines for the Kafka input and the ClickHouse store."""
    text = (_CONF.replace("@BOOT@", boot).replace("@GROUP@", group)
            .replace("@TELEMETRY@", "telemetry = %s" % telemetry if telemetry else "")
            .replace("@INPUT@", "\n".join(input_lines)))
    if ch_url:
        text += "\n[store:ch]\nplugin = clickhouse\nurl = %s\ndatabase = %s\n%s\n" % (
            ch_url, ch_db, "\n".join(ch_lines))
    return text


def record_line(i, step_ms, rnd):
    """Record @i as a kcat -K "|" line: "key|json\\n"; a series' points are @step_ms apart."""
    s = i % SERIES
    rec = {"ts": T0 + (i // SERIES) * step_ms, "metric": "bench_latency_ms",
           "value": round(100 + 10 * (s % 7) + rnd.gauss(0, 3), 2),
           "labels": {"service": "svc%d" % (s % 20), "pod": "pod-%d" % s}}
    return "s%d|%s\n" % (s, json.dumps(rec, separators=(",", ":")))
