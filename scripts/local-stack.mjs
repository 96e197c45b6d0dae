// Runs the three Workers in ONE workerd process, as Cloudflare does: service-binding calls
// between them are in-process, not hops between `wrangler dev` sessions. Each Worker still
// answers on its own port and URL, and Durable Object and KV state persist across restarts.
//
// Used by scripts/dev-setup.sh, the e2e harness (tests/e2e/src/stack.rs) and the benchmarks:
//
//   node --import scripts/wrangler-dev-guard.mjs scripts/local-stack.mjs \
//     --persist DIR --log-dir DIR [--var NAME=VALUE ...] [--run-crons] [--trigger-port N] \
//     --worker NAME=WRANGLER_FILE:PORT ...      (one per Worker, the coordinator first)
//
// Bindings, vars and secrets come from each wrangler file and the `.dev.vars` beside it,
// read by wrangler's own `unstable_getMiniflareWorkerOptions` (the configuration `wrangler
// dev` uses); `--var` sets a (non-secret) variable of every Worker, as `wrangler dev --var`
// does. `CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_<BINDING>` replaces a Hyperdrive
// binding's local connection string (wrangler's own reading of the config applies it; the
// guard preloaded with `--import` reads it too, to keep the Hyperdrive proxy alive when
// PostgreSQL is down).
//
// Every Worker answers on a socket of its own, straight into workerd. (Miniflare's entry
// socket, which runs a routing Worker in front, closes a connection whose request body the
// Worker did not read, so a client reusing it meets a reset: not how Cloudflare behaves.)
//
// Cron triggers: the scheduled handler of the Worker whose wrangler file has `[triggers]
// crons` runs on demand with `GET /cdn-cgi/handler/scheduled?cron=...` on the trigger port
// (`--trigger-port`, Miniflare's entry socket; as under `wrangler dev --test-scheduled`, but
// on a port of its own). With `--run-crons` the launcher also fires each cron at its times
// (UTC), as Cloudflare does; the e2e harness leaves that off so that no run starts in the
// middle of a scenario.
//
// Each Worker's log lines (the JSON lines it writes, which name their
// `worker`) go to `<log-dir>/<worker>.log`; runtime lines that name no Worker (a panic, an
// uncaught error) go to every Worker's log, so none is missed. SIGTERM/SIGINT stop workerd.
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";

import { Log, LogLevel, Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions, unstable_readConfig } from "wrangler";

