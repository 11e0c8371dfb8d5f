// Built by `make web` from web/ (gim.internal.web.build): edit the sources, not this file.
(() => {
"use strict";

// ---- web/js/proto.js
// proto.js: the protobuf wire format for the few messages the chat page needs
// (proto/connect_ext.proto, proto/push_ext.proto). Field names in lowerCamelCase;
// int64 values as Numbers (ids and seqs stay far below 2^53).

const PT = { UNKNOWN: 0, SIGN_IN: 1, SYNC: 2, HEARTBEAT: 3, MESSAGE: 4, SUBSCRIBE_ROOM: 5 };
const RT = { USER: 1, GROUP: 2, ROOM: 3 };
const ST = { SYSTEM: 1, USER: 2, BUSINESS: 3 };
const MT = { TEXT: 1, COMMAND: 7 };
const PC = { ADD_FRIEND: 100, AGREE_ADD_FRIEND: 101, UPDATE_GROUP: 110, ADD_GROUP_MEMBERS: 120, REMOVE_GROUP_MEMBER: 121 };

// [field number, name, type, repeated]; a type is a scalar or another schema's name.
// A test compares this table with the proto definitions (test/test_openapi.py).
/* schemas:begin */
const SCHEMAS = {
  "Input": [[1, "type", "enum"], [2, "requestId", "int64"], [3, "data", "bytes"]],
  "Output": [[1, "type", "enum"], [2, "requestId", "int64"], [3, "code", "int32"], [4, "message", "string"], [5, "data", "bytes"]],
  "SignInInput": [[1, "deviceId", "int64"], [2, "userId", "int64"], [3, "token", "string"]],
  "SyncInput": [[1, "seq", "int64"]],
  "SyncOutput": [[1, "messages", "Message", true], [2, "hasMore", "bool"]],
  "SubscribeRoomInput": [[1, "roomId", "int64"], [2, "seq", "int64"]],
  "MessageSend": [[1, "message", "Message"]],
  "MessageACK": [[2, "deviceAck", "int64"], [3, "receiveTime", "int64"]],
  "Message": [[1, "sender", "Sender"], [2, "receiverType", "enum"], [3, "receiverId", "int64"], [4, "toUserIds", "int64", true], [5, "messageType", "enum"], [6, "messageContent", "bytes"], [7, "seq", "int64"], [8, "sendTime", "int64"], [9, "status", "enum"]],
  "Sender": [[1, "senderType", "enum"], [2, "senderId", "int64"], [3, "avatarUrl", "string"], [4, "nickname", "string"], [5, "extra", "string"]],
  "Text": [[1, "text", "string"]],
  "Command": [[1, "code", "int32"], [2, "data", "bytes"]],
  "AddFriendPush": [[1, "friendId", "int64"], [2, "nickname", "string"], [3, "avatarUrl", "string"], [4, "description", "string"]],
  "AgreeAddFriendPush": [[1, "friendId", "int64"], [2, "nickname", "string"], [3, "avatarUrl", "string"]],
  "UpdateGroupPush": [[1, "optId", "int64"], [2, "optName", "string"], [3, "name", "string"], [4, "avatarUrl", "string"], [5, "introduction", "string"], [6, "extra", "string"]],
  "AddGroupMembersPush": [[1, "optId", "int64"], [2, "optName", "string"], [3, "members", "GroupMember", true]],
  "RemoveGroupMemberPush": [[1, "optId", "int64"], [2, "optName", "string"], [3, "deletedUserId", "int64"]],
  "GroupMember": [[1, "userId", "int64"], [2, "nickname", "string"], [3, "sex", "int32"], [4, "avatarUrl", "string"], [5, "userExtra", "string"], [6, "memberType", "enum"], [7, "remarks", "string"], [8, "extra", "string"]]
};
/* schemas:end */

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

class ProtoWriter {
  constructor() { this.bytes = []; }
  varint(value) {
    let v = BigInt.asUintN(64, BigInt(value));
    while (v > 127n) { this.bytes.push(Number(v & 127n) | 128); v >>= 7n; }
    this.bytes.push(Number(v));
  }
  tag(number, wireType) { this.varint(number * 8 + wireType); }
  lengthDelimited(number, data) { this.tag(number, 2); this.varint(data.length); for (const b of data) this.bytes.push(b); }
  finish() { return new Uint8Array(this.bytes); }
}

function encode(schemaName, object) {
  const w = new ProtoWriter();
  for (const [number, name, type, repeated] of SCHEMAS[schemaName]) {
    const value = object[name];
    if (value === undefined || value === null) continue;
    for (const item of repeated ? value : [value]) {
      if (type === "string") { if (item !== "") w.lengthDelimited(number, utf8Encoder.encode(item)); }
      else if (type === "bytes") { if (item.length) w.lengthDelimited(number, item); }
      else if (type === "bool") { if (item) { w.tag(number, 0); w.varint(1); } }
      else if (type === "int64" || type === "int32" || type === "enum") { if (item) { w.tag(number, 0); w.varint(item); } }
      else w.lengthDelimited(number, encode(type, item));
    }
  }
  return w.finish();
}

class ProtoReader {
  constructor(bytes) { this.bytes = bytes; this.pos = 0; }
  varint() {
    let result = 0n, shift = 0n;
    for (;;) {
      if (this.pos >= this.bytes.length) throw new Error("truncated varint");
      const b = this.bytes[this.pos++];
      result |= BigInt(b & 127) << shift;
      if (b < 128) return result;
      shift += 7n;
    }
  }
  take(n) {
    if (this.pos + n > this.bytes.length) throw new Error("truncated field");
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}

function scalar(type, raw) {
  if (type === "bool") return raw !== 0n;
  if (type === "int32" || type === "enum") return Number(BigInt.asIntN(32, raw));
  return Number(BigInt.asIntN(64, raw));
}

function defaults(schemaName) {
  const object = {};
  for (const [, name, type, repeated] of SCHEMAS[schemaName]) {
    if (repeated) object[name] = [];
    else if (type === "string") object[name] = "";
    else if (type === "bytes") object[name] = new Uint8Array(0);
    else if (type === "bool") object[name] = false;
    else if (type === "int64" || type === "int32" || type === "enum") object[name] = 0;
    else object[name] = null;
  }
  return object;
}

function decode(schemaName, bytes) {
  const fields = new Map(SCHEMAS[schemaName].map((f) => [f[0], f]));
  const object = defaults(schemaName);
  const r = new ProtoReader(bytes);
  while (r.pos < bytes.length) {
    const key = Number(r.varint());
    const number = key >>> 3, wireType = key & 7;
    const field = fields.get(number);
    let raw;
    if (wireType === 0) raw = r.varint();
    else if (wireType === 2) raw = r.take(Number(r.varint()));
    else if (wireType === 1) raw = r.take(8);
    else if (wireType === 5) raw = r.take(4);
    else throw new Error("unsupported wire type " + wireType);
    if (!field) continue; // unknown field: skipped, as protobuf does
    const [, name, type, repeated] = field;
    let values;
    if (type === "string") values = [utf8Decoder.decode(raw)];
    else if (type === "bytes") values = [raw.slice()];
    else if (SCHEMAS[type]) values = [decode(type, raw)];
    else if (wireType === 2) { // packed repeated scalars
      const packed = new ProtoReader(raw);
      values = [];
      while (packed.pos < raw.length) values.push(scalar(type, packed.varint()));
    } else values = [scalar(type, raw)];
    if (repeated) object[name].push(...values);
    else object[name] = values[values.length - 1];
  }
  return object;
}

function toBase64(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text);
}

function fromBase64(text) {
  const raw = atob(text || "");
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

// ---- web/js/api.js
// api.js: the HTTP/JSON API of the page's own server (docs/http.md).

class ApiError extends Error {
  constructor(code, status, message) {
    super(message);
    this.code = code; // the gim code (docs/protocol.md section 4), 0 if none
    this.status = status; // the gRPC status name
  }
}

class Api {
  constructor() { this.creds = null; } // {userId, deviceId, token} once signed in

  async call(path, body, extraHeaders) {
    const headers = { "content-type": "application/json", ...(extraHeaders || {}) };
    if (this.creds) {
      headers.user_id = String(this.creds.userId);
      headers.device_id = String(this.creds.deviceId);
      headers.token = this.creds.token;
    }
    let response;
    try {
      response = await fetch(path, { method: "POST", headers, body: JSON.stringify(body || {}) });
    } catch (err) {
      throw new ApiError(10002, "UNAVAILABLE", "the server cannot be reached: " + err.message);
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new ApiError(data.code || 0, data.status || String(response.status), data.message || response.statusText);
    return data;
  }

  registerDevice() {
    return this.call("/v1/logic/RegisterDevice", { type: 5, brand: "browser", model: "gim web", systemVersion: (navigator.platform || "").slice(0, 40) });
  }
  signIn(phoneNumber, code, deviceId) { return this.call("/v1/user/SignIn", { phoneNumber, code, deviceId }); }
  getUser(userId) { return this.call("/v1/user/GetUser", { userId }); }
  getFriends() { return this.call("/v1/logic/GetFriends", {}); }
  addFriend(friendId, description) { return this.call("/v1/logic/AddFriend", { friendId, description }); }
  agreeAddFriend(userId) { return this.call("/v1/logic/AgreeAddFriend", { userId }); }
  getGroups() { return this.call("/v1/logic/GetGroups", {}); }
  createGroup(name, memberIds) { return this.call("/v1/logic/CreateGroup", { name, memberIds }); }

  // a text to a user (RT_USER), a group (RT_GROUP) or a room (RT_ROOM, as a room push);
  // request_id makes a retry of the same send safe
  sendText(receiverType, receiverId, text, requestId) {
    const content = toBase64(encode("Text", { text }));
    const sendTime = Date.now();
    if (receiverType === RT.ROOM) {
      return this.call("/v1/logic/PushRoom", { roomId: receiverId, messageType: "MT_TEXT", messageContent: content, sendTime, isPersist: true });
    }
    const receiver = receiverType === RT.GROUP ? "RT_GROUP" : "RT_USER";
    return this.call("/v1/logic/SendMessage",
      { receiverType: receiver, receiverId, messageType: "MT_TEXT", messageContent: content, sendTime, isPersist: true },
      { request_id: String(requestId) });
  }
}

// ---- web/js/connection.js
// connection.js: the long connection to connect's WebSocket endpoint: binary frames, one
// serialized Input / Output per frame (docs/protocol.md section 1). Signs in, syncs from the
// highest seq it has (page by page while hasMore), acks what it got, heartbeats, and
// reconnects with capped exponential back-off and jitter, to the next URL in turn.

const HEARTBEAT_MS = 30000;
const SILENCE_MS = 75000; // nothing heard for this long: the connection is dead, reconnect
const BACKOFF_INITIAL_MS = 300;
const BACKOFF_MAX_MS = 8000;
const SYNC_RETRY_MS = 1000; // a sync answered with an error is asked again after this
// sign-in answers that no retry changes (docs/protocol.md section 1.4): 10000 bad token or
// another user's device, 10014 unknown device; any other code is worth another connection
const FATAL_SIGN_IN = [10000, 10014];

class Connection {
  // handlers: onMessage(message, fromSync), onSeq(lastSeq), onState(state, detail), onRejected(code, message)
  constructor(urls, creds, lastSeq, handlers) {
    this.urls = urls;
    this.creds = creds;
    this.lastSeq = lastSeq; // the highest user seq received
    this.handlers = handlers;
    this.requestId = 0;
    this.attempt = 0;
    this.urlIndex = 0;
    this.ws = null;
    this.closed = false;
    this.room = null; // {roomId, seq}: subscribed again after each reconnect
    this.timer = null;
    this.lastHeard = 0;
  }

  start() { this.open(); }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    clearInterval(this.heartbeat);
    if (this.ws) this.ws.close();
  }

  open() {
    if (this.closed) return;
    const url = this.urls[this.urlIndex % this.urls.length];
    this.handlers.onState("connecting", url);
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (err) { // a malformed URL: try the next one later
      this.ws = { url };
      this.lost(this.ws);
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.lastHeard = Date.now();
      this.send(PT.SIGN_IN, encode("SignInInput", this.creds));
      this.sync(); // pipelined: handled after the sign-in
      if (this.room) this.send(PT.SUBSCRIBE_ROOM, encode("SubscribeRoomInput", this.room));
    };
    ws.onmessage = (event) => this.receive(new Uint8Array(event.data));
    ws.onclose = () => this.lost(ws);
    ws.onerror = () => {}; // onclose follows
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => this.beat(ws), HEARTBEAT_MS);
  }

  lost(ws) {
    if (ws !== this.ws) return;
    clearInterval(this.heartbeat);
    this.ws = null;
    if (this.closed) return;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_INITIAL_MS * 2 ** this.attempt);
    const delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2);
    this.attempt += 1;
    this.urlIndex += 1;
    this.handlers.onState("reconnecting", delay);
    this.timer = setTimeout(() => this.open(), delay);
  }

  beat(ws) {
    if (ws !== this.ws || ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - this.lastHeard > SILENCE_MS) { ws.close(); return; }
    this.send(PT.HEARTBEAT, new Uint8Array(0));
  }

  send(type, data) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return 0;
    this.requestId += 1;
    this.ws.send(encode("Input", { type, requestId: this.requestId, data }));
    return this.requestId;
  }

  sync() { this.send(PT.SYNC, encode("SyncInput", { seq: this.lastSeq })); }

  subscribeRoom(roomId, seq) {
    this.room = roomId ? { roomId, seq: seq || 0 } : null;
    this.send(PT.SUBSCRIBE_ROOM, encode("SubscribeRoomInput", { roomId: roomId || 0, seq: seq || 0 }));
  }

  ack() {
    this.send(PT.MESSAGE, encode("MessageACK", { deviceAck: this.lastSeq, receiveTime: Date.now() }));
  }

  receive(bytes) {
    this.lastHeard = Date.now();
    let out;
    try { out = decode("Output", bytes); } catch (err) { return; }
    if (out.type === PT.SIGN_IN) {
      if (FATAL_SIGN_IN.includes(out.code)) {
        this.close(); // a token or device that will not do: the page signs in again
        this.handlers.onRejected(out.code, out.message);
      } else if (out.code !== 0) {
        if (this.ws) this.ws.close(); // the node cannot sign in now (shutting down, logic away): another try
      } else {
        this.attempt = 0;
        this.handlers.onState("online", this.ws && this.ws.url);
      }
    } else if (out.type === PT.SYNC) {
      if (out.code !== 0) { setTimeout(() => this.sync(), SYNC_RETRY_MS); return; } // "retry"
      const page = decode("SyncOutput", out.data);
      this.take(page.messages, true);
      if (page.hasMore && page.messages.length) this.sync();
    } else if (out.type === PT.MESSAGE && out.requestId === 0) {
      this.take([decode("MessageSend", out.data).message], false);
    }
  }

  take(messages, fromSync) {
    let highest = this.lastSeq;
    for (const message of messages) {
      if (!message) continue;
      if (message.receiverType !== RT.ROOM && message.seq > 0) {
        if (message.seq <= this.lastSeq) continue; // already had it
        highest = Math.max(highest, message.seq);
      } else if (message.receiverType === RT.ROOM && this.room && message.seq > this.room.seq) {
        this.room.seq = message.seq; // a reconnect replays the room after it
      }
      this.handlers.onMessage(message, fromSync);
    }
    if (highest > this.lastSeq) {
      this.lastSeq = highest;
      this.ack();
      this.handlers.onSeq(highest);
    }
  }
}

