"use strict";
// Publish messages onto a Sensorium bus (docs/wire.md section 10).
//
//   node publisher.js --frontend ipc:///run/user/1000/sensorium/pub.sock --topic test.js --count 3
//
// Connects an XPUB to the broker's frontend, waits until a subscription that
// matches the topic arrives (else the messages would be lost), then sends
// --count messages with a float32 2x3 array and an int16 array, under its own
// sender name (--src, default js-client), host and a fresh instance id.
const zmq = require("zeromq");
const { NDArray, Encoder, toJSON, parseArgs } = require("./wire");

async function main() {
  const args = parseArgs(process.argv.slice(2), { src: "js-client", topic: "test.js", count: "3", wait: "30" });
  if (!args.frontend) throw new Error("--frontend ENDPOINT is required (the broker's pub.sock)");
  const sock = new zmq.XPublisher({ linger: 2000 });
  sock.connect(args.frontend);
  const deadline = Date.now() + Number(args.wait) * 1000;
  sock.receiveTimeout = 200;
  let subscribed = false;
  while (!subscribed && Date.now() < deadline) {
    try {
      const [sub] = await sock.receive();
      subscribed = sub[0] === 1 && args.topic.startsWith(sub.subarray(1).toString("utf8"));
    } catch (err) {
      if (err.code !== "EAGAIN") throw err;
    }
  }
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
    await sock.send(encoder.encode(args.topic, body));
    process.stdout.write(toJSON({ topic: args.topic, src: encoder.src, iid: encoder.iid, n }) + "\n");
  }
  sock.close();
}

main().catch((err) => {
  process.stderr.write(`publisher: ${err.stack || err}\n`);
  process.exit(1);
});
