// The chat page. It speaks only the public API (README: "HTTP API", "Websockets"):
// - a token from /api/auth/register/ or /api/auth/token/, kept in localStorage, sent as `Authorization: Token`
//   (requests omit cookies, so a session of the browsable API or the admin plays no part, and needs no CSRF);
// - both sockets ask for batches (?batch=1: frames that were ready together come as one {"type": "batch"});
// - the lobby socket keeps the chat list live; on every (re)connect the list is read again (the lobby has no replay);
// - an open chat shows its latest page of history, older pages on demand, then its socket with
//   ?after_version=<the chat's version when it was read, then the last version applied>: every change of the chat
//   (message created, edited, deleted; member joined, left) carries the chat's version, and a frame whose version
//   is not above the last one applied is dropped. Every message is one <li data-seq>, updated in place by its
//   frames (a deleted one stays, as a tombstone); the author edits a message inline, the author or the chat's
//   owner deletes it;
// - the chat socket also says who is online in the chat (presence, presence.joined, presence.left) and who is
//   typing (typing frames; the composer sends {"type": "typing"} at most every TYPING_EVERY ms);
// - membership: a chat's `membership` (null, or {role, last_read_seq, unread}) gives the list its unread badge;
//   the open chat's read position is posted as messages are shown (at most once a second per chat), and the
//   lobby's member.joined / member.left / chat.read frames keep the list in step with the user's other devices.

const $ = (id) => document.getElementById(id);
const PAGE = 50;
const READ_EVERY = 1000; // ms: the open chat's read position is posted at most this often
// ms between two typing notices sent: the server passes one per user per chat every 2 s and drops the rest
// silently, so a notice sent a hair early would be lost and leave a gap in the others' "… is typing".
const TYPING_EVERY = 2100;
const TYPING_SHOWN = 3000; // ms "… is typing" stays without a new notice
const ONLINE_SHOWN = 6; // names of online users in the chat's header; the rest are counted
const CHANGES = new Set(["message.created", "message.edited", "message.deleted", "member.joined", "member.left"]);
const TOKEN_KEY = "chat.token";
const USER_KEY = "chat.username";

const state = {
  token: localStorage.getItem(TOKEN_KEY),
  username: localStorage.getItem(USER_KEY),
  deleting: null, // the chat this page is deleting: its chat.deleted frame may come before the answer
  chats: new Map(), // id -> chat, as the API returns it
  gone: new Set(), // chats deleted or left while this page is open: a list read in flight must not bring them back
  liveAdded: new Map(), // chats the lobby announced since the list read in flight started
  listGeneration: 0,
  chatsNext: null,
  lobby: null,
  // {chat, version, lastSeq, messages: seq -> message, items: seq -> <li>, olderBefore, stream, loadingOlder,
  //  readSeq, readAt, readTimer, reading, online: Set, typing: username -> timer, typingSentAt, editing}
  open: null,
  opening: null,
  pendingPost: null, // {chatId, text, key}: a failed post is retried with the same Idempotency-Key
  pendingEdit: null, // {chatId, seq, text, key}: likewise a failed edit
  sending: false,
};

class ApiError extends Error {
  constructor(code, message, status = 0, fields = null) {
    super(message);
    Object.assign(this, { code, status, fields });
  }
}

// ---- HTTP ---------------------------------------------------------------------------------------------

