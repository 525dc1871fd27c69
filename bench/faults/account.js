// account.js - what a fault run comes to: every member reads its room's whole
// history over HTTP, which is then held against what the members sent, were
// acknowledged and were delivered.
//
// The figures (one scenario):
//   lost        acknowledged messages missing from the room's history (must be 0)
//   history_dup extra copies in a history: one messageId or seq stored twice
//   never       stored messages a member never received (in its room's history,
//               stored after it joined, delivered to it neither as new-message
//               nor in a message-history) (must be 0)
//   dup_deliv   deliveries of a seq a member already had
//   out_of_order deliveries below a seq the member already had (must be 0)
//   first_ack   from the fault to the first ack in each room the fault stalled,
//               after the stall showed; the worst room (null: some never had one)
//   all_acked   from the fault to the last ack of a late message, when every
//               send is acknowledged promptly again (null: some never were)
//   max_wait    the longest any message waited for its ack
// A message is late when its ack came over lateMs after it was made (or never).
'use strict';
const { request } = require('./stream');

const PAGE = 200;

// The whole history of a room, oldest first, paging back by seq; null when
// a page could not be read (after a few tries).
async function readHistory(httpUrl, roomId, pagesMax, tries = 6) {
  const pages = [];
  let before = 0;
  for (let page = 0; page < pagesMax; page++) {
    const query = `limit=${PAGE}` + (before ? `&before=${before}` : '');
    let answer;
    for (let attempt = 0; attempt < tries; attempt++) {
      answer = await request(httpUrl, 'GET', `/rooms/${roomId}/messages?${query}`);
      if (answer.status === 200 && Array.isArray(answer.body))
        break;
      if (attempt + 1 < tries)
        await new Promise(resolve => setTimeout(resolve, 500));
    }
    if (answer.status !== 200 || !Array.isArray(answer.body))
      return { messages: null, error: `GET messages answered ${answer.status}` };
    const messages = answer.body;
    if (messages.length === 0)
      break;
    pages.unshift(messages);
    const low = Math.min(...messages.map(m => m.seq));
    if (!(low > 1))
      break;
    before = low;
  }
  return { messages: pages.flat(), error: null };
}

// Run `work` over items with at most `width` at once.
async function eachLimited(items, width, work) {
  let next = 0;
  const runners = Array.from({ length: Math.min(width, items.length) }, async () => {
    while (next < items.length)
      await work(items[next++]);
  });
  await Promise.all(runners);
}

// The client's id of a stored message: `messageId`, or `id` once the gateway
// makes the two one (issue 10).
const clientId = m => m.messageId || m.id;

async function account(stream, fault, options) {
  const { lateMs } = options;
  const members = stream.members;
  // Every member reads its room's history, as a client recovering would.
  const made = members.reduce((sum, member) => sum + member.made, 0);
  const pagesMax = Math.ceil(made / PAGE) + 10;
  const histories = new Map();        // member -> {messages, error}
  let failed = false;                 // once one read failed for good, one try each
  await eachLimited(members, 8, async member => {
    const history = await readHistory(stream.httpUrl, member.room.id, pagesMax, failed ? 1 : 6);
    failed = failed || history.messages === null;
    histories.set(member, history);
  });
  const unreadable = [...histories.values()].filter(h => h.messages === null);

  const figures = {
    sent: made, acked: 0, unacked: 0, resends: 0, extra_acks: 0, reconnects: 0,
    errors: {}, history_messages: 0, history_unreadable: unreadable.length,
    history_error: unreadable.length ? unreadable[0].error : null,
    lost: null, history_dup: null, never: null, stored_unacked: null,
    dup_deliv: 0, out_of_order: 0, delivered: 0,
    affected_rooms: 0, first_ack_ms: null, all_acked_ms: null, max_wait_ms: 0, late: 0,
  };
  for (const member of members) {
    figures.resends += member.resends;
    figures.extra_acks += member.extraAcks;
    figures.reconnects += member.reconnects;
    figures.unacked += member.pending.size;
    figures.acked += member.messages.length - member.pending.size;
    figures.dup_deliv += member.duplicates;
    figures.out_of_order += member.outOfOrder;
    for (const times of member.seen.values())
      figures.delivered += times;
    for (const [key, count] of Object.entries(member.errors))
      figures.errors[key] = (figures.errors[key] || 0) + count;
  }

  // Against the histories, when every one was read.
  if (unreadable.length === 0) {
    figures.lost = 0;
    figures.history_dup = 0;
    figures.never = 0;
    figures.stored_unacked = 0;
    for (const room of stream.rooms) {
      const first = histories.get(room.members[0]).messages;
      figures.history_messages += first.length;
      const ids = new Set(), seqs = new Set();
      for (const m of first) {
        if (ids.has(clientId(m)) || seqs.has(m.seq))
          figures.history_dup++;
        ids.add(clientId(m));
        seqs.add(m.seq);
      }
      for (const member of room.members) {
        const history = histories.get(member).messages;
        const stored = new Set(history.map(clientId));
        for (const message of member.messages) {
          if (message.ackAt !== null && !stored.has(message.messageId))
            figures.lost++;
          if (message.ackAt === null && stored.has(message.messageId))
            figures.stored_unacked++;
        }
        const baseline = member.baseline || 0;
        for (const m of history)
          if (m.seq > baseline && !member.seen.has(m.seq))
            figures.never++;
      }
    }
  }

  // Acknowledgement times, relative to the fault.
  const end = options.endAt;
  const rooms = new Map();              // room -> {stalledAt, lastLateAck, never}
  for (const member of members) {
    for (const message of member.messages) {
      const wait = (message.ackAt === null ? end : message.ackAt) - message.made;
      figures.max_wait_ms = Math.max(figures.max_wait_ms, wait);
      if (wait <= lateMs || (message.ackAt !== null && message.ackAt < fault.at))
        continue;
      figures.late++;
      let room = rooms.get(member.room);
      if (!room)
        rooms.set(member.room, room = { stalledAt: Infinity, lastLateAck: 0, never: false });
      room.stalledAt = Math.min(room.stalledAt, message.made);
      if (message.ackAt === null)
        room.never = true;
      else
        room.lastLateAck = Math.max(room.lastLateAck, message.ackAt);
    }
  }
  figures.affected_rooms = rooms.size;
  let firstWorst = 0, allWorst = 0, firstNever = false, allNever = false;
  for (const [room, stall] of rooms) {
    // From when the stall showed (its first late message overdue), so an ack
    // already on its way when the fault struck does not count as recovery.
    const from = Math.max(stall.stalledAt + lateMs, fault.at);
    let first = Infinity;
    for (const member of room.members)
      for (const message of member.messages)
        if (message.ackAt !== null && message.ackAt >= from && message.ackAt < first)
          first = message.ackAt;
    if (first === Infinity)
      firstNever = true;
    else
      firstWorst = Math.max(firstWorst, first - fault.at);
    if (stall.never)
      allNever = true;
    else
      allWorst = Math.max(allWorst, stall.lastLateAck - fault.at);
  }
  figures.first_ack_ms = firstNever ? null : Math.round(firstWorst);
  figures.all_acked_ms = allNever ? null : Math.round(allWorst);
  figures.max_wait_ms = Math.round(figures.max_wait_ms);
  return figures;
}

module.exports = { account, readHistory };