// ---- web/js/app.js
// app.js: the chat page. Sign in (RegisterDevice + UserExt.SignIn over the HTTP API), then
// one Connection for everything that arrives and the HTTP API for everything sent.

const $ = (id) => document.getElementById(id);
const api = new Api();
const state = {
  session: null, // {userId, deviceId, token, lastSeq}
  me: { userId: 0, nickname: "" },
  conn: null,
  conversations: new Map(), // key ("u:2", "g:5", "r:9") -> {key, type, id, title, messages, unread}
  current: null,
  sentSeqs: new Set(), // the seqs our own sends were stored under: not shown twice
  friends: [],
  requests: new Map(), // applicant id -> AddFriendPush
  groups: [],
};

function store(name, value) {
  if (value === null) sessionStorage.removeItem(name);
  else sessionStorage.setItem(name, JSON.stringify(value));
}
function load(name) {
  try { return JSON.parse(sessionStorage.getItem(name)); } catch (err) { return null; }
}
function notice(text) { $("notice").textContent = text || ""; }
function describe(err) { return err.code ? `${err.message} (${err.code})` : err.message; }

// -- signing in -------------------------------------------------------------------------

async function signIn(phone, code) {
  let deviceId = load("gim.device");
  if (!deviceId) deviceId = (await api.registerDevice()).deviceId;
  let answer;
  try {
    answer = await api.signIn(phone, code, deviceId);
  } catch (err) {
    if (err.code !== 10017) throw err; // the device is another user's: take a new one
    deviceId = (await api.registerDevice()).deviceId;
    answer = await api.signIn(phone, code, deviceId);
  }
  store("gim.device", deviceId);
  return { userId: Number(answer.userId), deviceId: Number(deviceId), token: answer.token, lastSeq: 0 };
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("sign-in").disabled = true;
  $("sign-in-error").textContent = "";
  try {
    state.session = await signIn($("phone").value.trim(), $("code").value.trim());
    store("gim.session", state.session);
    await startChat();
  } catch (err) {
    $("sign-in-error").textContent = describe(err);
  } finally {
    $("sign-in").disabled = false;
  }
});

