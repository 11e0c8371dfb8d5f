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
