#!/usr/bin/env node
'use strict';
// onnxruntime-node counterpart of `dabba perf`:
//
//   node bench/ort_perf.js MODEL [--batch N] [--threads T] [--iterations K] [--warmup W]
//                          [--opt disabled|basic|extended|all] [--api session|binding]
//                          [--dim NAME=VALUE]...
//
// Feeds every model input a tensor of its declared shape, with symbolic/unknown dims set to
// the batch size (first dim), the --dim value given for their name, or 1, filled with
// uniform [0,1) values from a fixed seed
// (integers and bools: 0, as dabba perf does). Session: intraOpNumThreads = T, interOpNumThreads = 1,
// sequential execution, graphOptimizationLevel 'all' unless --opt says otherwise.
// Runs W warmup runs, then K timed runs, timing each `await session.run(feeds)` with
// process.hrtime.bigint() (this includes onnxruntime-node's JS/N-API call overhead, about
// 15 us per call here, most of it the setImmediate hop inside the async run()).
// --api binding instead calls the native binding's synchronous run() directly (the object
// session.run wraps; internal API of onnxruntime-node 1.30), which leaves only the N-API
// tensor conversion: a closer view of the engine itself.
// Ends with the same line as dabba perf:
//   perf: batch N, threads T, median_us X, p99_us Y, throughput_per_s Z
// where throughput = batch * 1e6 / mean_us.

const path = require('path');

function loadOrt() {
  try {
    return require(require.resolve('onnxruntime-node', { paths: [path.join(__dirname, '..', 'tests')] }));
  } catch (e) {
    return require('onnxruntime-node');
  }
}

function usage(msg) {
  if (msg) process.stderr.write(`ort_perf: ${msg}\n`);
  process.stderr.write('usage: node bench/ort_perf.js MODEL [--batch N] [--threads T] ' +
    '[--iterations K] [--warmup W] [--opt disabled|basic|extended|all] [--api session|binding] ' +
    '[--dim NAME=VALUE]...\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = { model: null, batch: 1, threads: 1, iterations: 1000, warmup: 100, opt: 'all', api: 'session', dims: {} };
  const ints = { '--batch': 'batch', '--threads': 'threads', '--iterations': 'iterations', '--warmup': 'warmup' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a in ints) {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < (a === '--warmup' ? 0 : 1)) usage(`bad value for ${a}: '${argv[i]}'`);
      o[ints[a]] = v;
    } else if (a === '--opt') {
      o.opt = argv[++i];
      if (!['disabled', 'basic', 'extended', 'all'].includes(o.opt)) usage(`bad --opt '${o.opt}'`);
    } else if (a === '--dim') {
      const m = /^([^=]+)=(\d+)$/.exec(argv[++i] || '');
      if (!m || Number(m[2]) < 1) usage(`bad --dim '${argv[i]}' (NAME=VALUE, VALUE >= 1)`);
      o.dims[m[1]] = Number(m[2]);
    } else if (a === '--api') {
      o.api = argv[++i];
      if (!['session', 'binding'].includes(o.api)) usage(`bad --api '${o.api}'`);
    } else if (a.startsWith('-')) {
      usage(`unknown option '${a}'`);
    } else if (o.model === null) {
      o.model = a;
    } else {
      usage(`unexpected argument '${a}'`);
    }
  }
  if (!o.model) usage('need MODEL');
  return o;
}

// xorshift32: deterministic inputs without depending on Math.random.
function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}

function makeInput(ort, meta, batch, dims, rand) {
  if (!meta.isTensor) throw new Error(`input '${meta.name}' is not a tensor`);
  const shape = (meta.shape.length ? meta.shape : [batch]).map((d, i) =>
    (typeof d === 'number' && d >= 0 ? d : i === 0 ? batch : (dims[d] || 1)));
  const n = shape.reduce((a, b) => a * b, 1);
  let data;
  switch (meta.type) {
    case 'float32': data = Float32Array.from({ length: n }, rand); break;
    case 'float64': data = Float64Array.from({ length: n }, rand); break;
    case 'int64': data = new BigInt64Array(n); break;
    case 'int32': data = new Int32Array(n); break;
    case 'int8': data = new Int8Array(n); break;
    case 'uint8': case 'bool': data = new Uint8Array(n); break;
    default: throw new Error(`input '${meta.name}': unsupported type ${meta.type}`);
  }
  return new ort.Tensor(meta.type, data, shape);
}

function percentile(sorted, p) {
  // nearest-rank percentile on an ascending array
  const k = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[k];
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const ort = loadOrt();
  const options = {
    executionProviders: ['cpu'],
    intraOpNumThreads: o.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: o.opt,
  };
  const session = await ort.InferenceSession.create(o.model, options);
  const rand = rng(12345);
  const feeds = {};
  for (const meta of session.inputMetadata) feeds[meta.name] = makeInput(ort, meta, o.batch, o.dims, rand);

  let run = () => session.run(feeds);
  let native = null;
  if (o.api === 'binding') {
    const ortDir = path.dirname(require.resolve('onnxruntime-node/package.json',
      { paths: [path.join(__dirname, '..', 'tests'), __dirname] }));
    const b = require(path.join(ortDir, 'dist', 'binding'));
    b.initOrt();
    native = new b.binding.InferenceSession();
    native.loadModel(o.model, options);
    const fetches = {};
    for (const name of session.outputNames) fetches[name] = null;
    run = () => native.run(feeds, fetches, {});
    await session.release(); // only one session (and thread pool) alive while timing
  }

  for (let i = 0; i < o.warmup; i++) await run();
  const us = new Float64Array(o.iterations);
  for (let i = 0; i < o.iterations; i++) {
    const t0 = process.hrtime.bigint();
    await run();
    const t1 = process.hrtime.bigint();
    us[i] = Number(t1 - t0) / 1000;
  }
  const mean = us.reduce((a, b) => a + b, 0) / us.length;
  const sorted = Float64Array.from(us).sort();
  const median = sorted.length % 2 ? sorted[(sorted.length - 1) / 2]
    : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
  const p99 = percentile(sorted, 99);
  const tput = (o.batch * 1e6) / mean;
  process.stdout.write(`ort_perf: ${path.basename(o.model)}, api ${o.api}, ${o.iterations} iterations after ` +
    `${o.warmup} warmup, mean_us ${mean.toFixed(1)}, min_us ${sorted[0].toFixed(1)}\n`);
  process.stdout.write(`perf: batch ${o.batch}, threads ${o.threads}, median_us ${median.toFixed(1)}, ` +
    `p99_us ${p99.toFixed(1)}, throughput_per_s ${tput.toFixed(1)}\n`);
  if (native) native.dispose();
  else await session.release();
}

main().catch((e) => {
  process.stderr.write(`ort_perf: ${e && e.message ? e.message : e}\n`);
  process.exit(1);
});
