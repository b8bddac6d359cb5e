"use strict";
// Publish messages onto a Sensorium bus (docs/wire.md section 10).
//
//   node publisher.js --frontend ipc:///run/user/1000/sensorium/pub.sock --topic test.js --count 3
//
// Connects an XPUB to the broker's frontend, waits until a subscription that
// matches the topic arrives (else the messages would be lost), then sends
// --count messages with a float32 2x3 array and an int16 array, under its own
// sender name (--src, default js-client), host and a fresh instance id. Each
// message goes in the forms someone subscribed to: plain, and the local form
// (section 12: "@shm/" before the topic, arrays inline) that Sensorium's
// shared-memory subscribers and bridges ask for: a bridge exports only that.
const zmq = require("zeromq");
const { NDArray, Encoder, toJSON, parseArgs } = require("./wire");

async function main() {
  const args = parseArgs(process.argv.slice(2), { src: "js-client", topic: "test.js", count: "3", wait: "30" });
  if (!args.frontend) throw new Error("--frontend ENDPOINT is required (the broker's pub.sock)");
  const sock = new zmq.XPublisher({ linger: 2000 });
  sock.connect(args.frontend);
  const deadline = Date.now() + Number(args.wait) * 1000;
  sock.receiveTimeout = 200;
  const local = "@shm/" + args.topic;
  const forms = { plain: false, local: false };
  const readSubscriptions = async (untilMs) => {
    for (;;) {
      try {
        const [sub] = await sock.receive();
        if (sub[0] !== 1) continue;
        const prefix = sub.subarray(1).toString("utf8");
        if (prefix.startsWith("@")) forms.local = forms.local || local.startsWith(prefix);
        else forms.plain = forms.plain || args.topic.startsWith(prefix);
      } catch (err) {
        if (err.code !== "EAGAIN") throw err;
        if (Date.now() >= untilMs) return;
      }
    }
  };
  while (!forms.plain && !forms.local && Date.now() < deadline) await readSubscriptions(0);
  await readSubscriptions(Date.now() + 200); // the other form's subscriptions, forwarded together
  const subscribed = forms.plain || forms.local;
  if (!subscribed) {
    process.stderr.write(`publisher: nobody subscribed to ${args.topic} within ${args.wait} s\n`);
    sock.close();
    process.exitCode = 1;
    return;
  }
  const encoder = new Encoder(args.src);
  for (let n = 0; n < Number(args.count); n++) {
    const body = {
      n,
      text: "hello from js",
      samples: new NDArray("<f4", [2, 3], Float32Array.from([0.5, 1, 1.5, 2, 2.5, n])),
      pcm: new NDArray("<i2", [4], Int16Array.from([1, -2, 300, -32768])),
    };
    const frames = encoder.encode(args.topic, body);
    if (forms.local) await sock.send([Buffer.from(local), ...frames.slice(1)]);
    if (forms.plain) await sock.send(frames);
    process.stdout.write(toJSON({ topic: args.topic, src: encoder.src, iid: encoder.iid, n }) + "\n");
  }
  sock.close();
}

main().catch((err) => {
  process.stderr.write(`publisher: ${err.stack || err}\n`);
  process.exit(1);
});
