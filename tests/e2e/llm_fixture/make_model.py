#!/usr/bin/env python3
"""Make the tiny random-weight chat model the llm fixture serves (a test fixture, not a model
anyone should use): real llama.cpp tokenizer and chat template, nonsense weights.

There are no pretrained chat weights on this machine (no model hub), so the model is made at
test time from two parts:
  1. the vocabulary: llama.cpp keeps vocabulary-only GGUF files (tokenizer, merges, chat
     template, no tensors) in its models/ folder, and node-llama-cpp ships llama.cpp's source as
     a git bundle (node_modules/node-llama-cpp/llama/gitRelease.bundle). The file is read out of
     the bundle with git into a temporary directory; by default ggml-vocab-qwen2.gguf (the
     Qwen2 BPE tokenizer, ChatML template, about 152 000 tokens).
  2. the weights: a GGUF v3 file is written with every tokenizer key of the vocabulary file and
     a tiny llama architecture (embedding 64, 2 layers, 4 heads, feed-forward 128) whose tensors
     are random F32 values from a fixed seed, so the same file comes out every time.
The result (about 45 MB) is cached: it is rebuilt only when the output file is missing.

GGUF v3 layout (ggml's gguf.h / docs/gguf.md): "GGUF", u32 version, u64 tensor count, u64
key-value count, the key-values (u64-length strings, u32 type, value), the tensor infos (name,
u32 dims, u64 sizes innermost first, u32 ggml type, u64 offset into the data section), padding
to general.alignment (32), then the tensor data, each tensor aligned.

    python3 make_model.py --node-modules DIR --out FILE [--vocab qwen2] [--seed 7]

Licenses: llama.cpp (and its vocabulary files) and node-llama-cpp are MIT-licensed. Standard
library only.
"""
import argparse
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

# GGUF value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
ALIGN = 32
GGML_F32 = 0

# The tiny architecture: small enough to write in a second and generate ~100 tokens/s on 2 cores.
N_EMBD, N_LAYER, N_HEAD, N_FF, N_CTX = 64, 2, 4, 128, 8192


class Reader:
    def __init__(self, data):
        self.d, self.o = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.o)[0]
        self.o += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = self.d[self.o:self.o + n]
        self.o += n
        return s

    def value(self, t):
        if t == STR:
            return self.string()
        if t == ARR:
            et, n = self.take("<I"), self.take("<Q")
            if et in SCALAR:  # read a scalar array in one go
                size = struct.calcsize(SCALAR[et]) * n
                raw = self.d[self.o:self.o + size]
                self.o += size
                return (et, n, raw)
            return (et, n, [self.value(et) for _ in range(n)])
        return self.take(SCALAR[t])


def read_kv(path):
    """The key-values of a GGUF file as [(key bytes, type, value)]."""
    with open(path, "rb") as f:
        r = Reader(f.read())
    if r.d[:4] != b"GGUF":
        sys.exit("%s: not a GGUF file" % path)
    r.o = 4
    version, ntensors, nkv = r.take("<I"), r.take("<Q"), r.take("<Q")
    if version not in (2, 3):
        sys.exit("%s: GGUF version %d" % (path, version))
    out = []
    for _ in range(nkv):
        k = r.string()
        t = r.take("<I")
        out.append((k, t, r.value(t)))
    return out


def enc_string(s):
    if isinstance(s, str):
        s = s.encode()
    return struct.pack("<Q", len(s)) + s


def enc_value(t, v):
    if t == STR:
        return enc_string(v)
    if t == ARR:
        et, n, items = v
        head = struct.pack("<IQ", et, n)
        if isinstance(items, (bytes, bytearray)):
            return head + items
        return head + b"".join(enc_value(et, x) for x in items)
    return struct.pack(SCALAR[t], v)


def random_f32(rng, n):
    """n float32 values, uniform sign, magnitude in [1/128, 1/32): built from random bytes (the
    low 23 mantissa bits and one exponent bit random, the rest fixed), fast without numpy."""
    low = rng.randbytes(3 * n)
    signs = rng.randbytes(n).translate(bytes(0x3C if b < 128 else 0xBC for b in range(256)))
    buf = bytearray(4 * n)
    buf[0::4] = low[0:n]
    buf[1::4] = low[n:2 * n]
    buf[2::4] = low[2 * n:3 * n]
    buf[3::4] = signs
    return bytes(buf)


def ones_f32(n):
    return struct.pack("<f", 1.0) * n


