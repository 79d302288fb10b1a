#!/usr/bin/env node
/*
 * Test fixture: a REAL llama.cpp inference engine (node-llama-cpp, CPU build) behind an
 * OpenAI-compatible HTTP API, serving the tiny random-weight model make_model.py writes. It
 * exists so the `llm` analyzer is tested against real tokenisation, real grammar-constrained
 * decoding and real token counts rather than only against a scripted double. The model's words
 * are nonsense: tests assert protocol and structure, never content.
 *
 *   node serve.mjs --model FILE --port-file FILE [--port N] [--api-key KEY] [--ctx 8192]
 *                  [--threads 1] [--name MODEL]
 *
 * Listens on 127.0.0.1 (port 0 = any free one) and writes the port to FILE once the model is
 * loaded. Every /v1 route may be preceded by one path segment ("/p1/v1/chat/completions") so one
 * fixture stands in for several providers; faults can be aimed at one of them.
 *
 *   POST /v1/chat/completions  messages (system, user, assistant with tool_calls, tool),
 *        model, temperature, max_completion_tokens | max_tokens, response_format
 *        {"type":"json_schema","json_schema":{"schema"}} (node-llama-cpp grammar from the schema)
 *        | {"type":"json_object"} (generic JSON grammar) | none, tools + tool_choice. The prompt
 *        is rendered in ChatML, the template of the Qwen2 vocabulary, with tools and tool calls
 *        in Qwen2.5's <tools>/<tool_call>/<tool_response> convention. Reply: {"id","object":
 *        "chat.completion","created","model","choices":[{"index":0,"finish_reason":"stop"|
 *        "length"|"tool_calls","message":{"role":"assistant","content"|"tool_calls"}}],"usage":
 *        {"prompt_tokens","completion_tokens","total_tokens"}} with the real token counts.
 *        A random model never decides to call a tool on its own, so tool calls happen only when a
 *        fault rule says so ("tools": "open" = whenever tools are offered and tool_choice is not
 *        "none"; "always" = even then, a misbehaving model): the call itself (which tool, its
 *        arguments) is generated under a grammar built from the tools' parameter schemas.
 *   POST /v1/embeddings  {"input": string | [strings]} -> OpenAI shape; the model's own (mean
 *        pooled, 64-dimension) embeddings: deterministic, meaningless.
 *   GET  /v1/models      the one model.
 *   POST /control/faults {"faults": [rule, ...]} replaces the fault rules. First matching rule
 *        wins; a rule: "prefix" (only that provider), "times" (used that many times), and
 *        "status" (HTTP error in the OpenAI shape, "retry_after" seconds for a Retry-After
 *        header, "code"), "delay_ms" (wait before answering; the request is dropped unanswered
 *        if the client went away meanwhile), "drop" (close the connection without a reply),
 *        "tools" ("open" | "always", see above), "max_tokens" (cap on generated tokens).
 *   GET  /stats          {"requests": [{"prefix","at","status","fault","messages",
 *        "request_schema","schema" (as given to the grammar),"tool_choice","tools","format",
 *        "prompt_tokens","completion_tokens","finish_reason","content","tool_calls","gen_ms"
 *        (generation),"server_ms" (body received to reply sent)}]} (last 200) for assertions;
 *        POST /control/reset clears them.
 *   GET  /healthz        200 once the model is loaded.
 * With --api-key every /v1 route needs "Authorization: Bearer KEY". Schemas are reduced to the
 * subset node-llama-cpp's grammar supports (type, enum, const, properties, required,
 * additionalProperties, items, minItems, maxItems, minLength, maxLength, maxProperties); every
 * string is bounded to 16 characters and every array to 2 items, so a weak model's reply fits in
 * a few hundred tokens (about 40 tokens/s under a grammar with a 152 000-token vocabulary),
 * a number within [0, 1] becomes an enum of 0.05 steps (the grammar has no minimum/maximum), and
 * an object of free-form keys (additionalProperties a schema, no properties) is generated empty.
 * The reply is still a subset of the caller's schema; the caller validates it anyway, which is
 * the point of the exercise.
 *
 * One generation at a time (one context sequence), like a single-slot llama.cpp server.
 * Licenses: node-llama-cpp and llama.cpp (with its vocabulary files) are MIT.
 */
