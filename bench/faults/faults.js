// faults.js - the fault instrument: a steady stream of acknowledged sends
// (ROOMS x MEMBERS, RATE messages a second each, as the app sends them:
// stream.js), one fault injected into one daemon, then every member's view
// held against the stored history (account.js). `./nearchat bench faults`
// runs it; `node bench/faults/faults.js --help` lists the options.
//
// A scenario is TARGET:KIND[:SECONDS]: TARGET stored, roomd (shard-1),
// shard-N, gateway or reaper; KIND kill (kill -9) or stop (SIGSTOP for
// SECONDS, then SIGCONT); or `none`, the stream alone. The daemon is found
// among the descendants of the supervisor (`./nearchat up`) by its binary
// name, a shard also by its SHARD_ID, so a supervisor that restarts daemons
// (or runs them under a wrapper) is measured the same way.
//
// Each scenario runs in a fresh system (`--up CMD`, by default ./nearchat
// up, or `--bin DIR`, the same daemons started by a plain bash stand-in)
// on its own ports and a temporary DATA_DIR; or, with --http/--ws (and
// --supervisor PID to inject faults), against a system already running.
// Time is bounded: start, join, BEFORE s of stream, the fault, AFTER s,
// a drain of at most DRAIN s for the last acks, SETTLE s, the histories.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const net = require('net');
const { spawn } = require('child_process');
const { Stream, request, clock } = require('./stream');
const { account } = require('./account');

const root = path.resolve(__dirname, '..', '..');

// ---------------------------------------------------------------------------
// Options: a flag, else FAULTS_<NAME> from the environment, else the default.

const OPTIONS = {
  rooms:        [20, 'rooms'],
  members:      [5, 'members a room, each its own WebSocket and userId'],
  rate:         [10, 'messages a second each member sends'],
  before:       [10, 'seconds of stream before the fault'],
  after:        [15, 'seconds of stream after the fault'],
  'stop-s':     [8, 'seconds a stop scenario holds the daemon stopped (unless TARGET:stop:S)'],
  drain:        [15, 'most seconds to wait for the last acks once the stream stops'],
  settle:       [2, 'seconds to wait after that before reading the histories'],
  'ack-timeout': [3, 'seconds without an ack before a send goes again'],
  'late-ms':    [500, 'a message acknowledged later than this after it was made is late'],
  shards:       [2, 'ROOMD_SHARDS of each fresh system'],
  scenarios:    ['stored:kill,stored:stop,roomd:kill,roomd:stop,gateway:kill,gateway:stop',
                 'comma-separated TARGET:KIND[:SECONDS], or none'],
  up:           [`${root}/nearchat up`, 'command that runs the system in the foreground'],
  bin:          ['', 'instead of --up: start the daemons of this directory under a bash stand-in'],
  'port-base':  ['', 'scenario i uses HTTP_PORT base+10i (stored +1, backend +2); empty: free ports'],
  http:         ['', 'a running system instead of fresh ones: its HTTP URL'],
  ws:           ['', 'with --http: its WebSocket URL (default: ws://host/ws)'],
  supervisor:   ['', 'with --http: pid whose descendants are the daemons (to inject faults)'],
  json:         [`${root}/bench/results/faults.json`, 'where the JSON report goes'],
};

function usage() {
  const lines = ['usage: node bench/faults/faults.js [--NAME VALUE ...]', ''];
  for (const [name, [value, help]] of Object.entries(OPTIONS)) {
    const env = 'FAULTS_' + name.toUpperCase().replace(/-/g, '_');
    lines.push(`  --${name.padEnd(12)} ${env.padEnd(20)} ${help}`);
    lines.push(`  ${' '.repeat(35)}default ${JSON.stringify(value)}`);
  }
  return lines.join('\n');
}