def tensors(n_vocab, rng):
    """(name, dims innermost first, data) of the llama architecture."""
    out = [("token_embd.weight", (N_EMBD, n_vocab), random_f32(rng, N_EMBD * n_vocab))]
    for i in range(N_LAYER):
        p = "blk.%d." % i
        out += [
            (p + "attn_norm.weight", (N_EMBD,), ones_f32(N_EMBD)),
            (p + "attn_q.weight", (N_EMBD, N_EMBD), random_f32(rng, N_EMBD * N_EMBD)),
            (p + "attn_k.weight", (N_EMBD, N_EMBD), random_f32(rng, N_EMBD * N_EMBD)),
            (p + "attn_v.weight", (N_EMBD, N_EMBD), random_f32(rng, N_EMBD * N_EMBD)),
            (p + "attn_output.weight", (N_EMBD, N_EMBD), random_f32(rng, N_EMBD * N_EMBD)),
            (p + "ffn_norm.weight", (N_EMBD,), ones_f32(N_EMBD)),
            (p + "ffn_gate.weight", (N_EMBD, N_FF), random_f32(rng, N_EMBD * N_FF)),
            (p + "ffn_up.weight", (N_EMBD, N_FF), random_f32(rng, N_EMBD * N_FF)),
            (p + "ffn_down.weight", (N_FF, N_EMBD), random_f32(rng, N_FF * N_EMBD)),
        ]
    # no output.weight: llama.cpp ties the output layer to token_embd when it is absent
    out.append(("output_norm.weight", (N_EMBD,), ones_f32(N_EMBD)))
    return out


def write_model(vocab_path, out_path, seed):
    kv_in = read_kv(vocab_path)
    tok = [(k, t, v) for k, t, v in kv_in if k.startswith(b"tokenizer.")]
    tokens = [v for k, t, v in tok if k == b"tokenizer.ggml.tokens"]
    if not tokens:
        sys.exit("%s: no tokenizer.ggml.tokens" % vocab_path)
    n_vocab = tokens[0][1]
    arch = b"llama"
    kv = [
        (b"general.architecture", STR, arch),
        (b"general.name", STR, b"sentinel-test-random-tiny"),
        (b"general.alignment", U32, ALIGN),
        (b"llama.context_length", U32, N_CTX),
        (b"llama.embedding_length", U32, N_EMBD),
        (b"llama.block_count", U32, N_LAYER),
        (b"llama.feed_forward_length", U32, N_FF),
        (b"llama.attention.head_count", U32, N_HEAD),
        (b"llama.attention.head_count_kv", U32, N_HEAD),
        (b"llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        (b"llama.rope.dimension_count", U32, N_EMBD // N_HEAD),
        (b"llama.vocab_size", U32, n_vocab),
    ] + tok
    rng = random.Random(seed)
    ts = tensors(n_vocab, rng)
    tmp = out_path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(ts), len(kv)))
        for k, t, v in kv:
            f.write(enc_string(k) + struct.pack("<I", t) + enc_value(t, v))
        offset = 0
        for name, dims, data in ts:
            f.write(enc_string(name) + struct.pack("<I", len(dims)))
            f.write(b"".join(struct.pack("<Q", d) for d in dims))
            f.write(struct.pack("<IQ", GGML_F32, offset))
            offset += (len(data) + ALIGN - 1) // ALIGN * ALIGN
        f.write(b"\0" * (-f.tell() % ALIGN))
        for _, _, data in ts:
            f.write(data)
            f.write(b"\0" * (-len(data) % ALIGN))
    os.replace(tmp, out_path)


def extract_vocab(node_modules, vocab, dest):
    """Read models/ggml-vocab-<vocab>.gguf out of node-llama-cpp's llama.cpp git bundle."""
    bundle = os.path.join(node_modules, "node-llama-cpp", "llama", "gitRelease.bundle")
    if not os.path.exists(bundle):
        sys.exit("no llama.cpp git bundle at " + bundle)
    git = shutil.which("git")
    if not git:
        sys.exit("git is not installed")
    with tempfile.TemporaryDirectory(prefix="llm-vocab-") as tmp:
        repo = os.path.join(tmp, "llama.cpp")
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
        subprocess.run([git, "clone", "-q", "--bare", bundle, repo], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        blob = subprocess.run([git, "--git-dir", repo, "show",
                               "HEAD:models/ggml-vocab-%s.gguf" % vocab],
                              check=True, env=env, capture_output=True).stdout
    with open(dest, "wb") as f:
        f.write(blob)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--node-modules", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab", default="qwen2")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    if os.path.exists(a.out):
        return
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    vocab = a.out + ".vocab.gguf"
    extract_vocab(a.node_modules, a.vocab, vocab)
    try:
        write_model(vocab, a.out, a.seed)
    finally:
        os.unlink(vocab)


if __name__ == "__main__":
    main()
