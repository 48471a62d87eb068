// bitcask's binary protocol from Node.js, written from docs/protocol.md alone (_wire.mjs):
// every method, the errors a client can provoke, the fatal errors, and what msgpack
// in JavaScript meets (bin vs str, int 64 vs number, Map vs object, nil vs absent).
// `node wire_tour.mjs PORT HOST main|auth|small` prints one line per step;
// tests/node/test_wire_tour.py starts the servers and checks the lines.
import { encode, decode } from "@msgpack/msgpack";
import { bounded, host, port } from "./_tour.mjs";
import { Wire, bytes, encoder, frame, request, text } from "./_wire.mjs";

const mode = process.argv[4] ?? "main";

// Python-like notation, as docs/protocol.md writes messages: nil, b"...", 12n for bigint.
function fmt(v) {
  if (v === null || v === undefined) return "nil";
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "string") return JSON.stringify(v);
  if (v instanceof Uint8Array) {
    if (v.length > 64) return `<bin ${v.length}>`;
    let s = "";
    for (const b of v) s += b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`;
    return `b"${s}"`;
  }
  if (Array.isArray(v)) return `[${v.map(fmt).join(", ")}]`;
  if (typeof v === "object") return `{${Object.entries(v).map(([k, x]) => `${k}: ${fmt(x)}`).join(", ")}}`;
  return String(v);
}

const say = (what, v) => console.log(`${what}: ${typeof v === "string" ? v : fmt(v)}`);
// a response as the tour shows it: the result, or the error's code and name
const outcome = (r) => (r === null ? "closed" : r.error === null ? fmt(r.result) : `${r.error[1]} (${r.error[0]})`);
const step = async (c, what, method, ...params) => say(what, outcome(await c.send(method, params)));

// A connection that sends `data` (whole frames or raw bytes), then reports every
// response it got, in order, and whether the server closed it.
async function fatal(what, data) {
  const c = await Wire.connect(port, host);
  c.sock.write(data);
  await bounded(c.closed, 10000);
  const got = c.unmatched.map((r) => `[${r.msgid}, ${outcome(r)}]`);
  say(what, `${[...got, ...(c.refusal === null ? [] : [c.refusal])].join(" ")} then closed`);
}

const body = (value) => frame(encode(value));

async function tourMain() {
  const c = await Wire.connect(port, host);
  const hello = await c.call("hello", { protocol: 1, client: "wire-tour" });
  say("hello", { ...hello, version: typeof hello.version });
  await step(c, "hello protocol 2", "hello", { protocol: 2 });
  await step(c, "hello client bin", "hello", { protocol: 1, client: bytes("wire-tour") });
  await step(c, "auth without --auth", "auth", "anything");
  await step(c, "ping", "ping");
  await step(c, "ping str", "ping", "hi");
  await step(c, "ping bin", "ping", bytes("hi"));

  // keys and values are bin; str is accepted and UTF-8 encoded; replies carry bin
  await step(c, "put", "put", bytes("k"), bytes("v"));
  await step(c, "get", "get", bytes("k"));
  await step(c, "put str", "put", "ключ🔑", "значение ✓");
  const u = await c.call("get", bytes("ключ🔑"));
  say("get unicode", `${u instanceof Uint8Array} ${text(u)}`);
  await step(c, "get missing", "get", bytes("nope"));
  await step(c, "put empty key and value", "put", new Uint8Array(0), new Uint8Array(0));
  await step(c, "get empty key", "get", "");
  await step(c, "watch no keys", "watch", []);
  await step(c, "exists", "exists", bytes("k"));
  await step(c, "delete", "delete", bytes("k"));
  await step(c, "delete again", "delete", bytes("k"));

  // every byte value in keys: 256 one-byte keys and one key of all 256 bytes
  const every = Uint8Array.from({ length: 256 }, (_, i) => i);
  await c.pipeline([...every].map((b) => ["put", [Uint8Array.of(b), Uint8Array.of(b, b)]]));
  await c.call("put", every, every);
  const back = await c.call("get", every);
  say("key of every byte", Buffer.compare(back, every) === 0);
  const ones = await c.call("mget", [...every].map((b) => Uint8Array.of(b)));
  say("mget 256 one-byte keys", ones.every((v, b) => v.length === 2 && v[0] === b && v[1] === b));

  // scan to its end: ascending byte order, the last page carries nil
  let cursor = null;
  const seen = [];
  let pages = 0;
  do {
    const [next, keys] = await c.call("scan", { cursor, count: 100 });
    seen.push(...keys);
    cursor = next;
    pages += 1;
  } while (cursor !== null && pages < 100);
  const sorted = seen.every((k, i) => i === 0 || Buffer.compare(seen[i - 1], k) < 0);
  say("scan", `${seen.length} keys in ${pages} pages, ascending ${sorted}`);
  await step(c, "scan prefix", "scan", { prefix: Uint8Array.of(0xff) });
  await c.call("mput", [["qq1", "1"], ["qq2", "2"], ["qq3", "3"], ["qq4", "4"]]);
  const first = await c.call("scan", { prefix: "qq", count: 2 });
  const second = await c.call("scan", { prefix: "qq", cursor: first[0], count: 2 });
  say("scan 4 keys count 2", [first, second]);
  await step(c, "scan count 0", "scan", { count: 0 });
  await step(c, "scan count 10001", "scan", { count: 10001 });
  await step(c, "clear", "clear");

  // big values: up to max_value_size (4 MiB here), one over it
  const limit = hello.limits.max_value_size;
  const big = Uint8Array.from({ length: limit }, (_, i) => (i * 7) & 0xff);
  await step(c, "put max_value_size", "put", bytes("big"), big);
  const got = await c.call("get", bytes("big"));
  say("get max_value_size", Buffer.compare(got, big) === 0);
  await step(c, "put max_value_size + 1", "put", bytes("big2"), new Uint8Array(limit + 1));
  await step(c, "put key max_key_size + 1", "put", new Uint8Array(hello.limits.max_key_size + 1), bytes("v"));
  await step(c, "get key max_key_size + 1", "get", new Uint8Array(hello.limits.max_key_size + 1));
  await step(c, "append past max_value_size", "append", bytes("big"), bytes("!"));
  await c.call("put", bytes("big2"), big);
  await c.call("put", bytes("big3"), big);
  await step(c, "mget past the reply bound", "mget", [bytes("big"), bytes("big2"), bytes("big3")]);
  await step(c, "mget max_batch + 1 keys", "mget", Array.from({ length: hello.limits.max_batch + 1 }, (_, i) => bytes(`m${i}`)));
  await c.call("clear");

  // ttl: a float of seconds left, -1 and -2 as ints
  await step(c, "put ttl 100", "put", bytes("t"), bytes("v"), { ttl: 100 });
  const left = await c.call("ttl", bytes("t"));
  say("ttl", `${typeof left} ${left > 99 && left <= 100}`);
  await step(c, "put ttl 99.5", "put", bytes("t2"), bytes("v"), { ttl: 99.5 });
  await c.call("put", bytes("p"), bytes("v"));
  await step(c, "ttl no expiry", "ttl", bytes("p"));
  await step(c, "ttl missing", "ttl", bytes("nope"));
  await step(c, "put ttl 0", "put", bytes("t"), bytes("v"), { ttl: 0 });
  await step(c, "put ttl -1", "put", bytes("t"), bytes("v"), { ttl: -1 });
  await step(c, "put ttl NaN", "put", bytes("t"), bytes("v"), { ttl: NaN });
  await step(c, "put ttl Infinity", "put", bytes("t"), bytes("v"), { ttl: Infinity });
  await step(c, "put ttl 9.2e15", "put", bytes("t"), bytes("v"), { ttl: 9.2e15 });
  await step(c, "put ttl 9.3e15", "put", bytes("t"), bytes("v"), { ttl: 9.3e15 });
  await step(c, "put ttl typo", "put", bytes("t"), bytes("v"), { tll: 5 });
  await step(c, "put ttl true", "put", bytes("t"), bytes("v"), { ttl: true });

  // nil vs absent: what a JavaScript object with an undefined field sends
  await step(c, "put options {}", "put", bytes("n"), bytes("v"), {});
  await step(c, "put options nil", "put", bytes("n"), bytes("v"), null);
  await step(c, "put ttl nil", "put", bytes("n"), bytes("v"), { ttl: undefined });
  await step(c, "set nx nil", "set", bytes("n"), bytes("v"), { nx: undefined });
  await step(c, "set ttl nil", "set", bytes("n"), bytes("v"), { ttl: null });
  await step(c, "scan cursor nil", "scan", { cursor: null, count: 1 });
  await step(c, "scan prefix nil", "scan", { prefix: null, count: 1 });
  await step(c, "scan count nil", "scan", { count: null });
  await step(c, "incr delta nil", "incr", bytes("cnt"), null);
  say("hello auth nil", `authenticated ${(await c.call("hello", { protocol: 1, auth: null })).authenticated}`);
  await step(c, "expire cond nil", "expire", bytes("n"), { ttl: 10, cond: null });
  await step(c, "rename nx nil", "rename", bytes("n"), bytes("n2"), { nx: null });

  // map keys: a JS object's keys are str; a JS Map is encoded as {} by @msgpack/msgpack
  await step(c, "mput object", "mput", { a: bytes("1"), b: bytes("2") });
  await step(c, "mget str keys", "mget", ["a", bytes("b")]);
  await step(c, "mput pairs, binary keys", "mput", [[Uint8Array.of(0, 1), bytes("x")], [Uint8Array.of(0, 1), bytes("y")]]);
  await step(c, "get pair key", "get", Uint8Array.of(0, 1));
  await step(c, "mput a JS Map", "mput", new Map([[Uint8Array.of(9), bytes("z")]]));
  await step(c, "mput {} (empty)", "mput", {});
  await step(c, "mput max_batch + 1", "mput", Array.from({ length: hello.limits.max_batch + 1 }, (_, i) => [bytes(`m${i}`), bytes("v")]));
  await step(c, "batch", "batch", [["put", bytes("b1"), bytes("1"), { ttl: 50 }], ["delete", bytes("a")], ["delete", bytes("a")]]);
  await step(c, "batch ttl 0", "batch", [["put", bytes("b2"), bytes("1"), { ttl: 0 }]]);
  await step(c, "get b2 after", "get", bytes("b2"));

  // integers: 2**53 and 2**63 (a JS number is exact to 2**53 only)
  await step(c, "incr 2**53-1 as a number (float 64 here)", "incr", bytes("n53"), 2 ** 53 - 1);
  await step(c, "incr 2**53-1 as a bigint", "incr", bytes("n53"), 2n ** 53n - 1n);
  await step(c, "incr past 2**53", "incr", bytes("n53"), 2);
  await step(c, "get it", "get", bytes("n53"));
  await step(c, "incr bigint 2**63-1", "incr", bytes("n63"), 2n ** 63n - 1n);
  await step(c, "incr past 2**63", "incr", bytes("n63"), 1);
  await step(c, "incr -2**63", "incr", bytes("m63"), -(2n ** 63n));
  await step(c, "incr below -2**63", "incr", bytes("m63"), -1);
  await step(c, "incr delta 2**63 (uint 64)", "incr", bytes("x63"), 2n ** 63n);
  await step(c, "incr delta 2**60 as a number (float 64)", "incr", bytes("x60"), 2 ** 60);
  await step(c, "incr delta 1.5", "incr", bytes("x60"), 1.5);
  await step(c, "incr delta 5n (a uint 64 of a small value)", "incr", bytes("x5"), 5n);
  say("hello protocol 1n (uint 64)", `protocol ${(await c.call("hello", { protocol: 1n })).protocol}`);
  await step(c, "incr delta true", "incr", bytes("x60"), true);
  await c.call("put", bytes("lead0"), bytes("007"));
  await step(c, "incr leading zeros", "incr", bytes("lead0"));
  await step(c, "incr_float", "incr_float", bytes("f"), 10.5);
  await step(c, "incr_float int", "incr_float", bytes("f"), 1);
  await c.call("incr_float", bytes("f3"), 0.1);
  await step(c, "incr_float 0.1 then 0.2 (a double's sum)", "incr_float", bytes("f3"), 0.2);
  await step(c, "incr_float 1e308 twice", "incr_float", bytes("f"), 1.7e308);
  await step(c, "incr_float again", "incr_float", bytes("f"), 1.7e308);
  await step(c, "incr_float NaN", "incr_float", bytes("f"), NaN);
  const decodedLossy = decode(encoder.encode(2n ** 63n - 1n));
  say("int 64 decoded without useBigInt64", `${decodedLossy} (${typeof decodedLossy})`);

  // the read-modify-write methods
  await step(c, "set nx", "set", bytes("s"), bytes("1"), { nx: true });
  await step(c, "set nx again", "set", bytes("s"), bytes("2"), { nx: true });
  await step(c, "set xx get", "set", bytes("s"), bytes("3"), { xx: true, get: true });
  await step(c, "set nx xx", "set", bytes("s"), bytes("3"), { nx: true, xx: true });
  await step(c, "set keep_ttl ttl", "set", bytes("s"), bytes("3"), { keep_ttl: true, ttl: 5 });
  const soon = BigInt(Date.now() + 100000);
  await step(c, "set at_ms (bigint, uint 64)", "set", bytes("s"), bytes("4"), { at_ms: soon });
  await step(c, "set at_ms as a number (float 64 here)", "set", bytes("s"), bytes("4"), { at_ms: Date.now() + 100000 });
  await step(c, "set at_ms 0", "set", bytes("s"), bytes("4"), { at_ms: 0 });
  await step(c, "set at_ms 2**63", "set", bytes("s"), bytes("4"), { at_ms: 2n ** 63n });
  await step(c, "append", "append", bytes("s"), bytes("56"));
  await step(c, "append new", "append", bytes("s-new"), bytes("abc"));
  await step(c, "get_delete", "get_delete", bytes("s-new"));
  await step(c, "get_delete missing", "get_delete", bytes("s-new"));
  await step(c, "expire ttl", "expire", bytes("s"), { ttl: 30 });
  await step(c, "expire nx", "expire", bytes("s"), { ttl: 30, cond: "nx" });
  await step(c, "expire gt", "expire", bytes("s"), { at_ms: soon * 2n, cond: "gt" });
  await step(c, "expire missing", "expire", bytes("nope"), { ttl: 30 });
  await step(c, "expire no ttl", "expire", bytes("s"), {});
  await step(c, "expire cond bad", "expire", bytes("s"), { ttl: 3, cond: "xy" });
  await step(c, "persist", "persist", bytes("s"));
  await step(c, "persist again", "persist", bytes("s"));
  await step(c, "expire past", "expire", bytes("s"), { at_ms: 1 });
  await step(c, "exists after", "exists", bytes("s"));
  await c.call("put", bytes("r1"), bytes("1"));
  await c.call("put", bytes("r2"), bytes("2"));
  await step(c, "rename nx onto existing", "rename", bytes("r1"), bytes("r2"), { nx: true });
  await step(c, "rename", "rename", bytes("r1"), bytes("r3"));
  await step(c, "rename missing", "rename", bytes("r1"), bytes("r3"));

  // watch / commit
  const w = await c.call("watch", [bytes("r3")]);
  await step(c, "commit", "commit", [["incr", bytes("r3")], ["incr", bytes("lead0")], ["rename", bytes("zz"), bytes("zy")]], { watch: w });
  await step(c, "commit same watch", "commit", [["incr", bytes("r3")]], { watch: w });
  const w2 = await c.call("watch", [bytes("r3")]);
  const other = await Wire.connect(port, host);
  await other.call("put", bytes("r3"), bytes("9"));
  await other.close();
  await step(c, "commit after another write", "commit", [["incr", bytes("r3")]], { watch: w2 });
  await step(c, "commit unknown watch", "commit", [["incr", bytes("r3")]], { watch: 99 });
  await step(c, "commit malformed op", "commit", [["incr", bytes("r3")], ["nosuch", bytes("a")]]);
  await step(c, "commit get op", "commit", [["get", bytes("r3")]]);
  await step(c, "unwatch", "unwatch");
  const held = await c.pipeline(Array.from({ length: 65 }, () => ["watch", [[bytes("w")]]]));
  say("65 watches", outcome(held[64]));
  await step(c, "watch max_batch + 1 keys", "watch", Array.from({ length: hello.limits.max_batch + 1 }, (_, i) => bytes(`w${i}`)));
  await step(c, "unwatch one", "unwatch", 3);

  // stats, merge, sync
  const stats = await c.call("stats");
  say("stats", `keys ${typeof stats.keys} server.port ${stats.server.port === port}`);
  const report = await c.call("merge");
  say("merge", Object.keys(report).sort().join(","));
  await step(c, "sync", "sync");

  // snapshots: pull every file, check sizes and CRCs
  const snap = await c.call("snapshot_begin", { timeout: 30 });
  let total = 0;
  for (const f of snap.files) {
    const chunk = await c.call("snapshot_read", snap.id, f.name, 0, 1048576);
    total += chunk.length;
    if (chunk.length !== f.size) say("snapshot file short", f.name);
  }
  await step(c, "snapshot_read past the end", "snapshot_read", snap.id, snap.files[0].name, snap.files[0].size, 10);
  await step(c, "snapshot_read length 0", "snapshot_read", snap.id, snap.files[0].name, 0, 0);
  await step(c, "snapshot_read bad name", "snapshot_read", snap.id, "../etc", 0, 10);
  const other2 = await Wire.connect(port, host);
  await step(other2, "snapshot_read another connection's", "snapshot_read", snap.id, snap.files[0].name, 0, 10);
  await other2.close();
  const end = await c.call("snapshot_end", snap.id);
  say("snapshot_end", `complete ${end.complete} bytes ${BigInt(end.bytes) === BigInt(total)}`);
  await step(c, "snapshot_end again", "snapshot_end", snap.id);
  const ids = await c.pipeline(Array.from({ length: 5 }, () => ["snapshot_begin", []]));
  say("5 snapshots", outcome(ids[4]));
  for (const r of ids.slice(0, 4)) await c.call("snapshot_end", r.result.id);

  // general errors keep the connection
  await step(c, "unknown method", "nosuch");
  await step(c, "get no params", "get");
  await step(c, "get int key", "get", 5);
  await step(c, "put a Date (timestamp ext)", "put", bytes("k"), new Date(0));
  // an options map keyed by bin (a JS object cannot hold one: written by hand)
  const binKeyed = Uint8Array.of(0x94, 0x00, 0x7f, ...encode("put"), 0x93, ...encode(bytes("k")), ...encode(bytes("v")), 0x81, ...encode(bytes("ttl")), 5);
  say("put options keyed by bin", outcome((await c.raw(frame(binKeyed), 0x7f))[0]));

  // msgids: matched, not positional; 0, 2**31, 2**32-1 answered as sent
  for (const msgid of [0, 2 ** 31, 2 ** 32 - 1]) {
    const r = await c.send("ping", [], msgid);
    say(`msgid ${msgid}`, `${r.msgid} ${fmt(r.result)}`);
  }
  c.nextId = 2 ** 32 - 2;
  say("wrap", [c.id(), c.id(), c.id()].join(" "));
  const calls = [];
  for (let i = 0; i < 300; i += 1) {
    calls.push(["put", [bytes(`p${i % 10}`), bytes(`${i}`)]], ["get", [bytes(`p${i % 10}`)]]);
  }
  const replies = await c.pipeline(calls);
  const ryw = replies.every((r, i) => (i % 2 === 0 ? r.result === true : text(r.result) === `${(i - 1) / 2}`));
  say("600 pipelined", `read-your-writes ${ryw}`);
  // half-close right after a pipeline: every request sent is answered, then the close
  const last = c.pipeline([["put", [bytes("hc"), bytes("1")]], ["incr", [bytes("hc")]], ["get", [bytes("hc")]]]);
  c.sock.end();
  say("half-close", (await bounded(last)).map(outcome).join(" "));
  await bounded(c.closed, 10000);
}

async function tourFatal() {
  const ping = (msgid) => request(msgid, "ping", []);
  const putOf = (msgid, k) => request(msgid, "put", [bytes(k), bytes("v")]);
  await fatal("frame over max_frame", Uint8Array.of(0x04, 0x10, 0x00, 0x01));
  await fatal("empty frame", Uint8Array.of(0, 0, 0, 0));
  await fatal("not msgpack", frame(Uint8Array.of(0xc1)));
  await fatal("trailing bytes", frame(Uint8Array.of(...encode([0, 4, "ping", []]), 0xc0)));
  await fatal("a response", body([1, 5, null, null]));
  await fatal("three fields", body([0, 6, "ping"]));
  await fatal("method bin", body([0, 7, bytes("ping"), []]));
  await fatal("method an int, msgid 2**32-1", body([0, 2 ** 32 - 1, 5, []]));
  await fatal("params a map", body([0, 8, "ping", {}]));
  await fatal("msgid 2**32", frame(encoder.encode([0, 2n ** 32n, "ping", []])));
  await fatal("msgid -1", body([0, -1, "ping", []]));
  const f7 = Uint8Array.of(0xcb, 0x40, 0x1c, 0, 0, 0, 0, 0, 0); // float 64 7.0
  await fatal("msgid 7.0 (float 64)", frame(Uint8Array.of(0x94, 0x00, ...f7, ...encode("ping"), 0x90)));
  await fatal("a map", body({ a: 1 }));
  await fatal("a str key with a lone surrogate (not UTF-8)", body([0, 14, "put", ["\ud800", bytes("v")]]));
  await fatal("an ext as the msgid", frame(Uint8Array.of(0x94, 0x00, 0xd4, 0x01, 0x07, ...encode("ping"), 0x90)));
  await fatal("first byte 0x94 (no header)", encode([0, 10, "ping", []]));
  await fatal("first byte 0xff", Uint8Array.of(0xff, 0, 0, 0));
  await fatal("pipelined around it", Buffer.concat([putOf(11, "before"), frame(Uint8Array.of(0xc1)), putOf(12, "after"), ping(13)]));
  const c = await Wire.connect(port, host);
  await step(c, "before", "exists", bytes("before"));
  await step(c, "after", "exists", bytes("after"));
  await c.close();
}

async function tourAuth() {
  const c = await Wire.connect(port, host);
  const h = await c.call("hello");
  say("hello", `auth_required ${h.auth_required} authenticated ${h.authenticated}`);
  await step(c, "ping", "ping");
  await step(c, "get", "get", bytes("k"));
  await step(c, "unknown method", "nosuch");
  await step(c, "bad params", "get");
  await step(c, "auth wrong", "auth", "wrong");
  await step(c, "hello wrong", "hello", { protocol: 1, auth: "wrong" });
  await step(c, "hello right", "hello", { protocol: 1, auth: "s3cret" });
  await step(c, "put", "put", bytes("k"), bytes("v"));
  await step(c, "auth wrong after", "auth", bytes("nope"));
  await step(c, "get after", "get", bytes("k"));
  await c.close();
  const d = await Wire.connect(port, host);
  await step(d, "auth bin", "auth", bytes("s3cret"));
  await d.close();
  // a frame of exactly 16,384 bytes is read; one byte more is FRAME_TOO_LARGE
  const d2 = await Wire.connect(port, host);
  const at = (n) => request(5, "auth", [new Uint8Array(n)]);
  const limitFrame = at(16384 - (at(16384).length - 4 - 16384));
  say("unauthenticated frame of 16,384", `${limitFrame.length - 4} ${outcome((await d2.raw(limitFrame, 5))[0])}`);
  await d2.close();
  await fatal("unauthenticated frame of 16,385", Uint8Array.of(0x00, 0x00, 0x40, 0x01));
  // pipelined in one write: each request is judged by the auth state it meets
  const f = await Wire.connect(port, host);
  const order = await f.pipeline([["get", [bytes("k")]], ["auth", ["s3cret"]], ["get", [bytes("k")]]]);
  say("get, auth, get in one write", order.map(outcome).join(" "));
  await f.close();
  // the 16 KiB bound is lifted for bytes received after auth's reply, not in its write
  await fatal("auth + 20,000-byte put in one write", Buffer.concat([request(1, "auth", ["s3cret"]), request(2, "put", [bytes("big"), new Uint8Array(20000)])]));
  const e = await Wire.connect(port, host);
  await step(e, "auth, then after its reply", "auth", "s3cret");
  await step(e, "a 20,000-byte put", "put", bytes("big"), new Uint8Array(20000));
  await e.close();
}

async function tourSmall() {
  // --max-keys 3 --max-connections 2 --request-timeout 1 --max-frame 1048576
  const c = await Wire.connect(port, host);
  await c.call("mput", [[bytes("a"), bytes("1")], [bytes("b"), bytes("2")], [bytes("c"), bytes("3")]]);
  await step(c, "put a 4th key", "put", bytes("d"), bytes("4"));
  await step(c, "overwrite", "put", bytes("a"), bytes("9"));
  await step(c, "incr a new key", "incr", bytes("e"));
  await step(c, "rename", "rename", bytes("a"), bytes("z"));
  await step(c, "delete", "delete", bytes("b"));
  await step(c, "put after delete", "put", bytes("d"), bytes("4"));
  // --request-timeout 1: a request whose rest never comes is dropped; the refusal
  // line comes where the next frame would start, after the replies due before it.
  // Meanwhile (for 1 s) that is the second connection of two: a third is refused.
  const d = await Wire.connect(port, host);
  const cut = request(2, "put", [bytes("h"), bytes("v")]).subarray(0, 8);
  const [pong] = await bounded(d.raw(Buffer.concat([request(1, "ping", []), cut]), 1));
  say("second connection", outcome(pong));
  await fatal("third connection", new Uint8Array(0));
  await bounded(d.closed, 10000);
  say("request never completed", `${d.refusal} then closed`);
  await step(c, "first connection still served", "get", bytes("h"));
  // --max-frame 1 MiB: a reply may be larger than hello's max_frame (section 5)
  const chunk = new Uint8Array(900 * 1024).fill(0x61);
  for (let i = 0; i < 3; i += 1) await c.call("append", bytes("c"), chunk);
  const grown = await c.call("mget", [bytes("c"), bytes("c")]);
  say("a reply over max_frame", `${(await c.call("hello")).limits.max_frame} ${grown.map((v) => v.length)}`);
  await c.close();
  await fatal("a request over max_frame", request(3, "put", [bytes("c"), new Uint8Array(1 << 20)]));
}

const tours = { main: async () => { await tourMain(); await tourFatal(); }, auth: tourAuth, small: tourSmall };
await bounded(tours[mode](), 50000);