function parseOptions(argv) {
  const options = {};
  for (const [name, [value]] of Object.entries(OPTIONS)) {
    const env = process.env['FAULTS_' + name.toUpperCase().replace(/-/g, '_')];
    options[name] = env !== undefined && env !== '' ? env : value;
  }
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].replace(/^--/, '');
    if (name === 'help' || name === 'h') {
      console.log(usage());
      process.exit(0);
    }
    if (!(name in OPTIONS) || i + 1 >= argv.length) {
      console.error(`faults: unknown option or missing value: ${argv[i]}\n${usage()}`);
      process.exit(2);
    }
    options[name] = argv[++i];
  }
  for (const [name, [value]] of Object.entries(OPTIONS))
    if (typeof value === 'number') {
      options[name] = Number(options[name]);
      if (!Number.isFinite(options[name]) || options[name] < 0) {
        console.error(`faults: --${name} must be a number >= 0`);
        process.exit(2);
      }
    }
  if (options.rooms < 1 || options.members < 1 || options.rate <= 0) {
    console.error('faults: --rooms and --members must be at least 1, --rate above 0');
    process.exit(2);
  }
  return options;
}

function parseScenario(text, stopS) {
  const [target, kind = 'none', seconds] = text.trim().split(':');
  if (target === 'none')
    return { name: 'none', target: null, kind: 'none', seconds: 0 };
  if (!/^(stored|roomd|gateway|reaper|shard-\d+)$/.test(target) || !/^(kill|stop)$/.test(kind)) {
    console.error(`faults: bad scenario '${text}' (TARGET:kill or TARGET:stop[:SECONDS])`);
    process.exit(2);
  }
  const s = kind === 'stop' ? Number(seconds || stopS) : 0;
  const name = kind === 'kill' ? `${target} kill -9` : `${target} SIGSTOP ${s} s`;
  return { name, target, kind, seconds: s };
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
const say = text => process.stderr.write(`faults: ${text}\n`);

// ---------------------------------------------------------------------------
// Processes: the supervisor's descendants, read from /proc.

function procStat(pid) {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = text.lastIndexOf(')');
    const fields = text.slice(close + 2).split(' ');
    return { pid, comm: text.slice(text.indexOf('(') + 1, close), state: fields[0],
             ppid: Number(fields[1]), start: fields[19] };
  } catch (e) {
    return null;
  }
}

function descendants(ancestor) {
  const all = fs.readdirSync('/proc').filter(name => /^\d+$/.test(name))
    .map(name => procStat(Number(name))).filter(Boolean);
  const found = [];
  let parents = new Set([Number(ancestor)]);
  while (parents.size) {
    const children = all.filter(p => parents.has(p.ppid));
    found.push(...children);
    parents = new Set(children.map(p => p.pid));
  }
  return found;
}

function shardId(pid) {
  try {
    const env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    const entry = env.find(e => e.startsWith('SHARD_ID='));
    return entry ? entry.slice('SHARD_ID='.length) : null;
  } catch (e) {
    return null;
  }
}

// The live process of TARGET under the supervisor, or null.
function findTarget(supervisor, target) {
  const binary = target.startsWith('shard-') ? 'roomd' : target;
  const want = target === 'roomd' ? 'shard-1' : target.startsWith('shard-') ? target : null;
  const matches = descendants(supervisor).filter(p => p.comm === binary && p.state !== 'Z');
  if (!want)
    return matches[0] || null;
  return matches.find(p => shardId(p.pid) === want) || null;
}

// Alive and still the process we saw (not a reused pid).
function same(p) {
  const now = procStat(p.pid);
  return now !== null && now.start === p.start && now.state !== 'Z';
}

function signal(p, name) {
  if (same(p))
    try { process.kill(p.pid, name); } catch (e) { /* gone meanwhile */ }
}

// ---------------------------------------------------------------------------
// A fresh system: the supervisor on its own ports and DATA_DIR.

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = server.address().port;
      server.close(() => resolve(port));
    });
  });
}