import fs from "node:fs";
import http from "node:http";
import { getLlama, LlamaCompletion } from "node-llama-cpp";

const MAX_BODY = 4 * 1024 * 1024;
const STRING_MAX = 16;
const ARRAY_MAX = 2;

function parseArgs(argv) {
  const out = { port: 0, portFile: "", apiKey: "", model: "", ctx: 8192, threads: 1, name: "random-tiny" };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i], v = argv[i + 1];
    if (a === "--port") out.port = Number(v);
    else if (a === "--port-file") out.portFile = v;
    else if (a === "--api-key") out.apiKey = v;
    else if (a === "--model") out.model = v;
    else if (a === "--ctx") out.ctx = Number(v);
    else if (a === "--threads") out.threads = Number(v);
    else if (a === "--name") out.name = v;
    else { console.error("unknown argument " + a); process.exit(2); }
    i++;
  }
  if (!out.model) { console.error("--model FILE is required"); process.exit(2); }
  return out;
}

function send(res, status, doc, headers = {}) {
  if (res.destroyed) return;
  const body = JSON.stringify(doc);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body), ...headers });
  res.end(body);
}

function error(res, status, message, type, code = null, headers = {}) {
  send(res, status, { error: { message, type, param: null, code } }, headers);
}

/* The schema subset the grammar understands, strings bounded. */
function reduceSchema(s) {
  if (!s || typeof s !== "object") return {};
  if (Array.isArray(s.enum)) return { enum: s.enum };
  if (s.const !== undefined) return { const: s.const };
  const out = {};
  const types = Array.isArray(s.type) ? s.type : [s.type];
  if (s.type !== undefined) out.type = s.type;
  // The grammar has no minimum/maximum: a number within [0, 1] (a probability) becomes the
  // steps 0, 0.05, ..., 1, so a reply can be valid; other bounds are left to the caller.
  if (s.type === "number" && s.minimum >= 0 && s.maximum <= 1)
    return { enum: Array.from({ length: 21 }, (_, i) => Math.round(i * 5) / 100).filter((x) => x >= s.minimum && x <= s.maximum) };
  if (types.includes("string")) {
    if (s.minLength !== undefined) out.minLength = s.minLength;
    out.maxLength = Math.min(s.maxLength !== undefined ? s.maxLength : STRING_MAX, STRING_MAX);
  }
  if (s.type === "object") {
    out.properties = {};
    if (s.additionalProperties && typeof s.additionalProperties === "object" && !s.properties) {
      // free-form keys ("params") are unbounded in the grammar: a weak model would invent keys
      // until max_tokens; an empty object is what a model that knows no parameter sends
      return { type: "object", properties: {}, additionalProperties: false };
    }
    for (const [k, v] of Object.entries(s.properties || {})) out.properties[k] = reduceSchema(v);
    if (Array.isArray(s.required)) out.required = s.required;
    if (s.additionalProperties && typeof s.additionalProperties === "object")
      out.additionalProperties = reduceSchema(s.additionalProperties);
    else out.additionalProperties = false;
    if (s.maxProperties !== undefined) out.maxProperties = s.maxProperties;
  }
  if (s.type === "array") {
    out.items = reduceSchema(s.items);
    if (s.minItems !== undefined) out.minItems = s.minItems;
    out.maxItems = Math.min(s.maxItems !== undefined ? s.maxItems : ARRAY_MAX, ARRAY_MAX);
  }
  if (s.type === undefined) return { type: "string", maxLength: STRING_MAX };
  return out;
}

function textOf(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p) => (p && typeof p.text === "string" ? p.text : "")).join("");
  return "";
}

