// compose_chat - one chat through the edge, for tests/test_compose_run.sh:
//
//   node compose_chat.js BASE_URL CA_PEM       (BASE_URL https://... or http://...)
//
// Alice creates a room over HTTP(S); Alice and Bob open WebSockets (wss for
// https, ws for http) and join it; Bob sends a message and Alice must
// receive it as a new-message with Bob's id and text, and Bob its ack.
// Over https the server's certificate is checked against CA_PEM (the
// self-signed one the test made), so the edge's TLS is the one being used.
// Each wait is bounded (10 s); exits 0 with one summary line, or 1 saying
// what did not happen.
'use strict';
const fs = require('fs');
const http = require('http');
const https = require('https');
const WebSocket = require('ws');

const [base, caPath] = process.argv.slice(2);
const tls = base.startsWith('https:');
const ca = tls ? fs.readFileSync(caPath) : undefined;
const wait_ms = 10000;
const run = `${process.pid}-${Date.now()}`;

function fail(why) {
    console.log(`chat failed: ${why}`);
    process.exit(1);
}

function post(path, body) {
    return new Promise((resolve, reject) => {
        const data = JSON.stringify(body);
        const request = (tls ? https : http).request(new URL(path, base), {
            method: 'POST', ca, timeout: wait_ms,
            headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) },
        }, (response) => {
            let text = '';
            response.on('data', (chunk) => { text += chunk; });
            response.on('end', () => {
                if (response.statusCode !== 200)
                    return reject(new Error(`POST ${path}: ${response.statusCode} ${text}`));
                resolve(JSON.parse(text));
            });
        });
        request.on('timeout', () => request.destroy(new Error(`POST ${path}: no answer`)));
        request.on('error', reject);
        request.end(data);
    });
}

// A WebSocket whose frames are queued; expect() takes the first frame that
// matches, waiting at most wait_ms.
function connect(user) {
    const url = new URL(`/ws?userId=${user}`, base);
    url.protocol = tls ? 'wss:' : 'ws:';
    const socket = new WebSocket(url, { ca, handshakeTimeout: wait_ms });
    const frames = [];
    const waiters = [];
    socket.on('message', (data) => {
        frames.push(JSON.parse(data.toString()));
        for (const waiter of waiters.splice(0)) waiter();
    });
    const opened = new Promise((resolve, reject) => {
        socket.once('open', resolve);
        socket.once('error', (error) => reject(new Error(`${user}: ${url.protocol}// ${error.message}`)));
        socket.once('unexpected-response', (_, response) =>
            reject(new Error(`${user}: upgrade answered ${response.statusCode}`)));
    });
    function expect(what, match) {
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(
                `${user} got no ${what} within ${wait_ms} ms (got: ${JSON.stringify(frames)})`)), wait_ms);
            const look = () => {
                const i = frames.findIndex(match);
                if (i < 0) return waiters.push(look);
                clearTimeout(timer);
                resolve(frames.splice(i, 1)[0]);
            };
            look();
        });
    }
    return { socket, opened, expect, send: (frame) => socket.send(JSON.stringify(frame)) };
}

(async () => {
    const alice = `alice-${run}`, bob = `bob-${run}`;
    const created = await post('/rooms', { userId: alice, latitude: 48.137, longitude: 11.575 });
    const roomId = created.roomId;
    if (!roomId) fail(`POST /rooms gave no roomId: ${JSON.stringify(created)}`);
    const a = connect(alice), b = connect(bob);
    await Promise.all([a.opened, b.opened]);
    a.send({ action: 'join-room', roomId });
    await a.expect('user-joined of alice', (f) => f.type === 'user-joined' && f.userId === alice);
    b.send({ action: 'join-room', roomId });
    await b.expect('user-joined of bob', (f) => f.type === 'user-joined' && f.userId === bob);
    await a.expect('user-joined of bob', (f) => f.type === 'user-joined' && f.userId === bob);
    const text = `hello through the edge ${run}`;
    b.send({ action: 'send-message', roomId, message: text, messageId: `m-${run}`, requestId: 'r-1' });
    const got = await a.expect('new-message from bob',
                               (f) => f.type === 'new-message' && f.text === text);
    if (got.userId !== bob) fail(`the message came as ${got.userId}, not ${bob}`);
    await b.expect('ack', (f) => f.type === 'ack');
    a.socket.close();
    b.socket.close();
    console.log(`alice received bob's message over ${tls ? 'wss' : 'ws'} in room ${roomId}`);
    process.exit(0);
})().catch((error) => fail(error.message));
