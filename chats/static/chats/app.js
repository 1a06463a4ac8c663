// The chat page. It speaks only the public API (README: "HTTP API", "Websockets"):
// - a token from /api/auth/register/ or /api/auth/token/, kept in localStorage, sent as `Authorization: Token`
//   (requests omit cookies, so a session of the browsable API or the admin plays no part, and needs no CSRF);
// - the lobby socket keeps the chat list live; on every (re)connect the list is read again (the lobby has no replay);
// - an open chat shows its latest page of history, older pages on demand, then its socket with ?after_seq=<last
//   seq shown>; every message is one <li data-seq>, and a frame whose seq is not above the last one is dropped.

const $ = (id) => document.getElementById(id);
const PAGE = 50;
const TOKEN_KEY = "chat.token";
const USER_KEY = "chat.username";

const state = {
  token: localStorage.getItem(TOKEN_KEY),
  username: localStorage.getItem(USER_KEY),
  chats: new Map(), // id -> chat, as the API returns it
  gone: new Set(), // chats deleted while this page is open: a list read in flight must not bring them back
  liveAdded: new Map(), // chats the lobby announced since the list read in flight started
  listGeneration: 0,
  chatsNext: null,
  lobby: null,
  open: null, // {chat, lastSeq, olderBefore, stream, loadingOlder}
  opening: null,
  pendingPost: null, // {chatId, text, key}: a failed post is retried with the same Idempotency-Key
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
  url.search = new URLSearchParams({ token: state.token, ...params });
  return url.href;
}

// A socket that reconnects with backoff. `url()` is asked on every attempt (so after_seq is current);
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
      if (!this.stopped) this.onFrame(frame);
    };
    ws.onclose = (event) => {
      if (this.stopped || ws !== this.ws) return;
      if (this.onClose(event.code) === false) { this.stopped = true; return; }
      const base = event.code === 4429 ? 5000 : 500; // 4429: too many sockets or frames; wait longer
      const delay = Math.min(30000, base * 2 ** this.attempt++) * (0.75 + Math.random() / 2);
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.ws?.close(1000);
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

function addChat(chat) {
  if (state.gone.has(chat.id)) return;
  state.chats.set(chat.id, chat);
  state.liveAdded.set(chat.id, chat);
  renderChats();
}

function removeChat(id, message) {
  state.gone.add(id);
  state.chats.delete(id);
  state.liveAdded.delete(id);
  renderChats();
  if (state.open?.chat.id === id) chatGone(message);
}

function renderChats() {
  const chats = [...state.chats.values()].sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
  $("chat-list").replaceChildren(...chats.map((chat) => {
    const button = el("button", { type: "button", className: "chat-link" },
      el("span", { className: "title", textContent: chat.title, title: chat.title }),
      el("span", { className: "owner", textContent: chat.owner }));
    button.dataset.chatId = chat.id;
    button.addEventListener("click", () => select(chat.id));
    return el("li", { className: state.open?.chat.id === chat.id ? "active" : "" }, button);
  }));
  $("more-chats").hidden = !state.chatsNext;
}

async function createChat(event) {
  event.preventDefault();
  const input = $("new-chat-title");
  clearError();
  try {
    const chat = await api("POST", "/api/chats/", { title: input.value });
    input.value = "";
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

function messageElement(message) {
  const li = el("li", { className: message.author === state.username ? "message mine" : "message" },
    el("div", { className: "meta" },
      el("strong", { className: "author", textContent: message.author }), " ",
      el("time", { dateTime: message.created_at, textContent: new Date(message.created_at).toLocaleString() })),
    el("p", { className: "text", textContent: message.text }));
  li.dataset.seq = message.seq;
  return li;
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
  const open = (state.open = { chat, lastSeq: 0, olderBefore: beforeSeqOf(page.next), stream: null, loadingOlder: false });
  const newestFirst = page.results;
  open.lastSeq = newestFirst.length ? newestFirst[0].seq : 0;
  $("messages").replaceChildren(...newestFirst.slice().reverse().map(messageElement));
  $("chat-title").textContent = chat.title;
  $("delete-chat").hidden = chat.owner !== state.username;
  $("older").hidden = !open.olderBefore;
  $("no-chat").hidden = true;
  $("chat").hidden = false;
  notice("");
  renderChats();
  scrollToEnd();
  setChatState("connecting", "connecting…");
  open.stream = new Stream({
    url: () => wsUrl(`/ws/chats/${chat.id}/`, { after_seq: open.lastSeq }),
    onOpen: () => setChatState("live", "live"),
    onFrame: (frame) => chatFrame(open, frame),
    onClose: (code) => {
      if (code === 4410) { removeChat(chat.id, "This chat was deleted."); return false; }
      if (code === 4404) { removeChat(chat.id, "This chat no longer exists."); return false; }
      if (!authClose(code)) return false;
      setChatState("reconnecting", "reconnecting…"); // 4408 (fell behind), 4429, a network drop: resume after lastSeq
      return true;
    },
  });
}

function chatFrame(open, frame) {
  if (frame.type === "message.created") {
    const message = frame.message;
    if (frame.chat_id !== open.chat.id || message.seq <= open.lastSeq) return; // seen already
    const follow = nearEnd() || message.author === state.username;
    $("messages").append(messageElement(message));
    open.lastSeq = message.seq;
    if (follow) scrollToEnd();
  } else if (frame.type === "chat.deleted") {
    removeChat(open.chat.id, "This chat was deleted.");
  } else if (frame.type === "error" && !["lagging", "credentials_revoked", "invalid_token"].includes(frame.code)) {
    showError(frame); // these are followed by a close that says what to do (4401: back to the login form)
  }
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
    const list = $("messages");
    const shown = new Set([...list.children].map((li) => li.dataset.seq));
    const older = page.results.filter((message) => !shown.has(String(message.seq))).reverse();
    list.prepend(...older.map(messageElement));
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
  state.open = null;
  $("messages").replaceChildren();
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

async function deleteChat() {
  const open = state.open;
  if (!open || !confirm(`Delete "${open.chat.title}" and all its messages?`)) return;
  clearError();
  try {
    await api("DELETE", `/api/chats/${open.chat.id}/`);
    removeChat(open.chat.id, "You deleted the chat.");
  } catch (error) {
    showError(error);
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
$("composer").addEventListener("submit", (event) => { event.preventDefault(); send(); });
$("message-text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});
window.addEventListener("hashchange", openFromHash);

if (state.token) showApp();
else $("auth").hidden = false;