/* ChatML, with Qwen2.5's tool convention. */
function renderPrompt(messages, tools) {
  let out = "";
  let sys = "";
  let i = 0;
  if (messages[0] && (messages[0].role === "system" || messages[0].role === "developer")) {
    sys = textOf(messages[0].content);
    i = 1;
  }
  if (tools.length) {
    sys += "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n<tools>\n" +
      tools.map((t) => JSON.stringify(t)).join("\n") +
      "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags.";
  }
  out += "<|im_start|>system\n" + (sys || "You are a helpful assistant") + "<|im_end|>\n";
  for (; i < messages.length; i++) {
    const m = messages[i];
    if (m.role === "tool") {
      out += "<|im_start|>user\n<tool_response>\n" + textOf(m.content) + "\n</tool_response><|im_end|>\n";
    } else if (m.role === "assistant") {
      let body = textOf(m.content);
      for (const c of m.tool_calls || [])
        body += "\n<tool_call>\n" + JSON.stringify({ name: c.function?.name, arguments: c.function?.arguments }) + "\n</tool_call>";
      out += "<|im_start|>assistant\n" + body + "<|im_end|>\n";
    } else {
      out += "<|im_start|>" + (m.role === "developer" ? "system" : m.role) + "\n" + textOf(m.content) + "<|im_end|>\n";
    }
  }
  return out + "<|im_start|>assistant\n";
}

function validRequest(doc) {
  if (!doc || typeof doc !== "object") return "We could not parse the JSON body of your request.";
  if (typeof doc.model !== "string" || !doc.model) return "you must provide a model parameter";
  if (!Array.isArray(doc.messages) || !doc.messages.length) return "'messages' must be a non-empty array";
  const open = new Set();
  for (const m of doc.messages) {
    if (!m || !["system", "developer", "user", "assistant", "tool"].includes(m.role)) return "invalid role in messages";
    if (m.role === "assistant") for (const c of m.tool_calls || []) open.add(c.id);
    if (m.role === "tool" && !open.has(m.tool_call_id)) return "tool message without a matching tool call";
  }
  const rf = doc.response_format;
  if (rf !== undefined && rf !== null) {
    if (!["text", "json_object", "json_schema"].includes(rf.type)) return "invalid response_format";
    if (rf.type === "json_schema" && (!rf.json_schema || typeof rf.json_schema.schema !== "object"))
      return "json_schema needs name and schema";
  }
  return null;
}