async function api(method, path, body, headers = {}) {
  headers = { Accept: "application/json", ...headers };
  if (state.token) headers.Authorization = `Token ${state.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, credentials: "omit", body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError("network_error", "The server cannot be reached. Check your connection and try again.");
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.ok) return data;
  const error = data?.error ?? { code: `http_${response.status}`, message: `The server answered ${response.status}.` };
  if (response.status === 401 && state.token) signOut("Your session has ended. Please log in again.");
  throw new ApiError(error.code, error.message, response.status, error.fields);
}

// `next` links carry the cursor in their query; use it on this page's own origin.
const beforeSeqOf = (next) => (next ? new URL(next, location.href).searchParams.get("before_seq") : null);
const relative = (next) => { const url = new URL(next, location.href); return url.pathname + url.search; };

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---- Messages to the user -------------------------------------------------------------------------------

const FRIENDLY = { invalid_credentials: "Wrong username or password." };

function showError(error) {
  let text = FRIENDLY[error.code] ?? error.message;
  if (error.fields && Object.keys(error.fields).length > 1) {
    text = Object.entries(error.fields).map(([field, problems]) => `${field}: ${[].concat(problems).join(" ")}`).join(" ");
  }
  $("error-text").textContent = text;
  $("error-code").textContent = error.code ? `(${error.code})` : "";
  $("error").dataset.code = error.code ?? "";
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").dataset.code = "";
}

function notice(text) {
  $("notice").textContent = text ?? "";
  $("notice").hidden = !text;
}

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

// ---- Websockets -------------------------------------------------------------------------------------------

function wsUrl(path, params = {}) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.search = new URLSearchParams({ token: state.token, batch: 1, ...params });
  return url.href;
}

// A socket that reconnects with backoff. `url()` is asked on every attempt (so after_version is current);
// `onClose(code)` returns false to stop for good.
class Stream {
  constructor({ url, onOpen, onFrame, onClose }) {
    Object.assign(this, { url, onOpen, onFrame, onClose, attempt: 0, stopped: false, timer: null });
    this.connect();
  }

  connect() {
    const ws = (this.ws = new WebSocket(this.url()));
    ws.onopen = () => { this.attempt = 0; this.onOpen?.(); };
    ws.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      // ?batch=1: frames that were ready together come as one {"type": "batch", "frames": [...]}
      for (const each of frame.type === "batch" ? frame.frames : [frame]) {
        if (!this.stopped) this.onFrame(each);
      }
    };
    ws.onclose = (event) => {
      if (this.stopped || ws !== this.ws) return;
      if (this.onClose(event.code) === false) { this.stopped = true; return; }
      const base = event.code === 4429 ? 5000 : 500; // 4429: too many sockets or frames; wait longer
      const delay = Math.min(30000, base * 2 ** this.attempt++) * (0.75 + Math.random() / 2);
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  // Sends a frame if the socket is open; false if it is not (nothing is queued).
  send(frame) {
    if (this.stopped || this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.ws?.close(1000);
  }

  // For a page put in the back/forward cache: closed meanwhile, connected again (from where it was) when shown.
  pause() {
    if (this.stopped) return;
    this.paused = true;
    this.stop();
  }

  resume() {
    if (!this.paused) return;
    Object.assign(this, { paused: false, stopped: false, attempt: 0 });
    this.connect();
  }
}

// 4401: no user, or the token was revoked (logout elsewhere): back to the login form.
function authClose(code) {
  if (code !== 4401) return true;
  signOut("Your session has ended. Please log in again.");
  return false;
}

// ---- Account --------------------------------------------------------------------------------------------

function signIn(token, username) {
  localStorage.setItem(TOKEN_KEY, token);
  localStorage.setItem(USER_KEY, username);
  Object.assign(state, { token, username });
  showApp();
}

function signOut(message) {
  if (!state.token) return;
  state.lobby?.stop();
  closeChat();
  localStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(USER_KEY);
  Object.assign(state, { token: null, username: null, lobby: null, chatsNext: null, pendingPost: null });
  state.chats.clear();
  renderChats();
  document.body.dataset.lobby = "closed";
  $("account").hidden = true;
  $("app").hidden = true;
  $("auth").hidden = false;
  $("password").value = "";
  notice(message);
}

async function authenticate(kind) {
  const username = $("username").value.trim();
  const password = $("password").value;
  if (!username || !password) {
    showError({ code: "invalid_request", message: "Enter a username and a password." });
    return;
  }
  clearError();
  try {
    const path = kind === "signup" ? "/api/auth/register/" : "/api/auth/token/";
    const data = await api("POST", path, { username, password });
    notice("");
    signIn(data.token, data.username ?? username);
  } catch (error) {
    showError(error);
  }
}

async function logout() {
  state.lobby?.stop(); // first: the server closes this token's sockets with 4401, which is no news here
  state.open?.stream?.stop();
  try {
    await api("POST", "/api/auth/logout/");
  } catch (error) {
    showError(error);
  }
  signOut("You are logged out.");
}

// ---- The chat list ---------------------------------------------------------------------------------------

function showApp() {
  $("auth").hidden = true;
  $("app").hidden = false;
  $("account").hidden = false;
  $("whoami").textContent = state.username;
  state.lobby = new Stream({
    url: () => wsUrl("/ws/chats/"),
    onOpen: () => { document.body.dataset.lobby = "live"; loadChats(); },
    onFrame: (frame) => {
      if (frame.type === "chat.created") addChat(frame.chat);
      else if (frame.type === "chat.deleted") removeChat(frame.chat_id, "This chat was deleted.");
      else if (frame.type === "member.joined") memberJoined(frame);
      else if (frame.type === "member.left") memberLeft(frame);
      else if (frame.type === "chat.read") readPosition(frame.chat_id, frame);
      else if (frame.type === "error" && !["credentials_revoked", "invalid_token"].includes(frame.code)) showError(frame);
    },
    onClose: (code) => { document.body.dataset.lobby = "reconnecting"; return authClose(code); },
  });
  loadChats();
  openFromHash();
}

async function loadChats(more = false) {
  const generation = more ? state.listGeneration : ++state.listGeneration;
  if (!more) {
    state.liveAdded = new Map();
    document.body.dataset.list = "loading";
  }
  let page;
  try {
    page = await api("GET", more ? relative(state.chatsNext) : "/api/chats/?limit=100");
  } catch (error) {
    if (state.token) showError(error);
    return;
  }
  if (generation !== state.listGeneration) return; // a newer read is on its way
  if (!more) state.chats = new Map(state.liveAdded);
  for (const chat of page.results) if (!state.gone.has(chat.id)) state.chats.set(chat.id, chat);
  state.chatsNext = page.next;
  renderChats();
  if (!more) document.body.dataset.list = "loaded";
}

// Frames carry a chat without `membership` (one payload goes to many users): keep what this page knows, and
// otherwise a chat's creator is its owner and anyone else is not a member.
function addChat(chat) {
  if (state.gone.has(chat.id)) return;
  if (!("membership" in chat)) {
    const known = state.chats.get(chat.id);
    chat = { ...chat, membership: known ? known.membership : ownMembership(chat) };
  }
  state.chats.set(chat.id, chat);
  state.liveAdded.set(chat.id, chat);
  renderChats();
}

function ownMembership(chat) {
  return chat.owner === state.username ? { role: "owner", last_read_seq: 0, unread: chat.last_seq } : null;
}

// Changes one chat wherever the page holds it: the list (and the live additions, the same objects) and the open chat.
function updateChat(id, changes) {
  const chat = state.chats.get(id);
  if (chat) Object.assign(chat, changes);
  const open = state.open;
  if (open?.chat.id === id) {
    Object.assign(open.chat, changes);
    renderChatHead();
  }
  renderChats();
}

// member.joined / member.left reach only the member's own lobbies: the member is this user.
function memberJoined(frame) {
  if (frame.member?.username !== state.username) return;
  const { role, last_read_seq } = frame.member;
  const known = (state.chats.get(frame.chat_id) ?? (state.open?.chat.id === frame.chat_id ? state.open.chat : null))?.membership;
  const membership = known && known.last_read_seq >= last_read_seq ? { ...known, role } // a newer read came first
    : { role, last_read_seq, unread: Math.max(0, frame.chat.last_seq - last_read_seq) };
  state.gone.delete(frame.chat_id); // added again after leaving
  if (state.chats.has(frame.chat_id)) updateChat(frame.chat_id, { member_count: frame.chat.member_count, membership });
  else addChat({ ...frame.chat, membership });
  const open = state.open;
  if (open?.chat.id !== frame.chat_id) return;
  if (!state.chats.has(frame.chat_id)) updateChat(open.chat.id, { member_count: frame.chat.member_count, membership });
  open.readSeq = Math.max(open.readSeq, last_read_seq);
  markRead(open);
  if (membersShown()) loadMembers();
}

function memberLeft(frame) {
  if (frame.member?.username !== state.username) return;
  if (frame.chat.visibility === "private") {
    removeChat(frame.chat_id, "You are no longer a member of this chat.");
    return;
  }
  updateChat(frame.chat_id, { member_count: frame.chat.member_count, membership: null });
  if (state.open?.chat.id === frame.chat_id && membersShown()) loadMembers();
}

// A read position from this page's own POST or from the user's other devices; it never moves back.
function readPosition(id, { last_read_seq, unread }) {
  const open = state.open?.chat.id === id ? state.open : null;
  if (open) open.readSeq = Math.max(open.readSeq, last_read_seq);
  const chat = state.chats.get(id) ?? open?.chat;
  const membership = chat?.membership;
  if (!membership || last_read_seq < membership.last_read_seq) return;
  updateChat(id, { membership: { ...membership, last_read_seq, unread } });
}

function removeChat(id, message) {
  // The chat.deleted frame of one's own deletion may arrive before the DELETE's answer: it says the same.
  if (state.deleting === id) message = "You deleted the chat.";
  state.gone.add(id);
  state.chats.delete(id);
  state.liveAdded.delete(id);
  renderChats();
  if (state.open?.chat.id === id) chatGone(message);
}

// A padlock drawn inline (no icon font or emoji font needed), for a private chat.
function lockMark() {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("class", "lock");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "private");
  svg.innerHTML = '<title>Private chat</title><rect x="3" y="7" width="10" height="8" rx="1.5"/>'
    + '<path d="M5 7V5a3 3 0 0 1 6 0v2" fill="none" stroke-width="1.8"/>';
  return svg;
}

function renderChats() {
  const chats = [...state.chats.values()].sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
  $("chat-list").replaceChildren(...chats.map((chat) => {
    const unread = chat.membership?.unread ?? 0;
    const button = el("button", { type: "button", className: "chat-link" },
      ...(chat.visibility === "private" ? [lockMark()] : []),
      el("span", { className: "title", textContent: chat.title, title: chat.title }),
      ...(unread > 0 ? [el("span", { className: "unread", textContent: unread, title: `${unread} unread` })] : []),
      el("span", { className: "owner", textContent: chat.owner }));
    button.dataset.chatId = chat.id;
    button.dataset.visibility = chat.visibility ?? "public";
    button.addEventListener("click", () => select(chat.id));
    return el("li", { className: state.open?.chat.id === chat.id ? "active" : "" }, button);
  }));
  $("more-chats").hidden = !state.chatsNext;
}

async function createChat(event) {
  event.preventDefault();
  const input = $("new-chat-title");
  const visibility = $("new-chat-private").checked ? "private" : "public";
  clearError();
  try {
    const chat = await api("POST", "/api/chats/", { title: input.value, visibility });
    input.value = "";
    $("new-chat-private").checked = false;
    addChat(chat);
    select(chat.id);
  } catch (error) {
    showError(error);
  }
}

// ---- One open chat ------------------------------------------------------------------------------------------

// The open chat is in the address (#<chat id>), so a reload or a shared link reopens it.
function select(id) {
  if (location.hash.slice(1) === id) openChat(id);
  else location.hash = id;
}

function openFromHash() {
  const id = decodeURIComponent(location.hash.slice(1));
  if (state.token && id && id !== state.open?.chat.id) openChat(id);
}

function setChatState(value, text) {
  $("chat").dataset.state = value;
  $("chat-status").textContent = text;
}

function actionButton(action, label, title) {
  const button = el("button", { type: "button", className: `action ${action}-message`, textContent: label, title });
  button.dataset.action = action;
  return button;
}

// A message's <li>, made once and registered in open.items; its frames update it in place (renderMessage).
function messageItem(open, message) {
  const li = el("li");
  li.dataset.seq = message.seq;
  open.items.set(message.seq, li);
  renderMessage(open, li, message);
  return li;
}

// Draws a message's state into its <li>: the meta line (author, time, "edited", what this user may do) and the
// text, or the tombstone of a deleted one. An editor open on it is kept (and keeps its focus and draft), unless
// the message is gone.
function renderMessage(open, li, message) {
  const mine = message.author === state.username;
  const mayDelete = mine || open.chat.owner === state.username || open.chat.membership?.role === "owner";
  const edited = Boolean(message.edited_at) && !message.deleted;
  const busy = message.deleted ? [] : ["editing", "saving"].filter((name) => li.classList.contains(name));
  li.className = ["message", mine && "mine", message.deleted && "deleted", edited && "edited", ...busy].filter(Boolean).join(" ");
  li.dataset.version = message.version ?? 0;
  const meta = el("div", { className: "meta" },
    el("strong", { className: "author", textContent: message.author }), " ",
    el("time", { dateTime: message.created_at, textContent: new Date(message.created_at).toLocaleString() }));
  if (edited) {
    meta.append(" ", el("span", { className: "edited-mark", textContent: "edited",
                                  title: `Edited ${new Date(message.edited_at).toLocaleString()}` }));
  }
  if (!message.deleted && (mine || mayDelete)) {
    meta.append(" ", el("span", { className: "actions" },
      ...(mine ? [actionButton("edit", "edit", "Edit your message")] : []),
      actionButton("delete", "delete", "Delete this message")));
  }
  const text = message.deleted
    ? el("p", { className: "text tombstone", textContent: "message deleted" })
    : el("p", { className: "text", textContent: message.text });
  const editor = li.querySelector(":scope > .editor");
  if (editor && message.deleted) endEdit(open, message.seq);
  const keep = !message.deleted && editor;
  text.hidden = Boolean(keep);
  const old = li.querySelector(":scope > .meta");
  if (old) { // in place, so that an open editor stays where it is, focused
    old.replaceWith(meta);
    li.querySelector(":scope > .text").replaceWith(text);
  } else {
    li.replaceChildren(meta, text);
  }
}

async function openChat(id) {
  closeChat();
  clearError();
  const opening = (state.opening = {});
  let chat, page;
  try {
    chat = await api("GET", `/api/chats/${encodeURIComponent(id)}/`);
    page = await api("GET", `/api/chats/${chat.id}/messages/?before_seq=${chat.last_seq + 1}&limit=${PAGE}`);
  } catch (error) {
    if (state.opening !== opening) return;
    showError(error);
    if (error.code === "chat_not_found") removeChat(id);
    return;
  }
  if (state.opening !== opening) return; // another chat was picked meanwhile
  // The messages were read after the chat: none of them is older than its version, and whatever changed
  // after that version is sent again by the socket (after_version), each in its current state.
  const open = (state.open = {
    chat, version: chat.version ?? 0, lastSeq: 0, messages: new Map(), items: new Map(),
    olderBefore: beforeSeqOf(page.next), stream: null, loadingOlder: false,
    readSeq: chat.membership?.last_read_seq ?? 0, readAt: 0, readTimer: null, reading: false,
    online: new Set(), typing: new Map(), typingSentAt: 0, editing: null,
  });
  const newestFirst = page.results;
  open.lastSeq = newestFirst.length ? newestFirst[0].seq : 0;
  for (const message of newestFirst) open.messages.set(message.seq, message);
  $("messages").replaceChildren(...newestFirst.slice().reverse().map((message) => messageItem(open, message)));
  $("chat-title").textContent = chat.title;
  $("member-list").replaceChildren();
  renderChatHead();
  renderOnline(open);
  renderTyping(open);
  if (membersShown()) loadMembers();
  $("older").hidden = !open.olderBefore;
  $("no-chat").hidden = true;
  $("chat").hidden = false;
  notice("");
  if (state.chats.has(chat.id)) updateChat(chat.id, chat); // this read is newer than the list's
  else renderChats();
  scrollToEnd();
  markRead(open);
  setChatState("connecting", "connecting…");
  open.stream = new Stream({
    url: () => wsUrl(`/ws/chats/${chat.id}/`, { after_version: open.version }),
    onOpen: () => setChatState("live", "live"),
    onFrame: (frame) => chatFrame(open, frame),
    onClose: (code) => {
      clearTyping(open); // nobody's notices arrive while the socket is down; presence comes anew on reconnecting
      if (code === 4410) { removeChat(chat.id, "This chat was deleted."); return false; }
      if (code === 4404) { removeChat(chat.id, "This chat no longer exists."); return false; }
      if (code === 4403) { removeChat(chat.id, "You are no longer a member of this chat."); return false; }
      if (!authClose(code)) return false;
      setChatState("reconnecting", "reconnecting…"); // 4408 (fell behind), 4429, a network drop: resume after version
      return true;
    },
  });
}

function chatFrame(open, frame) {
  if (state.open !== open || (frame.chat_id !== undefined && frame.chat_id !== open.chat.id)) return;
  if (CHANGES.has(frame.type)) {
    if (typeof frame.version === "number") {
      if (frame.version <= open.version) return; // applied already
      open.version = frame.version;
    }
    if (frame.type === "member.joined" || frame.type === "member.left") memberFrame(open, frame);
    else if (frame.message) applyMessage(open, frame.message, frame.type === "message.created");
  } else if (frame.type === "presence") {
    open.online = new Set(frame.online ?? []);
    renderOnline(open);
  } else if (frame.type === "presence.joined" || frame.type === "presence.left") {
    if (frame.type === "presence.joined") open.online.add(frame.username);
    else {
      open.online.delete(frame.username);
      stopTyping(open, frame.username);
    }
    renderOnline(open);
  } else if (frame.type === "typing") {
    if (frame.username !== state.username) showTyping(open, frame.username);
  } else if (frame.type === "chat.deleted") {
    removeChat(open.chat.id, "This chat was deleted.");
  } else if (frame.type === "error"
             && !["lagging", "credentials_revoked", "invalid_token", "not_a_member"].includes(frame.code)) {
    showError(frame); // these are followed by a close that says what to do (4401: back to the login form, 4403: gone)
  }
}

// A message in its state at `message.version`, from a frame or from this page's own edit. A message shown already
// is updated in place (also by a created frame: a replay after a reconnect sends the current state); a newer one
// is appended; one older than the history shown is only remembered, for when that history is loaded.
function applyMessage(open, message, created = false) {
  const known = open.messages.get(message.seq);
  if (known && (known.version ?? 0) > (message.version ?? 0)) return; // an older state than the one shown
  open.messages.set(message.seq, message);
  if (created) stopTyping(open, message.author);
  const follow = nearEnd() || (created && message.author === state.username);
  const li = open.items.get(message.seq);
  if (li) {
    renderMessage(open, li, message);
  } else if (message.seq > open.lastSeq) {
    $("messages").append(messageItem(open, message));
    open.lastSeq = message.seq;
    // Posting moved the author's read position to their message already (docs/protocol.md, "Read positions").
    if (message.author === state.username) open.readSeq = Math.max(open.readSeq, message.seq);
  } else {
    const after = [...open.items.keys()].filter((seq) => seq > message.seq).sort((a, b) => a - b)[0];
    const oldest = Math.min(...open.items.keys());
    if (after === undefined || message.seq < oldest) return; // not in the history shown: loadOlder brings it
    open.items.get(after).before(messageItem(open, message));
  }
  if (follow) scrollToEnd();
  markRead(open);
}

async function loadOlder() {
  const open = state.open;
  if (!open || !open.olderBefore || open.loadingOlder) return;
  open.loadingOlder = true;
  try {
    const page = await api("GET", `/api/chats/${open.chat.id}/messages/?before_seq=${open.olderBefore}&limit=${PAGE}`);
    if (state.open !== open) return;
    const scroller = $("scroller");
    const fromEnd = scroller.scrollHeight - scroller.scrollTop;
    // A frame that changed one of these messages while the page was on its way is newer than the page.
    const older = page.results.filter((message) => !open.items.has(message.seq)).reverse().map((message) => {
      const known = open.messages.get(message.seq);
      return known && (known.version ?? 0) > (message.version ?? 0) ? known : message;
    });
    for (const message of older) open.messages.set(message.seq, message);
    $("messages").prepend(...older.map((message) => messageItem(open, message)));
    open.olderBefore = beforeSeqOf(page.next);
    $("older").hidden = !open.olderBefore;
    scroller.scrollTop = scroller.scrollHeight - fromEnd; // keep what was on screen in place
  } catch (error) {
    showError(error);
  } finally {
    open.loadingOlder = false;
  }
}

function closeChat() {
  state.opening = null;
  if (!state.open) return;
  state.open.stream?.stop();
  clearTimeout(state.open.readTimer);
  clearTyping(state.open);
  state.open = null;
  $("messages").replaceChildren();
  $("online").replaceChildren();
  $("typing").textContent = "";
  $("chat").hidden = true;
  $("no-chat").hidden = false;
  setChatState("closed", "");
  renderChats();
}

function chatGone(message) {
  closeChat();
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  notice(message);
}

function nearEnd() {
  const scroller = $("scroller");
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
}

function scrollToEnd() {
  const scroller = $("scroller");
  scroller.scrollTop = scroller.scrollHeight;
}

async function send() {
  const open = state.open;
  const box = $("message-text");
  const text = box.value;
  if (!open || !text.trim() || state.sending) return;
  const pending = state.pendingPost;
  if (!pending || pending.chatId !== open.chat.id || pending.text !== text) {
    state.pendingPost = { chatId: open.chat.id, text, key: newKey() };
  }
  state.sending = true;
  clearError();
  try {
    // The message itself arrives on the socket, in seq order with everyone else's.
    await api("POST", `/api/chats/${open.chat.id}/messages/`, { text }, { "Idempotency-Key": state.pendingPost.key });
    state.pendingPost = null;
    if (box.value === text) box.value = "";
  } catch (error) {
    showError(error);
  } finally {
    state.sending = false;
  }
}

// ---- Editing and deleting messages ----------------------------------------------------------------------------

// The text of one's own message becomes a box: Enter (or "save") saves it, Escape (or "cancel") leaves it as it was.
function startEdit(seq) {
  const open = state.open;
  const message = open?.messages.get(seq);
  const li = open?.items.get(seq);
  if (!li || !message || message.deleted || message.author !== state.username) return;
  if (open.editing) endEdit(open, open.editing.seq);
  const box = el("textarea", { className: "edit-text", value: message.text, maxLength: 4096,
                               rows: Math.min(8, Math.max(1, message.text.split("\n").length)) });
  box.setAttribute("aria-label", "Edit your message");
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      saveEdit(open, seq, box.value);
    } else if (event.key === "Escape") {
      event.preventDefault();
      endEdit(open, seq);
      $("message-text").focus();
    }
  });
  const editor = el("div", { className: "editor" }, box,
    el("div", { className: "edit-help" },
      actionButton("save", "save", "Save (Enter)"), " ", actionButton("cancel", "cancel", "Cancel (Escape)"),
      " ", el("span", { textContent: "Enter saves, Escape cancels" })));
  li.querySelector(":scope > .text").hidden = true;
  li.classList.add("editing");
  li.append(editor);
  open.editing = { seq, saving: false };
  box.focus();
  box.setSelectionRange(box.value.length, box.value.length);
}

function endEdit(open, seq) {
  if (open.editing?.seq === seq) open.editing = null;
  const li = open.items.get(seq);
  if (!li) return;
  li.querySelector(":scope > .editor")?.remove();
  li.classList.remove("editing");
  const text = li.querySelector(":scope > .text");
  if (text) text.hidden = false;
}

async function saveEdit(open, seq, text) {
  const message = open.messages.get(seq);
  if (state.open !== open || !message || open.editing?.seq !== seq || open.editing.saving) return;
  if (text === message.text) { // nothing to save
    endEdit(open, seq);
    return;
  }
  const pending = state.pendingEdit;
  if (!pending || pending.chatId !== open.chat.id || pending.seq !== seq || pending.text !== text) {
    state.pendingEdit = { chatId: open.chat.id, seq, text, key: newKey() };
  }
  const { key } = state.pendingEdit;
  open.editing.saving = true;
  open.items.get(seq)?.classList.add("saving");
  clearError();
  try {
    const changed = await api("PATCH", `/api/chats/${open.chat.id}/messages/${seq}/`, { text }, { "Idempotency-Key": key });
    state.pendingEdit = null;
    if (state.open !== open) return;
    endEdit(open, seq);
    applyMessage(open, changed); // its frame, with the same version, follows on the socket
  } catch (error) {
    showError(error); // invalid_text: the box stays, to be corrected
    if (["message_deleted", "message_not_found", "permission_denied"].includes(error.code)) endEdit(open, seq);
  } finally {
    if (open.editing?.seq === seq) open.editing.saving = false;
    open.items.get(seq)?.classList.remove("saving");
  }
}

// One's own message, or any message of a chat one owns; it stays in its place as a tombstone.
async function deleteMessage(seq) {
  const open = state.open;
  const message = open?.messages.get(seq);
  if (!message || message.deleted || !confirm("Delete this message? Everyone will see it as deleted.")) return;
  clearError();
  try {
    await api("DELETE", `/api/chats/${open.chat.id}/messages/${seq}/`);
  } catch (error) {
    showError(error);
    return;
  }
  if (state.open !== open) return;
  // The frame (with the change's version) follows on the socket; until then the tombstone keeps the old version.
  applyMessage(open, { ...open.messages.get(seq), text: "", deleted: true });
}

// ---- Typing and presence --------------------------------------------------------------------------------------

function typed() {
  const open = state.open;
  if (!open?.stream || !$("message-text").value.trim()) return;
  const now = Date.now();
  if (now - open.typingSentAt < TYPING_EVERY) return;
  if (open.stream.send({ type: "typing" })) open.typingSentAt = now;
}

function showTyping(open, username) {
  clearTimeout(open.typing.get(username));
  open.typing.set(username, setTimeout(() => stopTyping(open, username), TYPING_SHOWN));
  renderTyping(open);
}

function stopTyping(open, username) {
  if (!open.typing.has(username)) return;
  clearTimeout(open.typing.get(username));
  open.typing.delete(username);
  renderTyping(open);
}

function clearTyping(open) {
  for (const timer of open.typing.values()) clearTimeout(timer);
  open.typing.clear();
  renderTyping(open);
}

function renderTyping(open) {
  if (state.open !== open) return;
  const names = [...open.typing.keys()];
  let text = "";
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length <= 3 && names.length) text = `${names.slice(0, -1).join(", ")} and ${names.at(-1)} are typing…`;
  else if (names.length) text = `${names.slice(0, 2).join(", ")} and ${names.length - 2} others are typing…`;
  $("typing").textContent = text;
}

// Who is online in the open chat, in its header (and a mark on them in the members panel).
function renderOnline(open) {
  if (state.open !== open) return;
  const names = [...open.online].sort();
  const more = names.length - ONLINE_SHOWN;
  $("online").replaceChildren(
    ...names.slice(0, ONLINE_SHOWN).map((name) => el("li", { className: "online-user", textContent: name })),
    ...(more > 0 ? [el("li", { className: "online-more", textContent: `+${more} more` })] : []));
  $("online").title = names.length ? `Online now: ${names.slice(0, 50).join(", ")}${names.length > 50 ? ", …" : ""}` : "";
  for (const li of $("member-list").querySelectorAll(".member-item")) {
    li.classList.toggle("online", open.online.has(li.dataset.username));
  }
}

// ---- Read position ----------------------------------------------------------------------------------------------

// The open chat's last shown seq becomes its read position: one POST at most every READ_EVERY ms, and only when
// that seq is beyond what is marked already, however many frames arrive. Not for a hidden tab, or a non-member.
function markRead(open) {
  if (state.open !== open || !open.chat.membership || open.lastSeq <= open.readSeq) return;
  if (open.readTimer || open.reading || document.hidden) return;
  open.readTimer = setTimeout(() => postRead(open), Math.max(0, open.readAt + READ_EVERY - Date.now()));
}

async function postRead(open) {
  open.readTimer = null;
  if (state.open !== open || !open.chat.membership || open.lastSeq <= open.readSeq) return;
  open.reading = true;
  open.readAt = Date.now();
  let position;
  try {
    position = await api("POST", `/api/chats/${open.chat.id}/read/`, { seq: open.lastSeq });
  } catch (error) {
    // Not worth an error on screen: the next message shown tries again. A chat that is gone, or a membership
    // that ended, is announced by the socket or the lobby.
    if (error.code === "not_a_member") updateChat(open.chat.id, { membership: null });
    return;
  } finally {
    open.reading = false;
  }
  readPosition(open.chat.id, position);
  markRead(open); // messages shown while the POST was on its way
}

// ---- Members -------------------------------------------------------------------------------------------------

const membersShown = () => $("members").open;

// The open chat's header: its lock, and what this user may do (join, leave, delete, add members).
function renderChatHead() {
  const chat = state.open?.chat;
  if (!chat) return;
  const member = Boolean(chat.membership);
  $("chat-lock").replaceChildren(...(chat.visibility === "private" ? [lockMark()] : []));
  $("chat").dataset.visibility = chat.visibility;
  $("chat").dataset.member = member ? chat.membership.role : "";
  $("join-chat").hidden = member || chat.visibility === "private";
  $("leave-chat").hidden = !member;
  $("delete-chat").hidden = chat.owner !== state.username;
  $("add-member").hidden = !member;
  $("member-count").textContent = chat.member_count ?? "";
}

async function loadMembers() {
  const open = state.open;
  if (!open) return;
  let page;
  try {
    page = await api("GET", `/api/chats/${open.chat.id}/members/?limit=200`);
  } catch (error) {
    if (state.open === open) showError(error);
    return;
  }
  if (state.open !== open) return;
  $("member-list").replaceChildren(...page.results.map((member) => memberItem(open, member)),
    ...(page.next ? [el("li", { className: "more", textContent: "…and more" })] : []));
  if (!page.next && open.chat.member_count !== page.results.length) updateChat(open.chat.id, { member_count: page.results.length });
}

function memberItem(open, member) {
  const li = el("li", { className: open.online.has(member.username) ? "member-item online" : "member-item" },
    el("span", { className: "name", textContent: member.username }), " ",
    el("span", { className: `role role-${member.role}`, textContent: member.role }));
  li.dataset.username = member.username;
  if (open.chat.membership?.role === "owner" && member.role !== "owner") {
    const remove = el("button", { type: "button", className: "remove-member", textContent: "Remove" });
    remove.addEventListener("click", () => removeMember(open, member.username));
    li.append(" ", remove);
  }
  return li;
}

// member.joined / member.left on the chat's socket (anyone's; one's own membership is the lobby's business).
// A live frame carries the chat and its member_count; a replayed one only the member. The panel, if open, is
// updated in place: a newcomer joins the end of a complete list (members are listed by when they joined).
function memberFrame(open, frame) {
  if (typeof frame.chat?.member_count === "number") updateChat(open.chat.id, { member_count: frame.chat.member_count });
  if (!membersShown() || !frame.member) return;
  const list = $("member-list");
  const complete = !list.querySelector(".more");
  const shown = [...list.querySelectorAll(".member-item")].find((li) => li.dataset.username === frame.member.username);
  if (frame.type === "member.left") shown?.remove();
  else if (shown) shown.replaceWith(memberItem(open, frame.member));
  else if (complete) list.append(memberItem(open, frame.member));
  if (complete && typeof frame.chat?.member_count !== "number") {
    updateChat(open.chat.id, { member_count: list.querySelectorAll(".member-item").length });
  }
}

function memberPath(chat, username) {
  return `/api/chats/${chat.id}/members/` + (username === undefined ? "" : `${encodeURIComponent(username)}/`);
}

async function addMember(event) {
  event.preventDefault();
  const open = state.open;
  const input = $("add-member-name");
  const username = input.value.trim();
  if (!open || !username) return;
  clearError();
  try {
    await api("POST", memberPath(open.chat), { username });
    if (input.value.trim() === username) input.value = "";
    notice(`${username} is a member of "${open.chat.title}".`);
  } catch (error) {
    showError(error);
    return;
  }
  if (state.open === open) loadMembers();
}

async function removeMember(open, username) {
  clearError();
  try {
    await api("DELETE", memberPath(open.chat, username));
  } catch (error) {
    showError(error);
    return;
  }
  if (state.open === open) loadMembers();
}

async function joinChat() {
  const open = state.open;
  if (!open) return;
  clearError();
  let member;
  try {
    member = await api("POST", memberPath(open.chat), {});
  } catch (error) {
    showError(error);
    return;
  }
  if (state.open !== open) return;
  if (!open.chat.membership) {
    const lastSeq = Math.max(open.chat.last_seq, open.lastSeq);
    const membership = { role: member.role, last_read_seq: member.last_read_seq, unread: Math.max(0, lastSeq - member.last_read_seq) };
    updateChat(open.chat.id, { membership, member_count: (open.chat.member_count ?? 0) + 1 });
    open.readSeq = Math.max(open.readSeq, member.last_read_seq);
    markRead(open);
  }
  if (membersShown()) loadMembers();
}

async function leaveChat() {
  const open = state.open;
  if (!open) return;
  clearError();
  try {
    await api("DELETE", memberPath(open.chat, state.username));
  } catch (error) {
    showError(error); // the owner: owner_cannot_leave
    return;
  }
  if (open.chat.visibility === "private") {
    removeChat(open.chat.id, `You left "${open.chat.title}".`);
    return;
  }
  if (open.chat.membership) {
    updateChat(open.chat.id, { membership: null, member_count: Math.max(0, (open.chat.member_count ?? 1) - 1) });
  }
  notice(`You left "${open.chat.title}".`);
  if (state.open === open && membersShown()) loadMembers();
}

async function deleteChat() {
  const open = state.open;
  if (!open || !confirm(`Delete "${open.chat.title}" and all its messages?`)) return;
  clearError();
  state.deleting = open.chat.id;
  try {
    await api("DELETE", `/api/chats/${open.chat.id}/`);
    removeChat(open.chat.id, "You deleted the chat.");
  } catch (error) {
    showError(error);
  } finally {
    state.deleting = null;
  }
}

// ---- Wiring ------------------------------------------------------------------------------------------------

$("auth-form").addEventListener("submit", (event) => { event.preventDefault(); authenticate("login"); });
$("signup").addEventListener("click", () => authenticate("signup"));
$("logout").addEventListener("click", logout);
$("error-close").addEventListener("click", clearError);
$("new-chat").addEventListener("submit", createChat);
$("more-chats").addEventListener("click", () => loadChats(true));
$("older").addEventListener("click", loadOlder);
$("scroller").addEventListener("scroll", () => { if ($("scroller").scrollTop === 0) loadOlder(); });
$("delete-chat").addEventListener("click", deleteChat);
$("join-chat").addEventListener("click", joinChat);
$("leave-chat").addEventListener("click", leaveChat);
$("add-member").addEventListener("submit", addMember);
$("members").addEventListener("toggle", () => { if (membersShown()) loadMembers(); });
document.addEventListener("visibilitychange", () => {
  if (document.hidden || !state.token) return;
  loadChats(); // unread counts moved while the tab was away (the lobby carries no messages)
  if (state.open) markRead(state.open);
});
$("composer").addEventListener("submit", (event) => { event.preventDefault(); send(); });
$("message-text").addEventListener("input", typed);
$("messages").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  const seq = Number(button?.closest("[data-seq]")?.dataset.seq);
  const open = state.open;
  if (!button || !open || !seq) return;
  const action = button.dataset.action;
  if (action === "edit") startEdit(seq);
  else if (action === "delete") deleteMessage(seq);
  else if (action === "save") saveEdit(open, seq, button.closest(".editor").querySelector(".edit-text").value);
  else if (action === "cancel") endEdit(open, seq);
});
$("message-text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});
window.addEventListener("hashchange", openFromHash);
// Chromium keeps a page left for another one in its back/forward cache with its sockets open: its user would stay
// "online" in the chat, and frames would reach a page nobody sees. They are closed when the page is hidden so, and
// open again when it is shown: the chat resumes after the last version applied, the lobby reads the list again.
window.addEventListener("pagehide", (event) => {
  if (!event.persisted) return; // a page that unloads closes its sockets anyway
  state.lobby?.pause();
  state.open?.stream?.pause();
});
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  state.lobby?.resume();
  if (state.open?.stream?.paused) {
    setChatState("connecting", "connecting…");
    clearTyping(state.open);
    state.open.stream.resume();
  }
});

if (state.token) showApp();
else $("auth").hidden = false;
