// quick_load.js - a quick measure of a running nearchat, from one Node process.
//
//   node bench/quick_load.js fanout [--port 8080] [--rooms 100] [--members 10]
//                                   [--rate 2] [--seconds 10]
//       R rooms of M members over WebSocket; every member sends RATE messages a
//       second; every receiver records send-to-receive latency. Prints
//       deliveries/s, p50/p99/max latency, lost and duplicated deliveries.
//   node bench/quick_load.js idle [--port 8080] [--sockets 1000]
//       opens N sockets joined to rooms of 10 and prints the resident memory of
//       every nearchat process (stored, gateway, roomd, reaper) from /proc.
//
// Loopback only, bounded in count and time. It measures; it never passes or
// fails. The full load generator (C, epoll, 20,000 sockets) is issue 5's.
'use strict';
const fs = require('fs');
const http = require('http');
const WebSocket = require('ws');

const args = process.argv.slice(2);
const mode = args[0] || 'fanout';
function opt(name, fallback) {
  const i = args.indexOf('--' + name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
}
const port = opt('port', 8080);

function post(path, body) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } },
      res => { let text = ''; res.on('data', c => text += c);
               res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(text) })); });
    req.on('error', reject);
    req.end(data);
  });
}

async function createRoom(i) {
  const lat = 48 + (i % 100) * 0.01, lon = 2 + Math.floor(i / 100) * 0.01;
  const res = await post('/rooms', { userId: `owner-${i}`, latitude: lat, longitude: lon });
  if (res.status !== 200) throw new Error(`create: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.roomId;
}

// Open a socket for user and join room; resolves once message-history came.
function member(user, room, onMessage) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?userId=${user}`);
    const timer = setTimeout(() => reject(new Error(`join timed out for ${user}`)), 20000);
    ws.on('error', reject);
    ws.on('open', () => ws.send(JSON.stringify({ action: 'join-room', roomId: room })));
    ws.on('message', data => {
      const frame = JSON.parse(data);
      if (frame.type === 'message-history') { clearTimeout(timer); resolve(ws); }
      else if (frame.type === 'error') reject(new Error(`${user}: ${frame.error}`));
      else onMessage(frame);
    });
  });
}

function percentile(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : 0;
}

async function fanout() {
  const rooms = opt('rooms', 100), members = opt('members', 10);
  const rate = opt('rate', 2), seconds = opt('seconds', 10);
  const latencies = [];
  const seen = new Map();           // receiver -> Set of message ids
  let delivered = 0, duplicated = 0, errors = 0, sent = 0, acked = 0;
  const sockets = [];
  for (let r = 0; r < rooms; r++) {
    const room = await createRoom(r);
    const joins = [];
    for (let m = 0; m < members; m++) {
      const user = `u-${r}-${m}`;
      const got = new Set();
      seen.set(user, got);
      joins.push(member(user, room, frame => {
        if (frame.type === 'new-message') {
          const sentAt = Number(frame.text.split(' ')[0]);
          if (got.has(frame.id)) duplicated++;
          got.add(frame.id);
          delivered++;
          latencies.push(Number(process.hrtime.bigint() / 1000n) - sentAt);
        }
        else if (frame.type === 'ack') acked++;
        else if (frame.type === 'error') errors++;
      }).then(ws => ({ ws, room, user })));
    }
    sockets.push(...await Promise.all(joins));
  }
  // Measure from here: every socket is in its room.
  latencies.length = 0; delivered = 0;
  const started = Date.now();
  const interval = 1000 / rate;
  const timers = sockets.map(({ ws, room, user }, i) => {
    let n = 0;
    const send = () => {
      const now = Number(process.hrtime.bigint() / 1000n);
      ws.send(JSON.stringify({ action: 'send-message', roomId: room, messageId: `${user}-${n++}`,
                               message: `${now} ${'x'.repeat(100)}` }));
      sent++;
    };
    return setTimeout(() => { send(); timers[i] = setInterval(send, interval); },
                      Math.random() * interval);
  });
  await new Promise(resolve => setTimeout(resolve, seconds * 1000));
  timers.forEach(t => { clearTimeout(t); clearInterval(t); });
  const sendingMs = Date.now() - started;
  await new Promise(resolve => setTimeout(resolve, 2000));       // let the last arrive
  sockets.forEach(({ ws }) => ws.close());
  latencies.sort((a, b) => a - b);
  const expected = sent * members;
  console.log(`fanout: ${rooms} rooms x ${members} members, ${rate} msg/s each, ${seconds} s`);
  console.log(`  sent ${sent}, acked ${acked}, delivered ${delivered} of ${expected} expected` +
              ` (lost ${expected - delivered + duplicated}, duplicated ${duplicated}, errors ${errors})`);
  console.log(`  deliveries/s ${(delivered / (sendingMs / 1000)).toFixed(0)}`);
  console.log(`  send-to-receive latency ms: p50 ${(percentile(latencies, 0.5) / 1000).toFixed(2)}` +
              `  p99 ${(percentile(latencies, 0.99) / 1000).toFixed(2)}` +
              `  max ${(latencies[latencies.length - 1] / 1000).toFixed(2)}`);
  process.exit(0);
}

// Resident memory of every nearchat daemon, from /proc.
function daemons() {
  const found = [];
  for (const pid of fs.readdirSync('/proc').filter(name => /^\d+$/.test(name))) {
    try {
      const comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (!['stored', 'gateway', 'roomd', 'reaper'].includes(comm)) continue;
      const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
      const rss = Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
      const threads = Number(/Threads:\s+(\d+)/.exec(status)[1]);
      found.push({ pid, comm, rss, threads });
    } catch (e) { /* gone meanwhile */ }
  }
  return found;
}

async function idle() {
  const count = opt('sockets', 1000);
  const before = daemons();
  const sockets = [];
  let room;
  for (let i = 0; i < count; i++) {
    if (i % 10 === 0) room = await createRoom(i / 10);
    sockets.push(await member(`idle-${i}`, room, () => {}));
  }
  await new Promise(resolve => setTimeout(resolve, 2000));
  const after = daemons();
  console.log(`idle: ${count} sockets joined to rooms of 10 (resident memory, KiB)`);
  let total = 0, totalBefore = 0;
  for (const d of after) {
    const b = before.find(x => x.pid === d.pid);
    total += d.rss; totalBefore += b ? b.rss : 0;
    console.log(`  ${d.comm.padEnd(8)} pid ${d.pid}: ${d.rss} KiB` +
                (b ? ` (was ${b.rss}, +${d.rss - b.rss})` : '') + `, ${d.threads} threads`);
  }
  console.log(`  all: ${total} KiB, +${total - totalBefore} KiB for ${count} sockets,` +
              ` ${((total - totalBefore) / count).toFixed(1)} KiB a socket`);
  sockets.forEach(ws => ws.close());
  process.exit(0);
}

(mode === 'idle' ? idle() : fanout()).catch(e => { console.error(e.message); process.exit(1); });