$("sign-out").addEventListener("click", () => signOut(""));

function signOut(reason) {
  if (state.conn) state.conn.close();
  state.conn = null;
  store("gim.session", null);
  state.session = null;
  api.creds = null;
  state.conversations.clear();
  state.current = null;
  state.sentSeqs.clear();
  state.requests.clear();
  state.friends = [];
  state.groups = [];
  $("messages").replaceChildren();
  $("room-title").textContent = "Pick a conversation";
  $("text").disabled = true;
  $("send").disabled = true;
  $("chat-view").hidden = true;
  $("sign-in-view").hidden = false;
  $("sign-in-error").textContent = reason;
}

async function startChat() {
  const s = state.session;
  api.creds = { userId: s.userId, deviceId: s.deviceId, token: s.token };
  let user;
  try {
    user = (await api.getUser(s.userId)).user;
  } catch (err) {
    if (err.code === 10000) { signOut("signed out: " + err.message); return; }
    throw err;
  }
  state.me = { userId: s.userId, nickname: user.nickname };
  $("me").textContent = `${user.nickname || "user"} (${s.userId})`;
  $("sign-in-view").hidden = true;
  $("chat-view").hidden = false;
  renderConversations();
  refreshFriends();
  refreshGroups();
  const config = await fetch("/config.json").then((r) => r.json());
  state.conn = new Connection(config.wsUrls, { deviceId: s.deviceId, userId: s.userId, token: s.token }, s.lastSeq, {
    onMessage: received,
    onSeq: (seq) => { s.lastSeq = seq; store("gim.session", s); },
    onState: showState,
    onRejected: (code, message) => signOut(`signed out: ${message} (${code})`),
  });
  state.conn.start();
}