function fail(message) {
  console.error(`local-stack: ${message}`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = {
    workers: [],
    vars: {},
    persist: null,
    logDir: null,
    host: "127.0.0.1",
    runCrons: false,
    triggerPort: 0,
  };
  for (let i = 0; i < argv.length; i++) {
    const value = () => argv[++i] ?? fail(`${argv[i - 1]} needs a value`);
    switch (argv[i]) {
      case "--worker": {
        const spec = value();
        const match = /^([a-z-]+)=(.+):(\d+)$/.exec(spec);
        if (!match) fail(`--worker ${spec}: expected NAME=WRANGLER_FILE:PORT`);
        options.workers.push({ name: match[1], config: path.resolve(match[2]), port: Number(match[3]) });
        break;
      }
      case "--var": {
        const spec = value();
        const at = spec.indexOf("=");
        if (at < 1) fail(`--var ${spec}: expected NAME=VALUE`);
        options.vars[spec.slice(0, at)] = spec.slice(at + 1);
        break;
      }
      case "--persist":
        options.persist = path.resolve(value());
        break;
      case "--log-dir":
        options.logDir = path.resolve(value());
        break;
      case "--trigger-port":
        options.triggerPort = Number(value());
        if (!Number.isInteger(options.triggerPort)) fail("--trigger-port needs a port number");
        break;
      case "--run-crons":
        options.runCrons = true;
        break;
      case "--host":
        options.host = value();
        break;
      default:
        fail(`unknown argument ${argv[i]}`);
    }
  }
  if (options.workers.length === 0) fail("no --worker given");
  if (!options.persist) fail("--persist is required");
  if (!options.logDir) fail("--log-dir is required");
  return options;
}

const options = parseArgs(process.argv.slice(2));
fs.mkdirSync(options.persist, { recursive: true });
fs.mkdirSync(options.logDir, { recursive: true });

const logs = new Map(
  options.workers.map(({ name }) => [
    name,
    fs.createWriteStream(path.join(options.logDir, `${name}.log`), { flags: "a" }),
  ]),
);

// A line names its Worker when it is one of the Workers' JSON log lines, or a runtime line
// about one of its services (`service core:user:<name>: ...`).
function ownerOf(line) {
  const json = /"worker":"([a-z-]+)"/.exec(line);
  if (json && logs.has(json[1])) return json[1];
  const service = /core:user:([a-z-]+)/.exec(line);
  if (service && logs.has(service[1])) return service[1];
  return null;
}

function route(stream) {
  readline.createInterface({ input: stream }).on("line", (line) => {
    const owner = ownerOf(line);
    for (const [name, log] of logs) {
      if (owner === null || owner === name) log.write(`${line}\n`);
    }
  });
}

for (const worker of options.workers) {
  if (!fs.existsSync(worker.config)) fail(`${worker.name}: no wrangler file at ${worker.config}`);
  worker.crons = unstable_readConfig({ config: worker.config }).triggers?.crons ?? [];
}
const scheduled = options.workers.filter((w) => w.crons.length > 0);
if (scheduled.length > 1) fail("more than one Worker has cron triggers; only one can own the trigger port");
// Miniflare's entry socket (the trigger port) routes to the first Worker: the scheduled one.
options.workers.sort((a, b) => b.crons.length - a.crons.length);

const workers = options.workers.map(({ name, config, port }) => {
  const { workerOptions, main } = unstable_getMiniflareWorkerOptions(config);
  if (!main || !fs.existsSync(main)) fail(`${name} is not built (${main}): run scripts/bootstrap.sh`);
  const worker = {
    ...workerOptions,
    name,
    modules: true,
    scriptPath: main,
    // worker-build's output: build/worker/shim.mjs imports ../index.js and the wasm module.
    modulesRoot: path.dirname(path.dirname(main)),
    modulesRules: [
      { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    unsafeDirectSockets: [{ host: options.host, port }],
    bindings: { ...workerOptions.bindings, ...options.vars },
  };
  return worker;
});

const miniflare = new Miniflare({
  workers,
  host: options.host,
  port: options.triggerPort,
  defaultPersistRoot: options.persist,
  unsafeTriggerHandlers: true,
  // EDGE_SYNC_INSPECTOR_PORT: V8's inspector for every Worker (DevTools, CPU profiles); off
  // unless set.
  inspectorPort: Number(process.env.EDGE_SYNC_INSPECTOR_PORT) || undefined,
  log: new Log(LogLevel.WARN),
  handleRuntimeStdio(stdout, stderr) {
    route(stdout);
    route(stderr);
  },
});

async function stop() {
  try {
    await miniflare.dispose();
  } finally {
    process.exit(0);
  }
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

try {
  await miniflare.ready;
} catch (error) {
  fail(`workerd did not start: ${error?.message ?? error}`);
}
for (const { name, port } of options.workers) {
  console.log(`local-stack: ${name} on http://${options.host}:${port}`);
}
if (scheduled.length > 0) {
  const trigger = new URL("/cdn-cgi/handler/scheduled", await miniflare.ready);
  console.log(`local-stack: ${scheduled[0].name}'s cron on demand: ${trigger.href}?cron=...`);
}
if (options.runCrons) {
  for (const { name, crons } of scheduled) {
    console.log(`local-stack: firing ${name}'s crons ${crons.join(", ")} at their times (UTC)`);
    fireCrons(name, crons);
  }
}

// Fires `crons` of Worker `name` at the start of every minute they match.
function fireCrons(name, crons) {
  const tick = async () => {
    const now = new Date();
    const due = crons.filter((cron) => cronMatches(cron, now));
    if (due.length > 0) {
      const worker = await miniflare.getWorker(name);
      for (const cron of due) {
        worker.scheduled({ cron, scheduledTime: now }).catch((error) => {
          console.error(`local-stack: cron ${cron} of ${name} failed: ${error?.message ?? error}`);
        });
      }
    }
    setTimeout(tick, 60_000 - (Date.now() % 60_000));
  };
  setTimeout(tick, 60_000 - (Date.now() % 60_000));
}

// Whether a five-field cron expression (minute hour day-of-month month day-of-week; `*`,
// `*/n`, `a-b`, `a-b/n` and lists of numbers; no names, no `L`/`W`/`#`) matches `date` in UTC.
// Cloudflare's full syntax:
// https://developers.cloudflare.com/workers/configuration/cron-triggers/#supported-cron-expressions
function cronMatches(expression, date) {
  const fields = expression.trim().split(/\s+/);
  if (fields.length !== 5) return false;
  const values = [
    date.getUTCMinutes(),
    date.getUTCHours(),
    date.getUTCDate(),
    date.getUTCMonth() + 1,
    date.getUTCDay(),
  ];
  const bounds = [[0, 59], [0, 23], [1, 31], [1, 12], [0, 6]];
  return fields.every((field, i) => fieldMatches(field, values[i], bounds[i]));
}

function fieldMatches(field, value, [low, high]) {
  return field.split(",").some((part) => {
    const [range, stepText] = part.split("/");
    const step = stepText === undefined ? 1 : Number(stepText);
    let [from, to] = [low, high];
    if (range !== "*") {
      const [a, b] = range.split("-").map(Number);
      from = a;
      to = b ?? (stepText === undefined ? a : high);
    }
    return Number.isInteger(step) && step > 0 && value >= from && value <= to && (value - from) % step === 0;
  });
}
