"use strict";
// Decode the test vectors of docs/wire.md and re-encode them byte for byte; prints one JSON line per vector.
//   node check_vectors.js ../../docs/wire.md
const fs = require("fs");
const { NDArray, Encoder, decodeMessage, toJSON } = require("./wire");

function vectors(text) {
  const found = {};
  for (const m of text.matchAll(/```wire-vector (\w+)\n([\s\S]*?)```/g)) {
    const lines = {};
    for (const line of m[2].trim().split("\n")) {
      const at = line.indexOf(" ");
      lines[line.slice(0, at)] = line.slice(at).trim();
    }
    found[m[1]] = lines;
  }
  return found;
}

const DTYPES = { "<i2": Int16Array, "<f4": Float32Array, "<f8": Float64Array, "|u1": Uint8Array };

function fromJSON(value) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    if ("dtype" in value && "shape" in value && "data" in value) {
      return new NDArray(value.dtype, value.shape, DTYPES[value.dtype].from(value.data.flat(8)));
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromJSON(v)]));
  }
  return value;
}

let failed = 0;
for (const [name, v] of Object.entries(vectors(fs.readFileSync(process.argv[2], "utf8")))) {
  const frames = ["topic", "header", "body"].concat(Object.keys(v).filter((k) => k.startsWith("array")).sort())
    .map((k) => Buffer.from(v[k], "hex"));
  const msg = decodeMessage(frames);
  const expected = JSON.parse(v.decoded, (k, x) => x);
  const h = expected.header;
  const enc = new Encoder(h.src, { host: h.host || "", iid: h.iid || "" });
  // ts and seq beyond 2^53 must stay exact: read them from the decoded frames, not the JSON numbers.
  const again = enc.encode(expected.topic, fromJSON(expected.body), { seq: msg.header.seq, ts: msg.header.ts,
                                                                     corr: h.corr });
  const same = again.length === frames.length && again.every((f, i) => Buffer.compare(f, frames[i]) === 0);
  if (!same) failed++;
  process.stdout.write(toJSON({ name, decoded: { topic: msg.topic, header: msg.header, body: msg.body },
                                reencoded_equal: same }) + "\n");
}
process.exitCode = failed ? 1 : 0;
