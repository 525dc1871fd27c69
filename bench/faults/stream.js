// stream.js - the chat members of a fault run, each on its own WebSocket,
// behaving as the app does: every message keeps its own messageId until it
// is acknowledged, and is sent again (the same messageId) on an error frame,
// on no ack within the ack timeout, and after the socket closed (once it has
// reconnected and rejoined with sinceSeq, the highest seq it saw in its room).
// After a refusal for want of a backend (5xx, 429) a member probes: it sends
// only its oldest waiting message, every RETRY_AFTER_ERROR_MS, until one is
// acknowledged, then the rest; so an outage costs a few frames a second a
// member, not one per waiting message, and recovery shows within that period.
//
// What each member keeps is what the figures need (account.js):
//   - every message it made: when it was made, each send, its ack (seq, time);
//   - every seq delivered to it (new-message, message-history), how many times,
//     and how many arrived below a seq it already had (out of order);
//   - the baseline: the highest seq of its first message-history, so only
//     messages stored after it joined are expected of it.
'use strict';
const WebSocket = require('ws');

const RECONNECT_MIN_MS = 100;       // first reconnect delay, doubling...
const RECONNECT_MAX_MS = 1000;      // ...up to this: the aim is under 2 s
const RETRY_AFTER_ERROR_MS = 250;   // a refused send is tried again after this
const JOIN_TIMEOUT_MS = 5000;       // a join unanswered this long: reconnect
const SWEEP_MS = 50;                // how often due resends are looked for

const clock = () => performance.now();

