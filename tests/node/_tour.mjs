// What the node-redis tours share: the server's address from argv, one line per step,
// and bounded waits (timers that do not hold the process open).
export const port = Number(process.argv[2]);
export const host = process.argv[3] ?? "127.0.0.1";
export const show = (what, v) => console.log(`${what}: ${typeof v === "string" ? v : JSON.stringify(v)}`);
export const bounded = (p, ms = 5000) =>
  Promise.race([p, new Promise((_, no) => setTimeout(() => no(new Error(`no answer in ${ms} ms`)), ms).unref())]);
// what a call that should fail answered: its result, or the error's class and message
export const failure = async (p) => {
  try {
    return `answered ${JSON.stringify(await bounded(p))}`;
  } catch (e) {
    return `${e.constructor.name}: ${e.message}`;
  }
};
