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
