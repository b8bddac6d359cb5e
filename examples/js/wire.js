"use strict";
// The Sensorium envelope (docs/wire.md), version 1: encode and decode one bus message.
//
// A message is frames [topic, header, body, array0, array1, ...]. The header is
// a msgpack map {v, src, host, iid, seq, ts, corr?}; seq and ts are uint64 and
// come back as BigInt. Arrays in a body are NDArray objects; on the wire each is
// a msgpack ext of type 1 holding [dtype, shape, index] and its bytes in frame
// 3 + index (docs/wire.md, section 6).

const os = require("os");
const crypto = require("crypto");
const { encode, decode, ExtensionCodec } = require("@msgpack/msgpack");

const ENVELOPE_VERSION = 1;
const ARRAY_EXT = 1;
const LIMITS = { message: 64 * 1024 * 1024, header: 4096, body: 4 * 1024 * 1024, arrays: 64, ndim: 8,
                 topic: 200, host: 255, iid: 64 };
const TOPIC_RE = /^[a-z][a-z0-9_]*(\.[a-z0-9_][a-z0-9_@-]*)*$/;
const DTYPE_RE = /^[<>|=][biufc]\d{1,2}$/;

class WireError extends Error {}

// An n-dimensional array: numpy's dtype string (e.g. "<f4"), its shape, and a typed array of its items
// in C order.
class NDArray {
  constructor(dtype, shape, data) {
    if (!DTYPE_RE.test(dtype)) throw new WireError(`dtype ${dtype} is not a plain numeric dtype`);
    this.dtype = dtype;
    this.shape = shape;
    this.data = data;
  }
  toJSON() {
    const items = Array.from(this.data, (x) => (typeof x === "bigint" ? x.toString() : x));
    return { dtype: this.dtype, shape: this.shape, data: nest(items, this.shape) };
  }
}

function nest(items, shape) {
  if (shape.length <= 1) return shape.length === 0 ? items[0] : items;
  const step = items.length / shape[0];
  const out = [];
  for (let i = 0; i < shape[0]; i++) out.push(nest(items.slice(i * step, (i + 1) * step), shape.slice(1)));
  return out;
}

// dtype kind + item size -> [TypedArray class, DataView getter, setter]; float16 stays raw uint16.
const TYPES = {
  b1: [Uint8Array, "getUint8", "setUint8"], i1: [Int8Array, "getInt8", "setInt8"],
  u1: [Uint8Array, "getUint8", "setUint8"], i2: [Int16Array, "getInt16", "setInt16"],
  u2: [Uint16Array, "getUint16", "setUint16"], f2: [Uint16Array, "getUint16", "setUint16"],
  i4: [Int32Array, "getInt32", "setInt32"], u4: [Uint32Array, "getUint32", "setUint32"],
  f4: [Float32Array, "getFloat32", "setFloat32"], i8: [BigInt64Array, "getBigInt64", "setBigInt64"],
  u8: [BigUint64Array, "getBigUint64", "setBigUint64"], f8: [Float64Array, "getFloat64", "setFloat64"],
  c8: [Float32Array, "getFloat32", "setFloat32"], c16: [Float64Array, "getFloat64", "setFloat64"],
};
const LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function typeOf(dtype) {
  const t = TYPES[dtype.slice(1)];
  if (!t) throw new WireError(`dtype ${dtype} is not supported by this client`);
  const itemsize = parseInt(dtype.slice(2), 10);
  const perItem = dtype[1] === "c" ? 2 : 1;   // complex: two floats per item
  return { Typed: t[0], get: t[1], set: t[2], itemsize, perItem };
}

function itemCount(shape) {
  return shape.reduce((a, b) => a * b, 1);
}