// What `./nearchat up` runs, for a build directory of its own (the suite's).
function standIn(bin, shards) {
  const lines = [`"${bin}/nearchat-keys" >/dev/null || exit 1`,
                 'pids=()', `"${bin}/stored" & pids+=($!)`, `"${bin}/gateway" & pids+=($!)`];
  for (let s = 1; s <= shards; s++)
    lines.push(`SHARD_ID=shard-${s} "${bin}/roomd" & pids+=($!)`);
  lines.push(`"${bin}/reaper" & pids+=($!)`,
             'trap \'kill -TERM "${pids[@]}" 2>/dev/null; wait; exit 0\' INT TERM', 'wait');
  return ['bash', ['-c', lines.join('\n')]];
}

async function startSystem(options, index) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nearchat-faults-'));
  let ports;
  if (options['port-base'] !== '') {
    const base = Number(options['port-base']) + 10 * index;
    ports = [base, base + 1, base + 2];
  }
  else
    ports = [await freePort(), await freePort(), await freePort()];
  const env = Object.assign({}, process.env, {
    HTTP_PORT: String(ports[0]), HTTP_BIND: '127.0.0.1', DATA_DIR: path.join(dir, 'data'),
    KEYS_DIR: path.join(dir, 'data', 'keys'),     // the bus's keys, made at start
    STORED_ENDPOINT: `tcp://127.0.0.1:${ports[1]}`,
    GATEWAY_BACKEND_ENDPOINT: `tcp://127.0.0.1:${ports[2]}`,
    GATEWAY_ENDPOINTS: `tcp://127.0.0.1:${ports[2]}`,
    ROOMD_SHARDS: String(options.shards), LOG_LEVEL: process.env.LOG_LEVEL || 'warn',
    MAX_CONNECTIONS: String(options.rooms * options.members + 100),
    // Every member is on 127.0.0.1 and may send faster than a person:
    // the per-address and per-user limits are not what this measures.
    SOCKETS_PER_ADDRESS: '0', MESSAGES_PER_S: '0',
  });
  fs.mkdirSync(env.DATA_DIR);
  const [command, args] = options.bin ? standIn(options.bin, options.shards)
                                      : [options.up.split(/\s+/)[0], options.up.split(/\s+/).slice(1)];
  const log = fs.openSync(path.join(dir, 'log'), 'a');
  const child = spawn(command, args, { env, cwd: root, stdio: ['ignore', log, log] });
  fs.closeSync(log);
  const system = { dir, child, pid: child.pid, exited: false, seen: [],
                   httpUrl: `http://127.0.0.1:${ports[0]}`, wsUrl: `ws://127.0.0.1:${ports[0]}/ws` };
  child.on('exit', () => { system.exited = true; });
  // Up when /healthz is ok with every shard listed (the first start builds).
  const deadline = clock() + 120000;
  while (clock() < deadline && !system.exited) {
    const health = await request(system.httpUrl, 'GET', '/healthz', null, 1000);
    if (health.status === 200 && health.body && health.body.status === 'ok'
        && (health.body.shards || []).length >= options.shards) {
      remember(system);
      return system;
    }
    await sleep(200);
  }
  const lines = tail(path.join(dir, 'log'));
  await stopSystem(system);
  throw new Error(`the system did not come up; its log:\n${lines}`);
}

function tail(file) {
  try { return fs.readFileSync(file, 'utf8').split('\n').slice(-20).join('\n'); }
  catch (e) { return '(no log)'; }
}

// Keep every daemon the supervisor ran, so that all are stopped in the end
// even if the supervisor lost them (a killed daemon's restart included).
function remember(system) {
  for (const p of descendants(system.pid))
    if (!system.seen.some(q => q.pid === p.pid && q.start === p.start))
      system.seen.push(p);
}

