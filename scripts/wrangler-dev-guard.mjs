// Preloaded (node --import) into the Workers' launcher, scripts/local-stack.mjs, by
// scripts/dev-setup.sh and the e2e harness, and usable with `wrangler dev` the same way. It
// keeps the local Hyperdrive proxy alive when PostgreSQL is down, and redacts secret path
// segments from wrangler's own request log lines (both below).
//
// Why: wrangler's local Hyperdrive proxy (miniflare `HyperdriveProxyController`) opens its
// socket to PostgreSQL without an 'error' listener, so when the database is down
// (ECONNREFUSED) the whole wrangler process crashes and takes every binding with it. In
// production Hyperdrive reports the failure to the Worker instead. This guard restores
// that behaviour locally: errors on sockets to the Hyperdrive target are logged and the
// Worker-side socket is closed, so the Worker sees a failed connection and can degrade
// (503 from /health, events kept for retry) while PostgreSQL is away. The proxy leaves
// errors on the Worker-side socket unhandled too (EPIPE when the database answers a socket
// the Worker already closed, as when a session is cut mid-run); those close both halves.
import net from "node:net";

const target = (() => {
  const url = process.env.CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_HYPERDRIVE;
  if (!url) return null;
  try {
    const parsed = new URL(url);
    return { host: parsed.hostname, port: Number(parsed.port || 5432) };
  } catch {
    return null;
  }
})();

function isHyperdriveTarget(args) {
  if (!target) return false;
  const options = typeof args[0] === "object" && args[0] !== null ? args[0] : { port: args[0], host: args[1] };
  return Number(options.port) === target.port && (options.host ?? "localhost") === target.host;
}

for (const name of ["connect", "createConnection"]) {
  const original = net[name];
  net[name] = function (...args) {
    const socket = original.apply(this, args);
    if (!isHyperdriveTarget(args)) return socket;
    let failed = false;
    const sources = new Set();
    socket.on("pipe", (source) => {
      sources.add(source);
      // The other half: the Worker's socket, which the proxy pipes the database's answers
      // into with no 'error' listener either. When the Worker has closed its end (an
      // invocation finished, or gave up on a session the database dropped) and the
      // database still sends, the write fails with EPIPE ("This socket has been ended by
      // the other party") and, unhandled, kills wrangler: every binding dies and the dev
      // server stops answering. Close both halves instead, as a dropped session.
      source.on("error", (error) => {
        console.error(
          JSON.stringify({ level: "warn", worker: "wrangler-dev", event: "hyperdrive_proxy_client", reason: `${error.code ?? error.message}` }),
        );
        socket.destroy();
        source.destroy();
      });
      if (failed) source.destroy();
    });
    socket.on("error", (error) => {
      failed = true;
      console.error(
        JSON.stringify({ level: "error", worker: "wrangler-dev", event: "hyperdrive_proxy", reason: `${error.code ?? error.message} ${target.host}:${target.port}` }),
      );
      for (const source of sources) source.destroy();
    });
    return socket;
  };
}

// wrangler dev prints its own line per request ("POST /webhook/keap/<token> 200 OK") with the
// full path. Keap hook URLs carry an unguessable per-hook token (Keap signs nothing), so the
// same segments the Workers redact in their own log lines (shared/src/log.rs,
// SECRET_PATH_SEGMENTS) are redacted here before anything reaches the log files.
const SECRET_PATH = /(\/webhook\/keap\/|\/coordinator\/hooks\/)[^/\s?"']+/g;
for (const stream of [process.stdout, process.stderr]) {
  const write = stream.write.bind(stream);
  stream.write = (chunk, ...rest) => {
    if (typeof chunk === "string") return write(chunk.replace(SECRET_PATH, "$1[redacted]"), ...rest);
    if (Buffer.isBuffer(chunk)) {
      const text = chunk.toString("utf8");
      const redacted = text.replace(SECRET_PATH, "$1[redacted]");
      if (redacted !== text) return write(Buffer.from(redacted, "utf8"), ...rest);
    }
    return write(chunk, ...rest);
  };
}
