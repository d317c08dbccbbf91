'use strict';
// Minimal .npy (NumPy format 1.0/2.0/3.0) reader and writer.
// Dtypes: float32, float64, int64, int32, int8, uint8, bool (little-endian, C order only).
// A tensor is { dtype: 'float32' | ..., shape: [Number...], data: TypedArray }, where the
// dtype names and typed arrays match onnxruntime-node's Tensor (int64 -> BigInt64Array,
// bool -> Uint8Array).

const fs = require('fs');

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // "\x93NUMPY"

// npy descr (without byte-order char) -> [dtype, TypedArray constructor]
const BY_DESCR = {
  f4: ['float32', Float32Array],
  f8: ['float64', Float64Array],
  i8: ['int64', BigInt64Array],
  i4: ['int32', Int32Array],
  i1: ['int8', Int8Array],
  u1: ['uint8', Uint8Array],
  b1: ['bool', Uint8Array],
};
const BY_DTYPE = {};
for (const [d, [dtype, ctor]] of Object.entries(BY_DESCR)) {
  BY_DTYPE[dtype] = { descr: (ctor.BYTES_PER_ELEMENT === 1 ? '|' : '<') + d, ctor };
}

function parseHeader(text, file) {
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(text);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text);
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(text);
  if (!descr || !fortran || !shape) throw new Error(`${file}: malformed .npy header: ${text.trim()}`);
  if (fortran[1] === 'True') throw new Error(`${file}: fortran_order arrays are not supported`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  const out = dims.map((s) => {
    if (!/^\d+$/.test(s)) throw new Error(`${file}: bad shape entry '${s}'`);
    return Number(s);
  });
  return { descr: descr[1], shape: out };
}

function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 10 || !buf.subarray(0, 6).equals(MAGIC)) throw new Error(`${file}: not a .npy file`);
  const major = buf[6];
  let headerLen;
  let offset;
  if (major === 1) {
    headerLen = buf.readUInt16LE(8);
    offset = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) throw new Error(`${file}: truncated .npy header`);
    headerLen = buf.readUInt32LE(8);
    offset = 12;
  } else {
    throw new Error(`${file}: unsupported .npy version ${major}`);
  }
  if (offset + headerLen > buf.length) throw new Error(`${file}: truncated .npy header`);
  const header = parseHeader(buf.toString(major === 3 ? 'utf8' : 'latin1', offset, offset + headerLen), file);
  const order = header.descr[0];
  const kind = BY_DESCR[header.descr.slice(1)];
  if (!kind || !(order === '<' || order === '|' || order === '=')) {
    throw new Error(`${file}: unsupported dtype '${header.descr}' (want little-endian f4 f8 i8 i4 i1 u1 b1)`);
  }
  const [dtype, Ctor] = kind;
  const count = header.shape.reduce((a, b) => a * b, 1);
  const start = offset + headerLen;
  const nbytes = count * Ctor.BYTES_PER_ELEMENT;
  if (buf.length - start < nbytes) {
    throw new Error(`${file}: data is ${buf.length - start} bytes, shape [${header.shape}] needs ${nbytes}`);
  }
  // Copy into a fresh, aligned ArrayBuffer.
  const ab = new ArrayBuffer(nbytes);
  new Uint8Array(ab).set(buf.subarray(start, start + nbytes));
  return { dtype, shape: header.shape, data: new Ctor(ab) };
}

function writeNpy(file, tensor) {
  const kind = BY_DTYPE[tensor.dtype];
  if (!kind) throw new Error(`${file}: cannot write dtype '${tensor.dtype}' to .npy`);
  const shape = tensor.shape.map(Number);
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${kind.descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // Pad with spaces so that magic + version + length + header + '\n' is a multiple of 64.
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  MAGIC.copy(pre, 0);
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  let data = tensor.data;
  if (tensor.dtype === 'bool' && !(data instanceof Uint8Array)) data = Uint8Array.from(data, (v) => (v ? 1 : 0));
  if (!(data instanceof kind.ctor)) data = kind.ctor.from(data);
  const count = shape.reduce((a, b) => a * b, 1);
  if (data.length !== count) throw new Error(`${file}: ${data.length} elements for shape [${shape}]`);
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  fs.writeFileSync(file, Buffer.concat([pre, Buffer.from(header, 'latin1'), body]));
}

module.exports = { readNpy, writeNpy };