// The bytes of an array frame as an NDArray (copied: frames need not be aligned).
function arrayFromFrame(dtype, shape, frame) {
  const { Typed, get, itemsize, perItem } = typeOf(dtype);
  const n = itemCount(shape);
  if (frame.length !== n * itemsize) {
    throw new WireError(`array frame has ${frame.length} bytes, ${dtype} [${shape}] needs ${n * itemsize}`);
  }
  const little = dtype[0] === "<" || dtype[0] === "|" || (dtype[0] === "=" && LITTLE);
  const bytes = new Uint8Array(frame.length);
  bytes.set(frame);
  if (little === LITTLE || itemsize / perItem === 1) return new NDArray(dtype, shape, new Typed(bytes.buffer));
  const view = new DataView(bytes.buffer);
  const out = new Typed(n * perItem);
  const step = itemsize / perItem;
  for (let i = 0; i < out.length; i++) out[i] = view[get](i * step, little);
  return new NDArray(dtype, shape, out);
}

// An NDArray's frame: its items in the dtype's byte order.
function frameFromArray(arr) {
  const { Typed, set, itemsize, perItem } = typeOf(arr.dtype);
  const data = arr.data instanceof Typed ? arr.data : Typed.from(arr.data);
  if (data.length !== itemCount(arr.shape) * perItem) {
    throw new WireError(`array of ${data.length} items does not fit shape [${arr.shape}]`);
  }
  const little = arr.dtype[0] !== ">";
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (little === LITTLE || itemsize / perItem === 1) return Buffer.from(bytes);
  const out = Buffer.alloc(data.byteLength);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const step = itemsize / perItem;
  for (let i = 0; i < data.length; i++) view[set](i * step, data[i], little);
  return out;
}

// The ext-1 codec; the context is the list of array frames (collected on encode, given on decode).
const codec = new ExtensionCodec();
codec.register({
  type: ARRAY_EXT,
  encode(value, frames) {
    if (!(value instanceof NDArray)) return null;
    frames.push(frameFromArray(value));
    return encode([value.dtype, value.shape, frames.length - 1]);
  },
  decode(data, extType, ctx) {
    const ref = decode(data);
    if (!Array.isArray(ref) || ref.length !== 3) throw new WireError("array record must be [dtype, shape, index]");
    const [dtype, shape, index] = ref;
    if (typeof dtype !== "string" || !DTYPE_RE.test(dtype)) throw new WireError(`bad array dtype ${dtype}`);
    if (!Array.isArray(shape) || shape.length > LIMITS.ndim || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new WireError(`bad array shape ${JSON.stringify(shape)}`);
    }
    if (!Number.isInteger(index) || index < 0 || index >= ctx.frames.length) {
      throw new WireError(`array frame index ${index} out of range`);
    }
    if (ctx.used[index]) throw new WireError(`array frame ${index} referenced twice`);
    ctx.used[index] = true;
    return arrayFromFrame(dtype, shape, ctx.frames[index]);
  },
});

function u64(value) {
  const b = Buffer.alloc(9);
  b[0] = 0xcf;
  b.writeBigUInt64BE(BigInt(value), 1);
  return b;
}

// One sender: src, host, a fresh instance id ("PID-RANDOM"), seq per topic from 0.
class Encoder {
  constructor(src, { host = os.hostname(), iid = `${process.pid}-${crypto.randomBytes(4).toString("hex")}` } = {}) {
    if (typeof src !== "string" || !src) throw new WireError("src must be a non-empty string");
    this.src = src;
    this.host = host;
    this.iid = iid;
    this.seq = new Map();
  }

  // The canonical header (docs/wire.md section 4): v, src, host, iid, seq, ts, corr; seq and ts as uint64.
  header(seq, ts, corr) {
    const parts = [encode("v"), encode(ENVELOPE_VERSION), encode("src"), encode(this.src)];
    let n = 4;
    if (this.host) { parts.push(encode("host"), encode(this.host)); n++; }
    if (this.iid) { parts.push(encode("iid"), encode(this.iid)); n++; }
    parts.push(encode("seq"), u64(seq), encode("ts"), u64(ts));
    if (corr !== undefined && corr !== null) { parts.push(encode("corr"), encode(corr)); n++; }
    return Buffer.concat([Buffer.from([0x80 | n]), ...parts.map((p) => Buffer.from(p))]);
  }