// Ctrl-C to the supervisor; then, for whatever it left running, SIGTERM and
// at last SIGKILL, each by pid.
async function stopSystem(system) {
  remember(system);
  for (const p of system.seen)
    signal(p, 'SIGCONT');
  if (!system.exited)
    try { process.kill(system.pid, 'SIGINT'); } catch (e) { /* gone */ }
  const alive = () => system.seen.filter(same).length + (system.exited ? 0 : 1);
  for (const [wait, next] of [[5000, 'SIGTERM'], [3000, 'SIGKILL']]) {
    const deadline = clock() + wait;
    while (alive() && clock() < deadline)
      await sleep(100);
    if (!alive())
      break;
    system.leftover = system.seen.filter(same).map(p => p.comm);
    for (const p of system.seen)
      signal(p, next);
    if (!system.exited)
      try { process.kill(system.pid, next); } catch (e) { /* gone */ }
  }
  fs.rmSync(system.dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------
// One scenario: the stream, the fault, the accounting.

async function runScenario(options, scenario, system) {
  const stream = new Stream({ httpUrl: system.httpUrl, wsUrl: system.wsUrl,
                              rooms: options.rooms, members: options.members,
                              rate: options.rate, ackTimeoutMs: options['ack-timeout'] * 1000,
                              tag: `f${process.pid}-${Date.now().toString(36)}` });
  const fault = { at: null, pid: null, restarted_after_ms: null, error: null };
  let stopped = null;
  try {
    await stream.open();
    stream.start();
    await sleep(options.before * 1000);
    fault.at = clock();
    if (scenario.target) {
      const victim = system.pid ? findTarget(system.pid, scenario.target) : null;
      if (!victim)
        fault.error = `no ${scenario.target} process under pid ${system.pid}`;
      else {
        fault.pid = victim.pid;
        signal(victim, scenario.kind === 'kill' ? 'SIGKILL' : 'SIGSTOP');
        say(`${scenario.name}: pid ${victim.pid} at ${options.before} s`);
        if (scenario.kind === 'stop') {
          stopped = victim;
          setTimeout(() => signal(victim, 'SIGCONT'), scenario.seconds * 1000);
        }
        else
          watchRestart(system, scenario, victim, fault, options.after * 1000);
      }
    }
    await sleep(options.after * 1000);
    stream.stop();
    const left = await stream.drain(options.drain * 1000);
    if (left)
      say(`${scenario.name}: ${left} messages still unacknowledged after the ${options.drain} s drain`);
    await sleep(options.settle * 1000);
    // A message never acknowledged counts as waiting until now.
    const figures = await account(stream, fault, { lateMs: options['late-ms'], endAt: clock() });
    return Object.assign({ scenario: scenario.name, target: scenario.target, kind: scenario.kind,
                           stop_s: scenario.seconds, fault_pid: fault.pid,
                           restarted_after_ms: fault.restarted_after_ms,
                           fault_error: fault.error }, figures);
  } finally {
    if (stopped)
      signal(stopped, 'SIGCONT');
    await stream.close();
  }
}

// Poll for a new process of the killed target: the supervisor restarting it.
function watchRestart(system, scenario, victim, fault, forMs) {
  const started = clock();
  const poll = setInterval(() => {
    if (system.seen)
      remember(system);
    const now = findTarget(system.pid, scenario.target);
    if (now && now.pid !== victim.pid) {
      fault.restarted_after_ms = Math.round(clock() - started);
      clearInterval(poll);
    }
    else if (clock() - started > forMs)
      clearInterval(poll);
  }, 50);
}

// ---------------------------------------------------------------------------
// The table.

function cell(value, scale = 1) {
  if (value === null || value === undefined)
    return 'never';
  return scale === 1 ? String(value) : (value / scale).toFixed(1);
}

function table(results) {
  const columns = [
    ['scenario', 20, r => r.scenario],
    ['sent', 7, r => r.sent],
    ['acked lost', 10, r => r.lost === null ? 'n/a' : r.lost],
    ['hist dup', 8, r => r.history_dup === null ? 'n/a' : r.history_dup],
    ['never recv', 10, r => r.never === null ? 'n/a' : r.never],
    ['dup deliv', 9, r => r.dup_deliv],
    ['out of order', 12, r => r.out_of_order],
    ['1st ack s', 9, r => cell(r.first_ack_ms, 1000)],
    ['all acked s', 11, r => cell(r.all_acked_ms, 1000)],
    ['max wait s', 10, r => (r.max_wait_ms / 1000).toFixed(1)],
    ['resends', 7, r => r.resends],
    ['unacked', 7, r => r.unacked],
    ['restart s', 9, r => r.kind === 'kill' ? cell(r.restarted_after_ms, 1000) : '-'],
  ];
  const row = values => values.map((v, i) => i === 0 ? String(v).padEnd(columns[i][1])
                                                   : String(v).padStart(columns[i][1])).join(' ');
  const lines = [row(columns.map(c => c[0]))];
  for (const r of results) {
    if (r.error) {
      lines.push(`${r.scenario.padEnd(20)} not measured: ${r.error}`);
      continue;
    }
    lines.push(row(columns.map(c => c[2](r))));
    const notes = [];
    if (r.history_unreadable)
      notes.push(`history unreadable for ${r.history_unreadable} members (${r.history_error})`);
    if (r.fault_error)
      notes.push(r.fault_error);
    const errors = Object.entries(r.errors).map(([k, n]) => `${k} x${n}`).join(', ');
    if (errors)
      notes.push(`error frames: ${errors}`);
    notes.push(`${r.affected_rooms} rooms stalled, ${r.late} late messages, ` +
               `${r.reconnects} reconnects, ${r.delivered} deliveries`);
    lines.push(...notes.map(n => ' '.repeat(20) + ' ' + n));
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------

async function main() {
  const options = parseOptions(process.argv.slice(2));
  const scenarios = options.scenarios.split(',').map(s => parseScenario(s, options['stop-s']));
  const results = [];
  let live = null;
  const cleanup = async () => { if (live) { const s = live; live = null; await stopSystem(s); } };
  for (const name of ['SIGINT', 'SIGTERM'])
    process.on(name, () => { cleanup().finally(() => process.exit(130)); });
  let broken = false;
  for (const [index, scenario] of scenarios.entries()) {
    say(`${scenario.name}: ${options.rooms} rooms x ${options.members} members, ${options.rate}/s ` +
        `each, ${options.before} s + ${options.after} s`);
    let system;
    try {
      if (options.http)
        system = { httpUrl: options.http.replace(/\/$/, ''),
                   wsUrl: options.ws || options.http.replace(/^http/, 'ws').replace(/\/$/, '') + '/ws',
                   pid: options.supervisor ? Number(options.supervisor) : null, seen: null };
      else
        live = system = await startSystem(options, index);
      results.push(await runScenario(options, scenario, system));
    } catch (e) {
      broken = true;
      say(`${scenario.name}: not measured: ${e.message}`);
      results.push({ scenario: scenario.name, target: scenario.target, kind: scenario.kind,
                     error: e.message });
    } finally {
      await cleanup();
    }
    if (system && system.leftover && system.leftover.length)
      say(`${scenario.name}: the supervisor left ${system.leftover.join(', ')} running; stopped by pid`);
  }
  const report = {
    generated: new Date().toISOString(),
    machine: `${os.cpus()[0].model}, ${os.cpus().length} cores`,
    config: { rooms: options.rooms, members: options.members, rate: options.rate,
              before_s: options.before, after_s: options.after, ack_timeout_s: options['ack-timeout'],
              late_ms: options['late-ms'], shards: options.shards,
              system: options.http ? options.http : options.bin ? `stand-in, ${options.bin}` : options.up },
    scenarios: results,
  };
  fs.mkdirSync(path.dirname(options.json), { recursive: true });
  fs.writeFileSync(options.json, JSON.stringify(report, null, 2) + '\n');
  console.log(table(results));
  say(`results: ${options.json}`);
  // The instrument failed (nothing measured, or no fault injected), not the
  // system: exit 1.
  process.exit(broken || results.some(r => !r.error && (r.acked === 0 || r.fault_error)) ? 1 : 0);
}

main().catch(e => { console.error(`faults: ${e.stack || e}`); process.exit(1); });
