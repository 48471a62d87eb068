// ioredis (Node's most used Redis client) against bitcask-server: GET/SET, INCR, a
// pipeline, MULTI/EXEC and a SCAN stream. Run through tests/node/ioredis_tour.py,
// which installs ioredis from package-lock.json: `python -m tests.node.ioredis_tour 7379`.
import Redis from "ioredis";

const port = Number(process.argv[2] ?? 7379);
const host = process.argv[3] ?? "127.0.0.1";
const redis = new Redis({ port, host, maxRetriesPerRequest: 1, connectTimeout: 5000 });

try {
  console.log("set:", await redis.set("node:greeting", "hello from node"));
  console.log("get:", await redis.get("node:greeting"));
  console.log("incr:", await redis.incr("node:visits"));
  const piped = await redis.pipeline().set("node:n", "1").incrby("node:n", 41).get("node:n").exec();
  console.log("pipeline:", JSON.stringify(piped));
  const tx = await redis.multi().incr("node:visits").get("node:visits").exec();
  console.log("multi:", JSON.stringify(tx));
  const writes = redis.pipeline();
  for (let i = 0; i < 25; i++) writes.set(`node:scan:${i}`, String(i));
  await writes.exec();
  const seen = new Set();
  const stream = redis.scanStream({ match: "node:scan:*", count: 10 });
  for await (const keys of stream) for (const k of keys) seen.add(k);
  console.log("scan:", seen.size, "keys");
  console.log("del:", await redis.del("node:greeting", "node:visits", "node:n", ...seen));
} finally {
  redis.disconnect();
}