function showState(name, detail) {
  const el = $("status");
  el.dataset.state = name;
  el.textContent = name === "reconnecting" ? `reconnecting in ${(detail / 1000).toFixed(1)} s` : name;
}

// -- conversations ----------------------------------------------------------------------

function conversation(type, id, title) {
  const key = `${type === RT.GROUP ? "g" : type === RT.ROOM ? "r" : "u"}:${id}`;
  let conv = state.conversations.get(key);
  if (!conv) {
    conv = { key, type, id, title: title || defaultTitle(type, id), messages: [], unread: 0 };
    state.conversations.set(key, conv);
    if (type === RT.USER && !title) nameUser(conv);
  } else if (title) conv.title = title;
  return conv;
}

function defaultTitle(type, id) {
  if (type === RT.GROUP) return (state.groups.find((g) => Number(g.groupId) === id) || {}).name || `group ${id}`;
  return type === RT.ROOM ? `room ${id}` : `user ${id}`;
}

async function nameUser(conv) {
  try {
    const user = (await api.getUser(conv.id)).user;
    if (user.nickname) { conv.title = `${user.nickname} (${conv.id})`; renderConversations(); renderTitle(); }
  } catch (err) { /* unknown user: the id stays the title */ }
}

function open(conv) {
  state.current = conv;
  conv.unread = 0;
  if (conv.type === RT.ROOM) state.conn.subscribeRoom(conv.id, 0);
  $("text").disabled = false;
  $("send").disabled = false;
  renderConversations();
  renderTitle();
  renderMessages();
  $("text").focus();
}

