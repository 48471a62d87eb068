// node-redis 4 (npm `redis`) against bitcask-server or a real redis-server. Run through
// tests/node/test_node_redis.py, which installs it from package-lock.json. The argument
// after PORT HOST picks the part:
//   tour      what both servers answer alike: connect (CLIENT SETNAME / SETINFO), SET
//             with EX/PX/NX, MSET/MGET, auto-pipelining, scanIterator, MULTI/EXEC, a
//             failed command inside EXEC, WATCH on an isolated connection, sendCommand,
//             errors as ErrorReply, the `database` option, QUIT
//   refused   what bitcask refuses and Redis serves: each is an ErrorReply, and the
//             connection goes on (PING, GET after it)
//   auth      connecting to a server with the password "s3cret": right, wrong, none
//   restart   a client that outlives a server restart: prints "restart-now", waits for
//             a line on stdin (the test restarts the server meanwhile), then goes on
// Every wait is bounded (by timers that do not hold the process open); any failure
// ends the process with a non-zero status.
import { createClient, ErrorReply } from "redis";
import { createInterface } from "node:readline";
import { bounded, failure, host, port, show } from "./_tour.mjs";

const part = process.argv[4] ?? "tour";
const connect = async (options = {}) => {
  const c = createClient({
    socket: { port, host, connectTimeout: 5000, reconnectStrategy: (n) => (n > 100 ? new Error("gave up") : 100) },
    ...options,
  });
  c.on("error", () => {}); // reconnect attempts while a server restarts; replies carry errors
  await bounded(c.connect());
  return c;
};

async function tour() {
  const client = await connect({ name: "node-tour", database: 0 });
  show("name", await client.clientGetName());
  show("set EX", await client.set("nr:k", "v", { EX: 100 }));
  show("set PX NX", await client.set("nr:p", "v", { PX: 100000, NX: true }));
  show("set NX again", await client.set("nr:p", "w", { NX: true }));
  show("get", await client.get("nr:k"));
  show("ttl", await client.ttl("nr:k"));
  show("mSet", await client.mSet({ "nr:a": "1", "nr:b": "2" }));
  show("mGet", await client.mGet(["nr:a", "nr:b", "nr:none"]));
  // commands issued in one tick leave in one write (auto-pipelining)
  const many = await Promise.all(Array.from({ length: 100 }, (_, i) => client.set(`nr:s:${i}`, `${i}`)));
  show("auto-pipelined", `${many.filter((r) => r === "OK").length} OK`);
  const seen = new Set();
  for await (const key of client.scanIterator({ MATCH: "nr:s:*", COUNT: 7 })) seen.add(key);
  show("scanIterator", `${seen.size} keys`);
  let typed = 0;
  for await (const _ of client.scanIterator({ MATCH: "nr:s:1*", TYPE: "string", COUNT: 3 })) typed++;
  show("scanIterator TYPE string", `${typed} keys`);
  show("multi", await client.multi().incr("nr:c").incr("nr:c").get("nr:c").exec());
  const partly = await failure(client.multi().set("nr:t", "1").incr("nr:k").exec());
  show("multi with a failing command", partly);
  show("its write applied", await client.get("nr:t"));
  const watcher = client.duplicate();
  watcher.on("error", () => {});
  await watcher.connect();
  const watched = await failure(
    client.executeIsolated(async (iso) => {
      await iso.watch("nr:w");
      await watcher.set("nr:w", "theirs");
      return iso.multi().set("nr:w", "mine").exec();
    }),
  );
  show("watch", watched);
  show("watched key", await client.get("nr:w"));
  await watcher.quit();
  show("sendCommand", await client.sendCommand(["ECHO", "raw"]));
  const unknown = await failure(client.sendCommand(["NOSUCH", "x"]));
  show("unknown command", unknown);
  try {
    await client.incr("nr:k");
  } catch (e) {
    show("incr of a string", `${e instanceof ErrorReply} ${e.message}`);
  }
  // SELECT 1 on connect: refused by a server with one database (bitcask; Redis with
  // --databases 1), so connect() fails with that error rather than retrying for ever
  const one = createClient({ socket: { port, host, reconnectStrategy: false }, database: 1 });
  one.on("error", () => {});
  show("database 1", await failure(one.connect().then(() => one.quit())));
  show("del", await client.del(["nr:k", "nr:p", "nr:a", "nr:b", "nr:c", "nr:t", "nr:w", ...seen]));
  show("quit", await client.quit());
}

async function refused() {
  const client = await connect();
  await client.set("nr:r", "kept");
  show("subscribe", await failure(client.subscribe("ch", () => {})));
  show("ping after", await client.ping());
  show("publish", await failure(client.publish("ch", "m")));
  show("eval", await failure(client.eval("return 1")));
  show("copy", await failure(client.copy("nr:r", "nr:r2")));
  show("get after", await client.get("nr:r"));
  const sub = await connect(); // a connection of its own, as subscribers use
  show("subscriber", await failure(sub.subscribe("ch", () => {})));
  show("subscriber get", await failure(sub.get("nr:r")));
  await sub.quit();
  await client.del(["nr:r", "nr:r2"]);
  show("quit", await client.quit());
}

async function auth() {
  // the server's password is "s3cret": node-redis sends AUTH, then CLIENT SETNAME
  for (const password of ["s3cret", "wrong", undefined]) {
    const c = createClient({ socket: { port, host, reconnectStrategy: false }, password, name: "authed" });
    c.on("error", () => {});
    show(`connect with ${password}`, await failure(c.connect().then(() => c.clientGetName())));
    if (c.isOpen) show("quit", await c.quit());
  }
}

async function restart() {
  const client = await connect({ name: "survivor" });
  show("before", await client.set("nr:before", "1"));
  console.log("restart-now");
  for await (const _ of createInterface({ input: process.stdin })) break;
  let after = null; // commands queue while it reconnects; retry the ones that failed
  for (let i = 0; i < 100 && after === null; i++) {
    try {
      after = await bounded(client.set("nr:after", "2"));
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  show("after", after);
  show("name after", await client.clientGetName());
  show("both", await client.mGet(["nr:before", "nr:after"]));
  show("quit", await client.quit());
}

try {
  await { tour, refused, auth, restart }[part]();
} catch (e) {
  console.error(`${part} failed: ${e.constructor.name}: ${e.message}`);
  process.exitCode = 1;
}
