#!/usr/bin/env node
'use strict';
// Test oracle: run an ONNX model in onnxruntime-node (CPU) and save every output as .npy.
//
//   node tests/oracle/ort_run.js [--opt LEVEL] MODEL OUTDIR NAME=FILE.npy ...
//
// Writes OUTDIR/<output name>.npy for each graph output (characters other than
// [A-Za-z0-9._-] in the name become '_'). Session: 1 intra-op and 1 inter-op thread,
// sequential execution, graph optimizations OFF by default ('disabled', so the oracle
// computes each node as the spec says, without fusions); --opt basic|extended|all
// selects another level. Exit status 0 on success, 1 on any error (message on stderr).

const fs = require('fs');
const path = require('path');
const { readNpy, writeNpy } = require('./npy');

function loadOrt() {
  // tests/node_modules (installed by `make test`), then the normal resolution.
  try {
    return require(require.resolve('onnxruntime-node', { paths: [path.join(__dirname, '..')] }));
  } catch (e) {
    return require('onnxruntime-node');
  }
}

function usage(msg) {
  if (msg) process.stderr.write(`ort_run: ${msg}\n`);
  process.stderr.write('usage: node tests/oracle/ort_run.js [--opt disabled|basic|extended|all] ' +
    'MODEL OUTDIR NAME=FILE.npy ...\n');
  process.exit(2);
}

function safeName(name) {
  return name.replace(/[^A-Za-z0-9._-]/g, '_');
}

async function main(argv) {
  let opt = 'disabled';
  const pos = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--opt') {
      opt = argv[++i];
      if (!['disabled', 'basic', 'extended', 'all'].includes(opt)) usage(`bad --opt '${opt}'`);
    } else if (argv[i] === '-h' || argv[i] === '--help') {
      usage();
    } else {
      pos.push(argv[i]);
    }
  }
  if (pos.length < 2) usage('need MODEL and OUTDIR');
  const [model, outdir, ...specs] = pos;

  const feeds = {};
  const ort = loadOrt();
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    if (eq <= 0) usage(`input '${spec}' is not NAME=FILE.npy`);
    const name = spec.slice(0, eq);
    const t = readNpy(spec.slice(eq + 1));
    feeds[name] = new ort.Tensor(t.dtype, t.data, t.shape);
  }

  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: opt,
  });
  for (const name of session.inputNames) {
    if (!(name in feeds)) throw new Error(`model input '${name}' was not given (NAME=FILE.npy)`);
  }
  for (const name of Object.keys(feeds)) {
    if (!session.inputNames.includes(name)) {
      throw new Error(`'${name}' is not a model input (inputs: ${session.inputNames.join(', ')})`);
    }
  }
  const results = await session.run(feeds);
  fs.mkdirSync(outdir, { recursive: true });
  for (const name of session.outputNames) {
    const t = results[name];
    writeNpy(path.join(outdir, safeName(name) + '.npy'), { dtype: t.type, shape: t.dims, data: t.data });
  }
  if (session.release) await session.release();
}

main(process.argv.slice(2)).catch((e) => {
  process.stderr.write(`ort_run: ${e && e.message ? e.message : e}\n`);
  process.exit(1);
});