function renderTitle() { if (state.current) $("room-title").textContent = state.current.title; }

function renderConversations() {
  const list = $("conversations");
  list.replaceChildren();
  for (const conv of state.conversations.values()) {
    const li = document.createElement("li");
    li.dataset.key = conv.key;
    li.classList.toggle("active", conv === state.current);
    li.append(conv.title);
    if (conv.unread) {
      const badge = document.createElement("span");
      badge.className = "unread";
      badge.textContent = conv.unread;
      li.append(badge);
    }
    li.addEventListener("click", () => open(conv));
    list.append(li);
  }
}

function messageItem(m) {
  const li = document.createElement("li");
  li.className = "msg" + (m.mine ? " mine" : "") + (m.system ? " system" : "");
  if (m.seq) li.dataset.seq = m.seq;
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = `${m.mine ? "me" : m.from} · ${new Date(m.time).toLocaleTimeString()}${m.status ? " · " + m.status : ""}`;
  const body = document.createElement("div");
  body.className = "body";
  body.textContent = m.text;
  li.append(meta, body);
  m.element = li;
  return li;
}

function renderMessages() {
  const list = $("messages");
  list.replaceChildren(...(state.current ? state.current.messages.map(messageItem) : []));
  list.scrollTop = list.scrollHeight;
}

