"""A Kafka cluster for tests: librdkafka's mock cluster run by tools/kafka-mock, plus kcat (the
real third-party client) to produce and consume.

    from kafkamock import KafkaMock
    with KafkaMock(topics={"telemetry": 6, "dlq": 1}, brokers=3) as k:
        k.produce("telemetry", ["{...}", "{...}"])          # one message per item, lz4
        msgs = k.consume("dlq", fmt="%h\\t%s\\n")             # everything from the beginning
        k.broker_down()                                      # all brokers; k.broker_up() back
        k.control("rtt", 2, 500)                             # any kafka-mock --control command

The mock keeps about 5 MiB (or 100000 message sets) per partition and silently drops the oldest
beyond that; it stores batches as produced, so the limit is on compressed bytes (a 10 MB message
of repetitive JSON lines, zstd-compressed, fits). It has no persistence: stop() loses everything.
Faults go through kafka-mock's control channel (its stdin/stdout, see tools/kafka-mock): a broker
set down closes its connections and refuses new ones until set up again.
Standard library only.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time

KCAT = shutil.which("kcat") or shutil.which("kafkacat")


def _build_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("SN_BUILD_DIR", os.path.join(here, "..", "..", "build"))


def mock_binary(build=None):
    return os.path.join(build or _build_dir(), "tools", "kafka-mock", "kafka-mock")


class KafkaMock:
    def __init__(self, topics=None, brokers=1, build=None):
        self.topics = dict(topics or {})
        self.brokers = brokers
        self.binary = mock_binary(build)
        self.dir = None
        self.proc = None
        self.bootstrap = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout=10):
        if not os.path.exists(self.binary):
            raise RuntimeError("kafka-mock not built: " + self.binary)
        if not KCAT:
            raise RuntimeError("kcat not found")
        self.dir = tempfile.mkdtemp(prefix="sn-kafka-")
        boot = os.path.join(self.dir, "bootstrap")
        args = [self.binary, "--brokers", str(self.brokers), "--bootstrap-file", boot]
        for name, parts in self.topics.items():
            args += ["--topic", "%s:%d" % (name, parts)]
        self.log = open(os.path.join(self.dir, "kafka-mock.log"), "ab")
        args.append("--control")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.exists(boot):
                with open(boot) as f:
                    self.bootstrap = f.read().strip()
                if self.bootstrap:
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError("kafka-mock exited: %s" % self.logtext())
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("kafka-mock did not write its bootstrap list")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # ends the control channel first
            except OSError:
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None
        if self.dir and os.environ.get("SN_KEEP") is None:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def logtext(self):
        try:
            with open(os.path.join(self.dir, "kafka-mock.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")[-2000:]
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- faults ---------------------------------------------------------------------------
    def control(self, *words):
        """One kafka-mock control command ("down", -1); returns once the cluster applied it."""
        line = " ".join(str(w) for w in words) + "\n"
        self.proc.stdin.write(line.encode())
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().decode("utf-8", "replace").strip()
        if answer != "ok":
            raise RuntimeError("kafka-mock %s: %s" % (line.strip(), answer or "no answer"))

    def broker_down(self, broker=-1):
        """Cut broker @broker (1..N, -1 all): connections closed, new ones refused."""
        self.control("down", broker)

    def broker_up(self, broker=-1):
        self.control("up", broker)

    # -- kcat -----------------------------------------------------------------------------
    def kcat(self, *args, input=None, timeout=120):
        cmd = [KCAT, "-b", self.bootstrap] + list(args)
        r = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), r.returncode,
                                                       r.stderr.decode("utf-8", "replace")))
        return r.stdout

    def produce(self, topic, messages, partition=None, delimiter="\x1e", headers=None,
                keys=None, extra=(), compression="lz4"):
        """Produce each item of @messages (str or bytes) as one message, compressed with
        @compression (lz4, zstd, gzip, snappy, none); messages up to 16 MiB.
        Items may hold newlines: messages are separated by @delimiter on kcat's stdin. With
        @keys (one per message) the messages are keyed, so they spread over the partitions by
        hash (without keys librdkafka's sticky partitioner puts a burst on one partition)."""
        sep = delimiter.encode()
        items = [m.encode() if isinstance(m, str) else m for m in messages]
        args = ["-P", "-t", topic, "-z", compression, "-D", delimiter,
                "-X", "message.max.bytes=%d" % (16 << 20)]
        if keys is not None:
            items = [(k.encode() if isinstance(k, str) else k) + b"\x1f" + m
                     for k, m in zip(keys, items)]
            args += ["-K", "\x1f"]
        data = sep.join(items)
        if partition is not None:
            args += ["-p", str(partition)]
        for k, v in (headers or {}).items():
            args += ["-H", "%s=%s" % (k, v)]
        self.kcat(*(args + list(extra)), input=data)

    def produce_file(self, topic, path, extra=()):
        """One message per line of @path (kcat -l), lz4-compressed."""
        self.kcat("-P", "-t", topic, "-z", "lz4", "-l", *extra, path)

    def consume(self, topic, fmt="%s\\n", timeout=60, extra=()):
        """Everything in @topic from the beginning, formatted by kcat -f (bytes)."""
        return self.kcat("-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", fmt, *extra,
                         timeout=timeout)
