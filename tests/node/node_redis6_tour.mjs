// node-redis 6 (npm `redis`, the current major, locked as the alias `redis6`) against
// bitcask-server or a real redis-server, in RESP2 and RESP3 (HELLO 3 on connect). Run
// through tests/node/test_node_redis.py: `node node_redis6_tour.mjs PORT HOST`.
// Every wait is bounded (by timers that do not hold the process open); any failure
// ends the process with a non-zero status.
import { createClient } from "redis6";
import { bounded, failure, host, port, show } from "./_tour.mjs";


async function tour(RESP) {
  const client = createClient({ socket: { port, host, reconnectStrategy: false }, RESP, name: `six-${RESP}`, database: 0 });
  client.on("error", () => {});
  await bounded(client.connect());
  show("resp", RESP);
  show("name", await client.clientGetName());
  show("set EX", await client.set("n6:k", "v", { expiration: { type: "EX", value: 100 } }));
  show("set NX", await client.set("n6:k", "w", { condition: "NX" }));
  show("get", await client.get("n6:k"));
  show("get none", await client.get("n6:none"));
  show("ttl", await client.ttl("n6:k"));
  show("mSet", await client.mSet({ "n6:a": "1", "n6:b": "2" }));
  show("mGet", await client.mGet(["n6:a", "n6:none"]));
  const many = await Promise.all(Array.from({ length: 50 }, (_, i) => client.set(`n6:s:${i}`, `${i}`)));
  show("auto-pipelined", `${many.filter((r) => r === "OK").length} OK`);
  const seen = new Set();
  for await (const page of client.scanIterator({ MATCH: "n6:s:*", COUNT: 7 })) for (const k of page) seen.add(k);
  show("scanIterator", `${seen.size} keys`);
  show("multi", await client.multi().incr("n6:c").get("n6:c").exec());
  show("configGet", await client.configGet("databases"));
  show("incrByFloat", await client.incrByFloat("n6:f", 1.5));
  show("exists", await client.exists(["n6:a", "n6:none"]));
  show("type", await client.type("n6:a"));
  show("sendCommand", await client.sendCommand(["ECHO", "raw"]));
  show("unknown command", await failure(client.sendCommand(["NOSUCH", "x"])));
  show("incr of a string", await failure(client.incr("n6:k")));
  const other = client.duplicate();
  other.on("error", () => {});
  await other.connect();
  await client.watch("n6:w");
  await other.set("n6:w", "theirs");
  show("watch", await failure(client.multi().set("n6:w", "mine").exec()));
  show("watched key", await client.get("n6:w"));
  other.destroy();
  show("del", await client.del(["n6:k", "n6:a", "n6:b", "n6:c", "n6:f", "n6:w", ...seen]));
  show("quit", await client.quit());
}

try {
  await tour(2);
  await tour(3);
} catch (e) {
  console.error(`failed: ${e.constructor.name}: ${e.message}`);
  process.exitCode = 1;
}