function add(conv, m) {
  conv.messages.push(m);
  if (conv === state.current) {
    $("messages").append(messageItem(m));
    $("messages").scrollTop = $("messages").scrollHeight;
  } else conv.unread += 1;
  renderConversations();
}

// -- what arrives ---------------------------------------------------------------------

function received(message) {
  const sender = message.sender || { senderType: 0, senderId: 0, nickname: "" };
  if (sender.senderType === ST.SYSTEM && message.messageType === MT.COMMAND) return command(message);
  const mine = sender.senderType === ST.USER && sender.senderId === state.me.userId;
  if (mine && message.receiverType !== RT.ROOM && state.sentSeqs.has(message.seq)) return; // shown when sent
  let conv;
  if (message.receiverType === RT.GROUP) conv = conversation(RT.GROUP, message.receiverId);
  else if (message.receiverType === RT.ROOM) conv = conversation(RT.ROOM, message.receiverId);
  else {
    const other = mine ? message.receiverId : sender.senderId;
    const name = !mine && sender.senderType === ST.USER && sender.nickname ? `${sender.nickname} (${other})` : "";
    conv = conversation(RT.USER, other, name || (sender.senderType === ST.BUSINESS ? "business" : ""));
  }
  const text = message.messageType === MT.TEXT ? decode("Text", message.messageContent).text : `[message type ${message.messageType}]`;
  const from = sender.senderType === ST.BUSINESS ? "business" : `${sender.nickname || "user"} (${sender.senderId})`;
  add(conv, { mine, from, text, time: message.sendTime || Date.now(), seq: message.seq });
}

function command(message) {
  const cmd = decode("Command", message.messageContent);
  let text = "";
  if (cmd.code === PC.ADD_FRIEND) {
    const push = decode("AddFriendPush", cmd.data);
    if (!state.friends.some((f) => Number(f.userId) === push.friendId)) state.requests.set(push.friendId, push);
    renderFriends();
    return;
  }
  if (cmd.code === PC.AGREE_ADD_FRIEND) {
    const push = decode("AgreeAddFriendPush", cmd.data);
    notice(`${push.nickname || "user " + push.friendId} accepted your friend request`);
    refreshFriends();
    return;
  }
  if (cmd.code === PC.UPDATE_GROUP) text = `${decode("UpdateGroupPush", cmd.data).optName} updated the group`;
  else if (cmd.code === PC.ADD_GROUP_MEMBERS) {
    const push = decode("AddGroupMembersPush", cmd.data);
    text = `${push.optName || "user " + push.optId} added ${push.members.map((m) => m.nickname || m.userId).join(", ")}`;
  } else if (cmd.code === PC.REMOVE_GROUP_MEMBER) {
    const push = decode("RemoveGroupMemberPush", cmd.data);
    text = `${push.optName || "user " + push.optId} removed user ${push.deletedUserId}`;
  } else return;
  refreshGroups();
  if (message.receiverType === RT.GROUP) {
    add(conversation(RT.GROUP, message.receiverId), { system: true, text, time: message.sendTime || Date.now(), seq: message.seq });
  }
}

