// test_ws_conformance - RFC 6455 as the gateway speaks it, checked by an
// independent implementation (npm's ws), for tests/test_ws_conformance.c:
//
//   node test_ws_conformance.js PORT        (a running gateway on 127.0.0.1)
//
// A text message in fragments, a ping and a pong between its fragments and
// UTF-8 cut across them; every close status a peer may send is echoed, and
// each it may not (999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 0) and a
// close of one byte close 1002; invalid UTF-8 in text or a close reason
// closes 1007; a message over 64 KiB in fragments closes 1009; a frame
// written in the same packet as the upgrade request is answered. Frames the
// ws client would refuse to send are made with ws's own Sender.frame and
// written to its socket; the server's frames are read by ws's Receiver.
// Prints one "ok NAME" or "FAIL NAME: why" a check; exits 1 if any failed.
// Each wait is bounded (10 s).
'use strict';
const net = require('net');
const crypto = require('crypto');
const WebSocket = require('ws');
const Sender = WebSocket.Sender;
const Receiver = WebSocket.Receiver;

const port = Number(process.argv[2]);
const wait_ms = 10000;
let failed = 0;
let user = 0;

function report(name, ok, why) {
    if (ok)
        console.log(`ok ${name}`);
    else {
        failed++;
        console.log(`FAIL ${name}: ${why}`);
    }
}