  // Frames of one message; seq is this sender's next for the topic unless given, ts defaults to now (ns).
  encode(topic, body, { corr, seq, ts } = {}) {
    if (!TOPIC_RE.test(topic) || Buffer.byteLength(topic) > LIMITS.topic) throw new WireError(`bad topic ${topic}`);
    if (seq === undefined) {
      seq = this.seq.get(topic) || 0;
      this.seq.set(topic, seq + 1);
    }
    if (ts === undefined) ts = BigInt(Date.now()) * 1000000n;
    const frames = [];
    const bodyBytes = encode(body, { extensionCodec: codec, context: frames });
    return [Buffer.from(topic), this.header(seq, ts, corr), Buffer.from(bodyBytes), ...frames];
  }
}

// Decode one received message strictly (docs/wire.md sections 2-7); throws WireError.
function decodeMessage(frames) {
  if (frames.length < 3) throw new WireError(`expected at least 3 frames, got ${frames.length}`);
  const total = frames.reduce((a, f) => a + f.length, 0);
  if (total > LIMITS.message) throw new WireError(`message of ${total} bytes exceeds ${LIMITS.message}`);
  if (frames.length - 3 > LIMITS.arrays) throw new WireError(`${frames.length - 3} array frames exceed ${LIMITS.arrays}`);
  const topic = frames[0].toString("utf8");
  if (!TOPIC_RE.test(topic) || frames[0].length > LIMITS.topic) throw new WireError(`bad topic ${topic}`);
  if (frames[1].length > LIMITS.header) throw new WireError(`header exceeds ${LIMITS.header} bytes`);
  if (frames[2].length > LIMITS.body) throw new WireError(`body exceeds ${LIMITS.body} bytes`);
  let head;
  try {
    head = decode(frames[1], { useBigInt64: true });
  } catch (err) {
    throw new WireError(`bad header: ${err.message}`);
  }
  if (head === null || typeof head !== "object" || Array.isArray(head)) throw new WireError("header is not a map");
  if (head.v !== ENVELOPE_VERSION && head.v !== 1n) throw new WireError(`unsupported envelope version ${head.v}`);
  if (typeof head.src !== "string" || !head.src) throw new WireError("header src must be a non-empty string");
  const uint = (x) => (typeof x === "bigint" && x >= 0n) || (Number.isInteger(x) && x >= 0);
  if (!uint(head.seq) || !uint(head.ts)) throw new WireError("header seq and ts must be ints >= 0");
  for (const [key, max] of [["host", LIMITS.host], ["iid", LIMITS.iid]]) {
    if (head[key] !== undefined && (typeof head[key] !== "string" || Buffer.byteLength(head[key]) > max)) {
      throw new WireError(`header ${key} must be a string of at most ${max} bytes`);
    }
  }
  if (head.corr !== undefined && typeof head.corr !== "string") throw new WireError("header corr must be a string");
  const ctx = { frames: frames.slice(3), used: new Array(frames.length - 3).fill(false) };
  let body;
  try {
    body = decode(frames[2], { extensionCodec: codec, context: ctx });
  } catch (err) {
    throw err instanceof WireError ? err : new WireError(`bad body: ${err.message}`);
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw new WireError("body is not a map");
  if (ctx.used.some((u) => !u)) throw new WireError("an array frame is not referenced by the body");
  const header = { v: 1, src: head.src, host: head.host || "", iid: head.iid || "", seq: BigInt(head.seq),
                   ts: BigInt(head.ts) };
  if (head.corr !== undefined) header.corr = head.corr;
  return { topic, header, body, nbytes: total };
}

// JSON with BigInt as strings and NDArrays as {dtype, shape, data}.
function toJSON(value) {
  return JSON.stringify(value, (k, v) => (typeof v === "bigint" ? v.toString() : v));
}

function parseArgs(argv, defaults) {
  const out = { ...defaults, _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith("--")) out[a.slice(2)] = argv[++i];
    else out._.push(a);
  }
  return out;
}

module.exports = { NDArray, Encoder, WireError, decodeMessage, toJSON, parseArgs, LIMITS };