// -- what is sent ---------------------------------------------------------------------

$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const conv = state.current;
  const text = $("text").value;
  if (!conv || !text.trim()) return;
  $("text").value = "";
  notice("");
  if (conv.type === RT.ROOM) { // the room's broadcast shows it, to the sender too
    try { await api.sendText(RT.ROOM, conv.id, text); } catch (err) { notice("not sent: " + describe(err)); }
    return;
  }
  const m = { mine: true, text, time: Date.now(), status: "sending" };
  add(conv, m);
  const requestId = Math.floor(Math.random() * Number.MAX_SAFE_INTEGER) + 1;
  try {
    const answer = await api.sendText(conv.type, conv.id, text, requestId);
    m.seq = Number(answer.seq);
    state.sentSeqs.add(m.seq);
    m.status = "";
  } catch (err) {
    m.status = "not sent: " + describe(err);
  }
  if (m.element && conv === state.current) m.element.replaceWith(messageItem(m));
});

$("new-chat").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = Number($("to").value);
  if (id > 0) { $("to").value = ""; open(conversation(RT.USER, id)); }
});

$("join-room").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = Number($("room-id").value);
  if (id > 0) { $("room-id").value = ""; open(conversation(RT.ROOM, id)); }
});

$("create-group").addEventListener("submit", async (event) => {
  event.preventDefault();
  const members = $("group-members").value.split(/[\s,]+/).filter(Boolean).map(Number);
  try {
    const answer = await api.createGroup($("group-name").value.trim(), members);
    $("group-name").value = "";
    $("group-members").value = "";
    await refreshGroups();
    open(conversation(RT.GROUP, Number(answer.groupId)));
  } catch (err) { notice("group not created: " + describe(err)); }
});

$("add-friend").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await api.addFriend(Number($("friend-id").value), `hi from ${state.me.nickname || state.me.userId}`);
    notice(`friend request sent to user ${$("friend-id").value}`);
    $("friend-id").value = "";
  } catch (err) { notice("friend request not sent: " + describe(err)); }
});

// -- friends and groups ---------------------------------------------------------------

async function refreshFriends() {
  try { state.friends = (await api.getFriends()).friends; } catch (err) { return notice(describe(err)); }
  for (const f of state.friends) state.requests.delete(Number(f.userId));
  renderFriends();
}

function renderFriends() {
  const requests = $("friend-requests");
  requests.replaceChildren();
  for (const [id, push] of state.requests) {
    const li = document.createElement("li");
    li.dataset.request = id;
    li.append(`${push.nickname || "user"} (${id}) wants to be friends`);
    const accept = document.createElement("button");
    accept.textContent = "Accept";
    accept.addEventListener("click", async () => {
      try { await api.agreeAddFriend(id); } catch (err) { if (err.code !== 10015) return notice(describe(err)); }
      state.requests.delete(id);
      refreshFriends();
    });
    li.append(accept);
    requests.append(li);
  }
  const list = $("friends");
  list.replaceChildren();
  for (const f of state.friends) {
    const li = document.createElement("li");
    const id = Number(f.userId);
    li.dataset.friend = id;
    li.textContent = `${f.remarks || f.nickname || "user"} (${id})`;
    li.addEventListener("click", () => open(conversation(RT.USER, id, `${f.nickname || "user"} (${id})`)));
    list.append(li);
  }
}

async function refreshGroups() {
  try { state.groups = (await api.getGroups()).groups; } catch (err) { return notice(describe(err)); }
  const list = $("groups");
  list.replaceChildren();
  for (const g of state.groups) {
    const id = Number(g.groupId);
    const li = document.createElement("li");
    li.dataset.group = id;
    li.textContent = `${g.name} (${g.userMum})`;
    li.addEventListener("click", () => open(conversation(RT.GROUP, id, g.name)));
    list.append(li);
    const conv = state.conversations.get(`g:${id}`);
    if (conv) conv.title = g.name;
  }
  renderConversations();
}

// -- start: a session of this tab signs in again by itself ------------------------------

state.session = load("gim.session");
if (state.session) startChat().catch((err) => signOut(describe(err)));
})();