function open() {
    return new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?userId=conformance-${process.pid}-${user++}`);
        const timer = setTimeout(() => reject(new Error('no open')), wait_ms);
        ws.once('open', () => { clearTimeout(timer); resolve(ws); });
        ws.once('error', (error) => { clearTimeout(timer); reject(error); });
    });
}

// The next text message, or null after wait_ms.
function nextText(ws) {
    return new Promise((resolve) => {
        const timer = setTimeout(() => { ws.off('message', on); resolve(null); }, wait_ms);
        function on(data, binary) {
            if (binary)
                return;
            clearTimeout(timer);
            ws.off('message', on);
            resolve(data.toString());
        }
        ws.on('message', on);
    });
}

// The server's close: { code, reason }, or null after wait_ms.
function closed(ws) {
    return new Promise((resolve) => {
        if (ws.readyState === WebSocket.CLOSED)
            return resolve({ code: ws._closeCode, reason: '' });
        const timer = setTimeout(() => resolve(null), wait_ms);
        ws.once('close', (code, reason) => { clearTimeout(timer); resolve({ code, reason: reason.toString() }); });
    });
}

// A frame as a client sends it (masked), anything in it, onto ws's socket.
function raw(ws, opcode, payload, fin = true) {
    const frames = Sender.frame(Buffer.from(payload), {
        fin, opcode, mask: true, readOnly: false, rsv1: false });
    ws._socket.write(Buffer.concat(frames));
}

function closePayload(code, reason = '') {
    const buffer = Buffer.alloc(2 + Buffer.byteLength(reason));
    buffer.writeUInt16BE(code, 0);
    buffer.write(reason, 2);
    return buffer;
}

async function fragments() {
    const ws = await open();
    const text = Buffer.from('{"action":"ping","requestId":"caf\u00e9-fragments"}');
    const cut = text.indexOf(0xc3) + 1;         // inside the two bytes of the é
    const pong = new Promise((resolve) => {
        const timer = setTimeout(() => resolve(null), wait_ms);
        ws.once('pong', (data) => { clearTimeout(timer); resolve(data.toString()); });
    });
    const reply = nextText(ws);
    ws.send(text.subarray(0, 5), { binary: false, fin: false });
    ws.ping('between');
    ws.send(text.subarray(5, cut), { binary: false, fin: false });
    raw(ws, 0xA, 'unasked pong');               // a pong between fragments: ignored
    ws.send(text.subarray(cut), { binary: false, fin: true });
    const got = await reply;
    report('a fragmented text message is one message', got && got.includes('"pong"')
           && got.includes('caf\u00e9-fragments'), `got ${got}`);
    report('a ping between fragments is answered with its payload', (await pong) === 'between',
           'no pong');
    ws.close(1000);
    const end = await closed(ws);
    report('a close 1000 is echoed', end && end.code === 1000, JSON.stringify(end));
}

async function closeWith(name, payload, want) {
    const ws = await open();
    ws.on('error', () => {});                   // ws may call what the server sends an error
    raw(ws, 0x8, payload);
    const end = await closed(ws);
    report(name, end && end.code === want, `want ${want}, got ${JSON.stringify(end)}`);
}

async function closes() {
    for (const code of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999])
        await closeWith(`close ${code} is echoed`, closePayload(code, 'bye'), code);
    for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
        await closeWith(`close ${code} is a protocol error (1002)`, closePayload(code), 1002);
    await closeWith('a close of one byte is a protocol error (1002)', Buffer.from([0x03]), 1002);
    await closeWith('a close reason that is not UTF-8 closes 1007',
                    Buffer.concat([closePayload(1000), Buffer.from([0xff, 0xfe])]), 1007);
    await closeWith('a close with no status is answered 1000', Buffer.alloc(0), 1000);
}

async function utf8() {
    let ws = await open();
    ws.on('error', () => {});
    ws.send(Buffer.from([0x7b, 0xc0, 0xaf, 0x7d]), { binary: false });    // an overlong '/'
    let end = await closed(ws);
    report('text that is not UTF-8 closes 1007', end && end.code === 1007, JSON.stringify(end));

    ws = await open();
    ws.on('error', () => {});
    ws.send(Buffer.from('{"a":"'), { binary: false, fin: false });
    ws.send(Buffer.from([0xed, 0xa0, 0x80]), { binary: false, fin: false });    // a surrogate
    ws.send(Buffer.from('"}'), { binary: false, fin: true });
    end = await closed(ws);
    report('a surrogate in a fragment closes 1007', end && end.code === 1007, JSON.stringify(end));

    ws = await open();
    ws.on('error', () => {});
    ws.send(Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xe2, 0x82])]), { binary: false });
    end = await closed(ws);
    report('text ending inside a character closes 1007', end && end.code === 1007,
           JSON.stringify(end));
}

async function tooBig() {
    const ws = await open();
    ws.on('error', () => {});
    const piece = Buffer.alloc(20 * 1024, 0x20);
    for (let i = 0; i < 4; i++)
        ws.send(piece, { binary: false, fin: false });
    ws.send(piece, { binary: false, fin: true });
    const end = await closed(ws);
    report('a message over 64 KiB in fragments closes 1009', end && end.code === 1009,
           JSON.stringify(end));
}

async function protocol() {
    let ws = await open();
    ws.on('error', () => {});
    raw(ws, 0x0, 'no message');
    let end = await closed(ws);
    report('a continuation of no message closes 1002', end && end.code === 1002, JSON.stringify(end));

    ws = await open();
    ws.on('error', () => {});
    raw(ws, 0x1, '{"a":', false);
    raw(ws, 0x1, '1}', true);
    end = await closed(ws);
    report('a new message inside a fragmented one closes 1002', end && end.code === 1002,
           JSON.stringify(end));
}

// The upgrade request and a frame in one write: the frame is answered.
function withUpgrade() {
    return new Promise((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        const key = crypto.randomBytes(16).toString('base64');
        const timer = setTimeout(() => { socket.destroy(); resolve('no answer'); }, wait_ms);
        socket.on('connect', () => {
            const request = `GET /ws?userId=conformance-${process.pid}-early HTTP/1.1\r\n`
                + `Host: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
                + `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
            const frame = Buffer.concat(Sender.frame(
                Buffer.from('{"action":"ping","requestId":"early"}'),
                { fin: true, opcode: 0x1, mask: true, readOnly: false, rsv1: false }));
            socket.write(Buffer.concat([Buffer.from(request), frame]));
        });
        let head = Buffer.alloc(0);
        let receiver = null;
        socket.on('data', (data) => {
            if (receiver)
                return receiver.write(data);
            head = Buffer.concat([head, data]);
            const end = head.indexOf('\r\n\r\n');
            if (end < 0)
                return;
            if (!head.toString('latin1', 0, 12).includes(' 101')) {
                clearTimeout(timer);
                socket.destroy();
                return resolve(`no upgrade: ${head.toString('latin1', 0, end)}`);
            }
            receiver = new Receiver({ isServer: false });
            receiver.on('message', (message) => {
                clearTimeout(timer);
                socket.destroy();
                resolve(message.toString());
            });
            receiver.on('error', (error) => { clearTimeout(timer); socket.destroy(); resolve(`${error}`); });
            receiver.write(head.subarray(end + 4));
        });
        socket.on('error', (error) => { clearTimeout(timer); resolve(`${error}`); });
    });
}

async function main() {
    await fragments();
    await closes();
    await utf8();
    await tooBig();
    await protocol();
    const got = await withUpgrade();
    report('a frame in the same packet as the upgrade request is answered',
           got.includes('"pong"') && got.includes('early'), `got ${got}`);
    console.log(`${failed ? 'FAILED' : 'passed'}: ${failed} failed`);
    process.exit(failed ? 1 : 0);
}

main().catch((error) => { console.log(`FAIL the run: ${error.stack || error}`); process.exit(1); });
