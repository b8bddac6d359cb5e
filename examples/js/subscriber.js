"use strict";
// Print Sensorium bus messages as JSON lines (docs/wire.md), like `sensorium tap`.
//
//   node subscriber.js --backend ipc:///run/user/1000/sensorium/sub.sock [--count N] PREFIX...
//
// Subscribes to each PREFIX ('' for everything: pass none), decodes strictly,
// drops and counts malformed messages, and counts gaps per sender (host, src,
// iid) and topic. Arrays print as {dtype, shape, data}; uint64 values as strings.
const zmq = require("zeromq");
const { decodeMessage, toJSON, parseArgs, LIMITS, WireError } = require("./wire");

async function main() {
  const args = parseArgs(process.argv.slice(2), { count: "0" });
  if (!args.backend) throw new Error("--backend ENDPOINT is required (the broker's sub.sock)");
  const prefixes = args._.length ? args._ : [""];
  const sock = new zmq.Subscriber({ maxMessageSize: LIMITS.message });
  sock.connect(args.backend);
  for (const p of prefixes) sock.subscribe(p);
  process.stderr.write(`subscriber: listening to ${prefixes.map((p) => JSON.stringify(p)).join(" ")}\n`);
  const lastSeq = new Map();
  let printed = 0;
  let malformed = 0;
  let gaps = 0;
  for await (const frames of sock) {
    let msg;
    try {
      msg = decodeMessage(frames);
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      malformed++;
      process.stderr.write(`subscriber: malformed message dropped (${malformed}): ${err.message}\n`);
      continue;
    }
    if (msg.topic.startsWith("sys.sync.")) continue;
    if (!prefixes.some((p) => msg.topic.startsWith(p))) continue;
    const key = `${msg.header.host}\u0000${msg.header.src}\u0000${msg.header.iid}\u0000${msg.topic}`;
    const last = lastSeq.get(key);
    if (last !== undefined && msg.header.seq > last + 1n) gaps += Number(msg.header.seq - last - 1n);
    lastSeq.set(key, msg.header.seq);
    process.stdout.write(toJSON({ topic: msg.topic, ...msg.header, body: msg.body, gaps }) + "\n");
    printed++;
    if (Number(args.count) > 0 && printed >= Number(args.count)) break;
  }
  sock.close();
}

main().catch((err) => {
  process.stderr.write(`subscriber: ${err.stack || err}\n`);
  process.exit(1);
});
