// ws-peer.js - the reference peer: what a team would write instead of
// nearchat, on Node and the `ws` package. It speaks the subset of nearchat's
// protocol the load generator uses, with the same frames:
//
//   POST /rooms {userId, latitude, longitude}   -> {roomId}
//   WebSocket /ws?userId=...
//     {"action":"join-room","roomId"}           -> user-joined to the room, message-history to the joiner
//     {"action":"send-message","roomId","message","messageId"}
//                                               -> new-message to every member, ack to the sender
//
// Rooms live in memory; nothing is stored. One process, as a quick team
// would run it.  node bench/peers/ws-peer.js [--port 8090]
'use strict';
const http = require('http');
const crypto = require('crypto');
const { WebSocketServer } = require('ws');

const args = process.argv.slice(2);
const portAt = args.indexOf('--port');
const port = portAt >= 0 ? Number(args[portAt + 1]) : 8090;

const rooms = new Map();            // roomId -> { members: Set<ws>, seq }

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && (req.url === '/rooms' || req.url === '/create-room')) {
    let body = '';
    req.on('data', chunk => { body += chunk; });
    req.on('end', () => {
      let input;
      try { input = JSON.parse(body); } catch (e) { input = null; }
      if (!input || typeof input.userId !== 'string') {
        res.writeHead(400, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ error: 'userId is required' }));
        return;
      }
      const roomId = crypto.randomUUID();
      rooms.set(roomId, { members: new Set(), seq: 0, creator: input.userId });
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ roomId }));
    });
    return;
  }
  if (req.url === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"status":"ok"}');
    return;
  }
  res.writeHead(404, { 'Content-Type': 'application/json' });
  res.end('{"error":"not found"}');
});

const wss = new WebSocketServer({ server });
wss.on('connection', (ws, req) => {
  const userId = new URL(req.url, 'http://peer').searchParams.get('userId') || 'anonymous';
  let joined = null;
  const reply = frame => ws.send(JSON.stringify(frame));
  ws.on('message', data => {
    let msg;
    try { msg = JSON.parse(data); } catch (e) {
      reply({ type: 'error', error: 'not JSON' });
      return;
    }
    const room = rooms.get(msg.roomId);
    if (msg.action === 'join-room') {
      if (!room) { reply({ type: 'error', action: msg.action, error: 'no such room' }); return; }
      if (joined) joined.members.delete(ws);
      joined = room;
      room.members.add(ws);
      const event = JSON.stringify({ type: 'user-joined', userId, roomId: msg.roomId });
      for (const member of room.members) member.send(event);
      reply({ type: 'message-history', roomId: msg.roomId, messages: [] });
    } else if (msg.action === 'send-message') {
      if (!room || !room.members.has(ws)) {
        reply({ type: 'error', action: msg.action, error: 'not in the room' });
        return;
      }
      const seq = ++room.seq;
      const id = msg.messageId ?? crypto.randomUUID();     //  as the gateway: the client's id
      const event = JSON.stringify({ type: 'new-message', id, messageId: id, roomId: msg.roomId,
        seq, text: msg.message, createdAt: new Date().toISOString(), userId });
      for (const member of room.members) member.send(event);
      reply({ type: 'ack', action: 'send-message', messageId: msg.messageId, seq });
    } else {
      reply({ type: 'error', action: msg.action, error: 'unknown action' });
    }
  });
  ws.on('close', () => { if (joined) joined.members.delete(ws); });
});

server.listen(port, '127.0.0.1', () => console.error(`ws-peer listening on 127.0.0.1:${port}`));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