async function main() {
  const opt = parseArgs(process.argv);
  const t0 = Date.now();
  // One thread by default: on a busy 2-core machine two spinning ggml threads are ten times
  // slower than one (measured: 17 against 150 tokens/s).
  const llama = await getLlama({ gpu: false, build: "never", logLevel: "error", maxThreads: opt.threads });
  const model = await llama.loadModel({ modelPath: opt.model });
  const context = await model.createContext({ contextSize: opt.ctx, sequences: 1, threads: opt.threads });
  const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
  const jsonGrammar = await llama.getGrammarFor("json");
  let embedder = null;
  let faults = [];
  const used = new Map();
  const stats = { requests: [] };
  let chain = Promise.resolve(); // one generation at a time

  const record = (r) => { stats.requests.push(r); if (stats.requests.length > 200) stats.requests.shift(); };

  function pickFault(prefix) {
    for (let i = 0; i < faults.length; i++) {
      const f = faults[i];
      if (f.prefix !== undefined && f.prefix !== prefix) continue;
      if (f.times !== undefined && (used.get(i) || 0) >= f.times) continue;
      used.set(i, (used.get(i) || 0) + 1);
      return f;
    }
    return null;
  }

  async function generate(prompt, grammar, maxTokens, temperature, signal) {
    const tokens = model.tokenize(prompt, true);
    let out = 0;
    const t = Date.now();
    const r = await completion.generateCompletionWithMeta(tokens, {
      grammar, maxTokens, temperature, seed: 1, signal, stopOnAbortSignal: true,
      onToken: (toks) => { out += toks.length; },
    });
    return { text: r.response, stop: r.metadata.stopReason, promptTokens: tokens.length, outTokens: out, ms: Date.now() - t };
  }

  async function chat(res, prefix, doc, fault, rec, signal) {
    const tools = (doc.tools || []).filter((t) => t && t.type === "function" && t.function && t.function.name);
    const choice = doc.tool_choice === undefined ? "auto" : doc.tool_choice;
    rec.tool_choice = choice;
    rec.tools = tools.length;
    let maxTokens = Number(doc.max_completion_tokens || doc.max_tokens || 512);
    if (fault && fault.max_tokens) maxTokens = Math.min(maxTokens, fault.max_tokens);
    maxTokens = Math.max(1, Math.min(maxTokens, 2048));
    const temperature = typeof doc.temperature === "number" ? doc.temperature : 0;
    const prompt = renderPrompt(doc.messages, tools.map((t) => t.function));
    const callTool = tools.length && fault && (fault.tools === "always" || (fault.tools === "open" && choice !== "none"));
    let grammar, schema = null;
    if (callTool) {
      schema = {
        oneOf: tools.map((t) => ({
          type: "object", additionalProperties: false, required: ["name", "arguments"],
          properties: { name: { const: t.function.name }, arguments: reduceSchema(t.function.parameters || { type: "object" }) },
        })),
      };
      grammar = await llama.createGrammarForJsonSchema(schema);
    } else if (doc.response_format && doc.response_format.type === "json_schema") {
      schema = reduceSchema(doc.response_format.json_schema.schema);
      grammar = await llama.createGrammarForJsonSchema(schema);
    } else if (doc.response_format && doc.response_format.type === "json_object") {
      grammar = jsonGrammar;
    }
    rec.format = callTool ? "tool_call" : (doc.response_format ? doc.response_format.type : "text");
    rec.schema = schema;
    if (signal.aborted) return;
    const g = await generate(prompt, grammar, maxTokens, temperature, signal);
    if (signal.aborted) { rec.status = "abandoned"; return; }
    rec.prompt_tokens = g.promptTokens;
    rec.completion_tokens = g.outTokens;
    rec.gen_ms = g.ms;
    let message = { role: "assistant", content: g.text, refusal: null };
    let finish = g.stop === "maxTokens" ? "length" : "stop";
    if (callTool && finish === "stop") {
      const call = JSON.parse(g.text);
      const id = "call_" + Math.random().toString(36).slice(2, 12);
      message = { role: "assistant", content: null, refusal: null,
        tool_calls: [{ id, type: "function", function: { name: call.name, arguments: JSON.stringify(call.arguments) } }] };
      finish = "tool_calls";
      rec.tool_calls = message.tool_calls;
    } else {
      rec.content = g.text;
    }
    rec.finish_reason = finish;
    rec.status = 200;
    rec.server_ms = Date.now() - rec.at;
    send(res, 200, {
      id: "chatcmpl-" + Math.random().toString(36).slice(2, 14), object: "chat.completion",
      created: Math.floor(Date.now() / 1000), model: doc.model,
      choices: [{ index: 0, finish_reason: finish, logprobs: null, message }],
      usage: { prompt_tokens: g.promptTokens, completion_tokens: g.outTokens, total_tokens: g.promptTokens + g.outTokens },
    });
  }

  async function embeddings(res, doc) {
    let input = doc && doc.input;
    if (typeof input === "string") input = [input];
    if (!Array.isArray(input) || !input.length || input.length > 2048 || !input.every((s) => typeof s === "string" && s.length))
      return error(res, 400, "'input' must be a non-empty string or an array of 1 to 2048 non-empty strings", "invalid_request_error");
    if (!embedder) embedder = await model.createEmbeddingContext({ contextSize: 512 });
    const data = [];
    let tokens = 0;
    for (let i = 0; i < input.length; i++) {
      tokens += model.tokenize(input[i]).length;
      const e = await embedder.getEmbeddingFor(input[i]);
      data.push({ object: "embedding", index: i, embedding: Array.from(e.vector) });
    }
    stats.embeddings = (stats.embeddings || 0) + input.length;
    send(res, 200, { object: "list", model: doc.model || opt.name, data, usage: { prompt_tokens: tokens, total_tokens: tokens } });
  }

  const server = http.createServer((req, res) => {
    let url = req.url.split("?")[0];
    let prefix = null;
    const m = /^\/([A-Za-z0-9_-]+)(\/v1\/.*)$/.exec(url);
    if (m && m[1] !== "v1") { prefix = m[1]; url = m[2]; }
    if (req.method === "GET" && url === "/healthz") return send(res, 200, { status: "ok" });
    if (req.method === "GET" && url === "/stats") return send(res, 200, stats);
    if (url.startsWith("/v1/") && opt.apiKey && req.headers["authorization"] !== "Bearer " + opt.apiKey)
      return error(res, 401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key");
    if (req.method === "GET" && url === "/v1/models")
      return send(res, 200, { object: "list", data: [{ id: opt.name, object: "model", created: 0, owned_by: "sentinel-tests" }] });
    if (req.method !== "POST") return error(res, 404, "Unknown route " + url, "invalid_request_error");
    const chunks = [];
    let size = 0;
    req.on("data", (c) => {
      size += c.length;
      if (size > MAX_BODY) { error(res, 413, "Request too large", "invalid_request_error"); req.destroy(); }
      else chunks.push(c);
    });
    req.on("end", () => {
      if (size > MAX_BODY) return;
      let doc = null;
      try { doc = JSON.parse(Buffer.concat(chunks).toString("utf8")); } catch (e) { doc = undefined; }
      if (url === "/control/faults") {
        faults = Array.isArray(doc && doc.faults) ? doc.faults : [];
        used.clear();
        return send(res, 200, { faults: faults.length });
      }
      if (url === "/control/reset") { stats.requests = []; return send(res, 200, {}); }
      if (url === "/v1/embeddings") {
        chain = chain.then(() => embeddings(res, doc)).catch((e) => error(res, 500, "embedding failed: " + e.message, "server_error"));
        return;
      }
      if (url !== "/v1/chat/completions") return error(res, 404, "Unknown route " + url, "invalid_request_error");
      const rec = { prefix, at: Date.now(), status: null, fault: null };
      record(rec);
      const bad = validRequest(doc);
      if (bad) { rec.status = 400; return error(res, 400, bad, "invalid_request_error"); }
      rec.messages = doc.messages;
      rec.request_schema = doc.response_format && doc.response_format.json_schema ? doc.response_format.json_schema.schema : null;
      const fault = pickFault(prefix);
      rec.fault = fault;
      const abort = new AbortController();
      res.on("close", () => { if (!res.writableFinished) abort.abort(); });
      const go = () => {
        if (abort.signal.aborted) { rec.status = "abandoned"; return; }
        if (fault && fault.drop) { rec.status = "dropped"; req.socket.destroy(); return; }
        if (fault && fault.status) {
          rec.status = fault.status;
          const h = fault.retry_after !== undefined ? { "Retry-After": String(fault.retry_after) } : {};
          return error(res, fault.status, fault.message || "injected fault " + fault.status,
            fault.status === 429 ? "rate_limit_exceeded" : "server_error", fault.code || null, h);
        }
        chain = chain.then(() => chat(res, prefix, doc, fault, rec, abort.signal)).catch((e) => {
          rec.status = 500;
          rec.error = String(e && e.message);
          error(res, 500, "generation failed: " + (e && e.message), "server_error");
        });
      };
      if (fault && fault.delay_ms) setTimeout(go, fault.delay_ms);
      else go();
    });
  });

  server.listen(opt.port, "127.0.0.1", () => {
    const port = server.address().port;
    if (opt.portFile) {
      fs.writeFileSync(opt.portFile + ".tmp", String(port));
      fs.renameSync(opt.portFile + ".tmp", opt.portFile);
    }
    console.error(`llm fixture: model loaded in ${Date.now() - t0} ms, listening on 127.0.0.1:${port}`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  console.error("llm fixture failed: " + (e && e.stack ? e.stack : e));
  process.exit(1);
});