// HTTP with a timeout; resolves {status, body} (body parsed when JSON), never rejects.
async function request(base, method, path, body, timeoutMs = 5000) {
  try {
    const answer = await fetch(base + path, {
      method,
      headers: body ? { 'Content-Type': 'application/json' } : undefined,
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await answer.text();
    let parsed = null;
    try { parsed = JSON.parse(text); } catch (e) { parsed = text; }
    return { status: answer.status, body: parsed };
  } catch (e) {
    return { status: 0, body: String(e && e.message || e) };
  }
}

class Member {
  constructor(stream, room, index) {
    this.stream = stream;
    this.room = room;
    this.index = index;
    this.userId = `${stream.tag}-r${room.index}-m${index}`;
    this.ws = null;
    this.state = 'down';            // down, connecting, joining, ready
    this.closing = false;           // the run is over: no reconnect
    this.backoff = RECONNECT_MIN_MS;
    this.joins = 0;
    this.joinTimer = null;
    this.reconnectTimer = null;
    this.probing = false;           // refused by a backend: one message at a time
    // Sending
    this.made = 0;
    this.messages = [];             // every message made, in order
    this.pending = new Map();       // messageId -> message, until acked
    this.resends = 0;
    this.extraAcks = 0;             // acks for a message already acknowledged
    this.errors = {};               // error frames by "action status"
    this.reconnects = 0;
    // Receiving
    this.baseline = null;           // highest seq of the first message-history
    this.maxSeq = 0;
    this.seen = new Map();          // seq -> times delivered
    this.duplicates = 0;
    this.outOfOrder = 0;
    this.roomClosed = 0;
  }

  connect() {
    if (this.closing)
      return;
    this.state = 'connecting';
    const url = `${this.stream.wsUrl}?userId=${encodeURIComponent(this.userId)}`;
    const ws = new WebSocket(url, { handshakeTimeout: 3000 });
    this.ws = ws;
    ws.on('open', () => { if (this.ws === ws) this.join(); });
    ws.on('message', data => { if (this.ws === ws) this.receive(data); });
    ws.on('error', () => {});       // 'close' follows and handles it
    ws.on('close', () => { if (this.ws === ws) this.lost(); });
  }

  join() {
    this.state = 'joining';
    this.joins++;
    const frame = { action: 'join-room', roomId: this.room.id, userName: this.userId,
                    requestId: `join-${this.joins}` };
    if (this.maxSeq > 0)
      frame.sinceSeq = this.maxSeq;
    this.ws.send(JSON.stringify(frame));
    clearTimeout(this.joinTimer);
    this.joinTimer = setTimeout(() => {
      if (this.state === 'joining' && this.ws)
        this.ws.terminate();        // -> close -> reconnect
    }, JOIN_TIMEOUT_MS);
  }

  // The socket closed (or never opened): every pending message goes again
  // once the member is back in its room.
  lost() {
    clearTimeout(this.joinTimer);
    this.ws = null;
    this.state = 'down';
    for (const message of this.pending.values())
      message.nextAt = 0;
    if (this.closing)
      return;
    this.reconnects++;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.connect(), this.backoff);
    this.backoff = Math.min(this.backoff * 2, RECONNECT_MAX_MS);
  }

  // A new message, due now; sent at once when the member is in its room.
  make() {
    const t = clock();
    const message = { messageId: `${this.userId}-${++this.made}`, made: t, sends: 0,
                      nextAt: 0, ackAt: null, ackSeq: null };
    this.messages.push(message);
    this.pending.set(message.messageId, message);
    if (this.state === 'ready' && !this.probing)
      this.transmit(message, t);
  }

  transmit(message, t) {
    if (message.sends > 0)
      this.resends++;
    message.sends++;
    message.nextAt = t + this.stream.ackTimeoutMs;
    this.ws.send(JSON.stringify({ action: 'send-message', roomId: this.room.id,
                                  message: `fault run message ${message.messageId}`,
                                  messageId: message.messageId,
                                  requestId: message.messageId }));
  }

  // Resend whatever is due: unacknowledged past the timeout, refused, or
  // waiting since the socket closed.
  sweep(t) {
    if (this.state !== 'ready')
      return;
    for (const message of this.pending.values()) {
      if (message.nextAt <= t)
        this.transmit(message, t);
      if (this.probing)
        break;                      // the oldest alone
    }
  }

  deliver(seq) {
    if (typeof seq !== 'number')
      return;
    const times = this.seen.get(seq) || 0;
    this.seen.set(seq, times + 1);
    if (times > 0)
      this.duplicates++;
    else if (seq < this.maxSeq)
      this.outOfOrder++;
    if (seq > this.maxSeq)
      this.maxSeq = seq;
  }

  receive(data) {
    let frame;
    try { frame = JSON.parse(data); } catch (e) { return; }
    const t = clock();
    switch (frame.type) {
      case 'new-message':
        if (frame.roomId === this.room.id)
          this.deliver(frame.seq);
        break;
      case 'message-history': {
        if (frame.roomId !== this.room.id)
          break;
        const messages = Array.isArray(frame.messages) ? frame.messages : [];
        if (this.baseline === null)
          this.baseline = messages.reduce((high, m) => Math.max(high, m.seq || 0), 0);
        for (const m of messages)
          this.deliver(m.seq);
        if (this.state === 'joining') {
          clearTimeout(this.joinTimer);
          this.state = 'ready';
          this.backoff = RECONNECT_MIN_MS;
          this.sweep(t);
        }
        break;
      }
      case 'ack': {
        const id = frame.messageId || frame.requestId;
        const message = this.pending.get(id);
        if (!message) {
          this.extraAcks++;
          break;
        }
        message.ackAt = t;
        message.ackSeq = frame.seq;
        this.pending.delete(id);
        if (this.probing) {
          this.probing = false;
          this.sweep(t);
        }
        break;
      }
      case 'error': {
        const key = `${frame.action || '?'} ${frame.status || '?'}`;
        this.errors[key] = (this.errors[key] || 0) + 1;
        const id = frame.messageId || frame.requestId;
        if (frame.action === 'join-room' || String(id).startsWith('join-')) {
          // Joined nowhere: try the join again shortly, on this socket.
          clearTimeout(this.joinTimer);
          this.joinTimer = setTimeout(() => {
            if (this.state === 'joining' && this.ws) this.join();
          }, RETRY_AFTER_ERROR_MS);
          break;
        }
        const message = this.pending.get(id);
        if (message)
          message.nextAt = t + RETRY_AFTER_ERROR_MS;
        if (message && (frame.status >= 500 || frame.status === 429))
          this.probing = true;
        // Refused as no participant: the room forgot us; join it again (the
        // app's user would), and the send goes again once in.
        if ((frame.status === 403 || frame.status === 404) && this.state === 'ready')
          this.join();
        break;
      }
      case 'room-closed':
        this.roomClosed++;
        break;
      default:
        break;
    }
  }

  close() {
    this.closing = true;
    clearTimeout(this.joinTimer);
    clearTimeout(this.reconnectTimer);
    const ws = this.ws;
    if (!ws)
      return Promise.resolve();
    return new Promise(resolve => {
      const done = setTimeout(() => { ws.terminate(); resolve(); }, 1000);
      ws.once('close', () => { clearTimeout(done); resolve(); });
      ws.close();
    });
  }
}

// The whole stream: rooms x members, each member making `rate` messages a
// second while the stream runs.
class Stream {
  constructor(options) {
    this.httpUrl = options.httpUrl;
    this.wsUrl = options.wsUrl;
    this.rooms = [];
    this.members = [];
    this.rate = options.rate;
    this.ackTimeoutMs = options.ackTimeoutMs;
    this.tag = options.tag;
    this.roomCount = options.rooms;
    this.memberCount = options.members;
    this.timers = [];
    this.sweeper = null;
  }

  // Rooms over HTTP, then every member connected and joined; rejects when
  // not all are in within timeoutMs.
  async open(timeoutMs = 20000) {
    for (let r = 0; r < this.roomCount; r++) {
      const room = { index: r, id: null, members: [] };
      const creator = `${this.tag}-r${r}-m0`;
      let answer;
      for (let attempt = 0; attempt < 5; attempt++) {
        answer = await request(this.httpUrl, 'POST', '/rooms', {
          userId: creator, latitude: 48.85 + r * 0.01, longitude: 2.35,
          roadName: `fault run road ${r}`, maxParticipants: Math.max(this.memberCount, 2) });
        if (answer.status === 200)
          break;
        await new Promise(resolve => setTimeout(resolve, 200));
      }
      if (answer.status !== 200 || !answer.body.roomId)
        throw new Error(`POST /rooms answered ${answer.status} ${JSON.stringify(answer.body)}`);
      room.id = answer.body.roomId;
      for (let m = 0; m < this.memberCount; m++) {
        const member = new Member(this, room, m);
        room.members.push(member);
        this.members.push(member);
      }
      this.rooms.push(room);
    }
    this.sweeper = setInterval(() => {
      const t = clock();
      for (const member of this.members) member.sweep(t);
    }, SWEEP_MS);
    for (const member of this.members)
      member.connect();
    const deadline = clock() + timeoutMs;
    while (this.members.some(member => member.state !== 'ready')) {
      if (clock() > deadline) {
        const out = this.members.filter(member => member.state !== 'ready').length;
        throw new Error(`${out} of ${this.members.length} members did not join within ${timeoutMs} ms`);
      }
      await new Promise(resolve => setTimeout(resolve, 50));
    }
  }

  // Each member makes a message every 1/rate s from a random phase, on a
  // schedule that does not drift.
  start() {
    const interval = 1000 / this.rate;
    const begin = clock();
    for (const member of this.members) {
      let k = 0;
      const phase = Math.random() * interval;
      const tick = () => {
        member.make();
        k++;
        const next = begin + phase + k * interval - clock();
        member.timer = setTimeout(tick, Math.max(0, next));
      };
      member.timer = setTimeout(tick, phase);
    }
  }

  stop() {
    for (const member of this.members)
      clearTimeout(member.timer);
  }

  pending() {
    return this.members.reduce((sum, member) => sum + member.pending.size, 0);
  }

  // Wait until every message is acknowledged, or timeoutMs.
  async drain(timeoutMs) {
    const deadline = clock() + timeoutMs;
    while (this.pending() > 0 && clock() < deadline)
      await new Promise(resolve => setTimeout(resolve, 50));
    return this.pending();
  }

  async close() {
    clearInterval(this.sweeper);
    this.stop();
    await Promise.all(this.members.map(member => member.close()));
  }
}

module.exports = { Stream, request, clock };
