#!/usr/bin/env node
'use strict';
// Node.js + onnxruntime-node peer of the HTTP benchmarks (bench/http/run.sh, bench/batch/run.sh).
//
//   node bench/http/node_server.js MODEL PORT [--workers N] [--version V] [--name NAME]
//
// Serves POST /v2/models/NAME/infer (NAME defaults to digits_mlp) with the same KServe v2
// JSON request and response shape as dabba, on 127.0.0.1:PORT, with node:http and
// onnxruntime-node 1.30 from tests/node_modules (CPU EP, graphOptimizationLevel 'all',
// intraOpNumThreads 1, interOpNumThreads 1, sequential execution). The request's one input
// must be the model's first input, FP32, [batch, <the model's fixed non-batch dimensions>];
// one request is one session.run() (no batching across requests: how such a service is
// naturally written).
//
// Process model: node:cluster with N workers (default: the number of cores), each with its
// own InferenceSession, sharing the listening socket. Node runs JavaScript on one thread, and
// here the JSON parse, the tensor copy and the JSON encode of every request are JavaScript;
// a single process would leave the second core to onnxruntime's (microseconds of) compute
// only. Workers = cores is how Node services are deployed to use a machine (pm2 -i max, or
// cluster), and it is what uvicorn (--workers) and nginx (worker_processes) get here too.
// `--workers 1` runs a single process without cluster, for comparison (on the 2-core bench
// machine: about 15k req/s with one process against about 20k with two workers).
//
// Each worker, once listening, creates $DABBA_BENCH_READY_DIR/ready.PID when that variable is
// set (run.sh waits for all of them).
// Errors answer {"error": "..."} with 400/404/405, like dabba. SIGTERM/SIGINT stop the
// primary and its workers.

const cluster = require('node:cluster');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

function loadOrt() {
  try {
    return require(require.resolve('onnxruntime-node', { paths: [path.join(__dirname, '..', '..', 'tests')] }));
  } catch (e) {
    return require('onnxruntime-node');
  }
}

function parseArgs(argv) {
  const o = { model: argv[0], port: Number(argv[1]), workers: os.cpus().length, version: '2', name: 'digits_mlp' };
  for (let i = 2; i < argv.length; i++) {
    if (argv[i] === '--workers') o.workers = Number(argv[++i]);
    else if (argv[i] === '--version') o.version = String(argv[++i]);
    else if (argv[i] === '--name') o.name = String(argv[++i]);
    else throw new Error(`node_server: unknown argument '${argv[i]}'`);
  }
  if (!o.model || !Number.isInteger(o.port) || o.port < 1 || !Number.isInteger(o.workers) || o.workers < 1 ||
      !/^[A-Za-z0-9_.-]+$/.test(o.name)) {
    process.stderr.write('usage: node bench/http/node_server.js MODEL PORT [--workers N] [--version V] [--name NAME]\n');
    process.exit(2);
  }
  return o;
}

function reply(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

async function serve(o) {
  const ort = loadOrt();
  const session = await ort.InferenceSession.create(o.model, {
    intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
  });
  const MODEL_NAME = o.name;
  const URL_PATH = `/v2/models/${MODEL_NAME}/infer`;
  const inputName = session.inputNames[0];
  const outputName = session.outputNames[0];
  // the dimensions after the batch one, from the model (onnxruntime-node >= 1.21)
  const meta = session.inputMetadata && session.inputMetadata[0];
  if (!meta || !Array.isArray(meta.shape) || meta.shape.length < 2 ||
      !meta.shape.slice(1).every((d) => Number.isInteger(d) && d > 0)) {
    throw new Error(`input '${inputName}' needs fixed non-batch dimensions in the model`);
  }
  const dims = meta.shape.slice(1);
  const perSample = dims.reduce((a, b) => a * b, 1);

  const server = http.createServer((req, res) => {
    if (req.url !== URL_PATH) return reply(res, 404, { error: `unknown path '${req.url}'` });
    if (req.method !== 'POST') return reply(res, 405, { error: `method ${req.method} not allowed` });
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      let x;
      let shape;
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        const inp = body.inputs && body.inputs[0];
        if (!inp || body.inputs.length !== 1 || inp.name !== inputName) throw new Error(`expected one input named '${inputName}'`);
        shape = inp.shape;
        if (inp.datatype !== 'FP32' || !Array.isArray(shape) || shape.length !== dims.length + 1 ||
            dims.some((d, i) => shape[i + 1] !== d) || !Number.isInteger(shape[0]) || shape[0] < 1) {
          throw new Error(`input '${inputName}' must be FP32 [batch,${dims.join(',')}]`);
        }
        const data = Array.isArray(inp.data) ? inp.data.flat(Infinity) : null;
        if (!data || data.length !== shape[0] * perSample) throw new Error(`input '${inputName}' has the wrong element count`);
        x = Float32Array.from(data);
      } catch (e) {
        return reply(res, 400, { error: e.message });
      }
      try {
        const out = await session.run({ [inputName]: new ort.Tensor('float32', x, shape) });
        const y = out[outputName];
        reply(res, 200, {
          model_name: MODEL_NAME, model_version: o.version,
          outputs: [{ name: outputName, datatype: 'FP32', shape: y.dims, data: Array.from(y.data) }],
        });
      } catch (e) {
        reply(res, 500, { error: e.message });
      }
    });
  });
  server.keepAliveTimeout = 60000;
  server.listen(o.port, '127.0.0.1', () => {
    // bench/http/run.sh waits for one file per worker here before it starts measuring
    const dir = process.env.DABBA_BENCH_READY_DIR;
    if (dir) require('node:fs').writeFileSync(path.join(dir, `ready.${process.pid}`), '');
  });
}

const opts = parseArgs(process.argv.slice(2));
if (opts.workers > 1 && cluster.isPrimary) {
  for (let i = 0; i < opts.workers; i++) cluster.fork();
  const stop = () => {
    for (const id in cluster.workers) cluster.workers[id].process.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  cluster.on('exit', (w, code, sig) => {
    process.stderr.write(`node_server: worker ${w.process.pid} exited (${sig || code})\n`);
  });
} else {
  serve(opts).catch((e) => {
    process.stderr.write(`node_server: ${e.stack || e}\n`);
    process.exit(1);
  });
}
