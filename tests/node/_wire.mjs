// A client of bitcask's binary protocol written from docs/protocol.md alone: frames of a
// 4-byte big-endian length and one msgpack value (section 1), msgpack-rpc requests and
// responses (section 2), replies matched by msgid (section 6), the fatal error and the
// text refusal line (section 11). wire_tour.mjs drives it.
import net from "node:net";
import { Decoder, Encoder } from "@msgpack/msgpack";

// int64/uint64 both ways as bigint: a JavaScript number is exact only up to 2**53.
// With this encoder a *number* at or past 2**32 goes out as a float 64 (so a large
// int, an at_ms or a delta, must be passed as a bigint); the decoder answers number
// for what the server packed in 32 bits or less and bigint for int 64 / uint 64.
export const encoder = new Encoder({ useBigInt64: true });
export const decoder = new Decoder({ useBigInt64: true });

export const bytes = (s) => new TextEncoder().encode(s);
export const text = (b) => new TextDecoder("utf-8", { fatal: true }).decode(b);

export function frame(body) {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

export const request = (msgid, method, params) => frame(encoder.encode([0, msgid, method, params]));

// The server's answer to one request: error is null or [code, name, message].
export class ServerError extends Error {
  constructor([code, name, message]) {
    super(`${name} (${code}): ${message}`);
    this.code = code;
    this.name = name;
  }
}

export class Wire {
  static connect(port, host = "127.0.0.1") {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection({ port, host }, () => resolve(new Wire(sock)));
      sock.once("error", reject);
    });
  }

  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.pending = new Map(); // msgid -> resolve
    this.unmatched = []; // responses whose msgid nobody waits for (a fatal error's 0)
    this.refusal = null; // a "-ERR ..." line where a frame would start
    this.nextId = 1;
    this.closed = new Promise((resolve) => {
      sock.on("close", () => {
        for (const done of this.pending.values()) done(null);
        this.pending.clear();
        resolve(true);
      });
    });
    sock.on("error", () => {});
    sock.on("data", (chunk) => this.#feed(chunk));
  }

  #feed(chunk) {
    this.buf = Buffer.concat([this.buf, chunk]);
    for (;;) {
      if (this.buf.length === 0) return;
      if (this.buf[0] === 0x2d) {
        // section 11: "-ERR ...\r\n" where the next frame would start
        const end = this.buf.indexOf("\r\n");
        if (end < 0) return;
        this.refusal = this.buf.subarray(0, end).toString("utf8");
        this.buf = this.buf.subarray(end + 2);
        continue;
      }
      if (this.buf.length < 4) return;
      const n = this.buf.readUInt32BE(0);
      if (this.buf.length < 4 + n) return;
      const value = decoder.decode(this.buf.subarray(4, 4 + n));
      this.buf = this.buf.subarray(4 + n);
      const [kind, msgid, error, result] = value;
      if (kind !== 1 || value.length !== 4) throw new Error(`not a response: ${value}`);
      const done = this.pending.get(msgid);
      if (done === undefined) {
        this.unmatched.push({ msgid, error, result });
      } else {
        this.pending.delete(msgid);
        done({ msgid, error, result });
      }
    }
  }

  // The next msgid: from 1, wrapping at 2**32 and skipping 0 (section 2).
  id() {
    const msgid = this.nextId;
    this.nextId = this.nextId === 0xffffffff ? 1 : this.nextId + 1;
    return msgid;
  }

  // Send one request without waiting; the promise is its response, or null if the
  // connection closed first.
  send(method, params, msgid = this.id()) {
    const reply = new Promise((resolve) => this.pending.set(msgid, resolve));
    this.sock.write(request(msgid, method, params));
    return reply;
  }

  // Several requests in one write (a pipeline): their responses, by msgid.
  pipeline(calls) {
    const replies = [];
    const wire = [];
    for (const [method, params] of calls) {
      const msgid = this.id();
      replies.push(new Promise((resolve) => this.pending.set(msgid, resolve)));
      wire.push(request(msgid, method, params));
    }
    this.sock.write(Buffer.concat(wire));
    return Promise.all(replies);
  }

  // The result, or a thrown ServerError.
  async call(method, ...params) {
    const reply = await this.send(method, params);
    if (reply === null) throw new Error(`connection closed before ${method} was answered`);
    if (reply.error !== null) throw new ServerError(reply.error);
    return reply.result;
  }

  // Raw bytes, for what a well-behaved client never sends; expect responses for msgids.
  raw(data, ...msgids) {
    const replies = msgids.map((m) => new Promise((resolve) => this.pending.set(m, resolve)));
    this.sock.write(data);
    return Promise.all(replies);
  }

  close() {
    this.sock.end();
    return this.closed;
  }
}
