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
