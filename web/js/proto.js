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
