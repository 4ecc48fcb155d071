// Support chat panel on the /support namespace: a customer talks to support, an agent answers.
// Message text is shown with textContent only (the el() helper from app.js): chat is an XSS path.
"use strict";

(function () {
  const TYPING_REPEAT_MS = 2000;
  const REFUSED_RETRY_MS = 5000;

  function newClientMessageId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  }

  function mount(user, h) {
    const { el, toast, freshToken, clock } = h;
    const agent = user.role === "support" || user.role === "admin";
    const root = document.getElementById(agent ? "support-chat" : "customer-chat");
    if (!root) return;

    // ------------------------------------------------------------ state
    const conversations = new Map(); // id -> {conversation, unread, messages: Map(id -> message), lastSeenId, readByOthers}
    let current = null; // conversation id shown in the panel
    let lastTypingSent = 0;
    let typingTimer = null;

    // ------------------------------------------------------------ DOM
    const title = el("strong", {}, agent ? "Pick a conversation" : "Support");
    const subtitle = el("small", { class: "chat-presence" }, "connecting…");
    const state = el("span", { class: "pill", dataset: { state: "connecting" } }, el("i"), el("span", { class: "state" }, "connecting"));
    const closeButton = agent ? el("button", { type: "button", class: "ghost chat-close", hidden: true }, "Close chat") : null;
    const messages = el("div", { class: "chat-messages", role: "log", "aria-live": "polite" });
    const typing = el("div", { class: "typing" });
    const input = el("input", { type: "text", maxlength: "2000", placeholder: agent ? "Reply…" : "Ask support anything…", "aria-label": "Message" });
    const send = el("button", { type: "submit" }, "Send");
    const form = el("form", { class: "chat-form" }, input, send);
    const empty = el("div", { class: "chat-empty" }, agent
      ? "Conversations customers start show up on the left."
      : "Questions about an order? Write to support; an agent answers here, live.");
    messages.append(empty);
    root.replaceChildren(el("section", { class: "chat", "aria-label": "Support chat" },
      el("div", { class: "chat-head" }, el("div", {}, title, el("br"), subtitle), el("div", { class: "chat-tools" }, closeButton, state)),
      messages, typing, form));
    if (agent) { input.disabled = true; send.disabled = true; }

    function setState(name, text) {
      state.dataset.state = name;
      state.querySelector(".state").textContent = text || name;
    }

    // ------------------------------------------------------------ socket
    const socket = io("/support", {
      auth: (cb) => { freshToken().then((token) => cb({ token }), () => cb({})); },
      transports: ["websocket", "polling"],
      reconnectionDelayMax: 5000,
    });

    async function call(event, data) {
      const ack = await socket.timeout(8000).emitWithAck(event, data);
      if (!ack || !ack.ok) {
        const err = new Error((ack && ack.error && ack.error.message) || "no answer");
        err.code = ack && ack.error && ack.error.code;
        throw err;
      }
      return ack;
    }

    function entry(conversation) {
      let item = conversations.get(conversation.id);
      if (!item) {
        item = { conversation, unread: 0, messages: new Map(), lastSeenId: 0, readByOthers: 0 };
        conversations.set(conversation.id, item);
      } else {
        item.conversation = conversation;
      }
      return item;
    }

    // ------------------------------------------------------------ rendering
    function bubble(item, message) {
      const mine = message.senderId === user.id;
      const who = mine ? "" : (message.senderRole === "support" || message.senderRole === "admin" ? "Support" : message.senderId);
      let ticks = null;
      if (mine) {
        const read = message.id && item.readByOthers >= message.id;
        const label = message.failed ? "not sent" : !message.id ? "sending" : read ? "read" : "sent";
        ticks = el("span", { class: `ticks ${read ? "read" : ""}`, title: label, dataset: { tick: label } },
          message.failed ? "!" : !message.id ? "…" : read ? "✓✓" : "✓");
      }
      return el("div", { class: `msg ${mine ? "mine" : "theirs"}`, dataset: { messageId: message.id || "", clientMessageId: message.clientMessageId || "" } },
        who ? el("span", { class: "sender" }, who) : null,
        el("span", { class: "text" }, message.text),
        el("span", { class: "meta" }, clock(message.createdAt || new Date().toISOString()), ticks));
    }

    function renderMessages() {
      const item = current != null ? conversations.get(current) : null;
      if (!item) { messages.replaceChildren(empty); return; }
      const sorted = [...item.messages.values()].sort((a, b) => (a.id || Infinity) - (b.id || Infinity));
      const nodes = sorted.map((m) => bubble(item, m));
      if (item.conversation.status === "closed") nodes.push(el("div", { class: "msg system" }, "This conversation is closed."));
      if (!nodes.length) nodes.push(el("div", { class: "msg system" }, `Conversation “${item.conversation.subject}” opened. Say hello.`));
      messages.replaceChildren(...nodes);
      messages.scrollTop = messages.scrollHeight;
    }

    function renderHead() {
      const item = current != null ? conversations.get(current) : null;
      if (agent) {
        title.textContent = item ? `${item.conversation.customerId}: ${item.conversation.subject}` : "Pick a conversation";
        if (closeButton) closeButton.hidden = !item || item.conversation.status === "closed";
        input.disabled = send.disabled = !item || item.conversation.status === "closed";
      } else {
        title.textContent = item && item.conversation.status === "open" ? `Support · ${item.conversation.subject}` : "Support";
      }
    }

    function renderList() {
      if (!agent) return;
      const list = document.getElementById("conversation-list");
      const open = [...conversations.values()].filter((c) => c.conversation.status === "open")
        .sort((a, b) => b.conversation.id - a.conversation.id);
      list.replaceChildren(...open.map((c) => {
        const button = el("button", { type: "button", class: c.conversation.id === current ? "active" : "", dataset: { conversationId: c.conversation.id } },
          el("span", {}, el("strong", {}, c.conversation.customerId), el("br"), el("small", { class: "muted" }, c.conversation.subject)),
          c.unread > 0 ? el("span", { class: "unread-dot", title: `${c.unread} unread` }) : null);
        button.addEventListener("click", () => select(c.conversation.id));
        return el("li", {}, button);
      }));
      document.getElementById("conversation-empty").hidden = open.length > 0;
    }

    function renderAll() { renderHead(); renderMessages(); renderList(); }

    // ------------------------------------------------------------ reading
    function markRead(item) {
      const theirs = [...item.messages.values()].filter((m) => m.id && m.senderId !== user.id);
      const newest = theirs.reduce((max, m) => Math.max(max, m.id), 0);
      if (!newest || newest <= (item.sentReadId || 0)) return;
      item.sentReadId = newest;
      item.unread = 0;
      call("read", { conversationId: item.conversation.id, messageId: newest }).catch(() => { item.sentReadId = 0; });
    }

    async function loadHistory(item) {
      let page;
      let after = item.lastSeenId || undefined;
      do {
        page = await call("history", after ? { conversationId: item.conversation.id, after } : { conversationId: item.conversation.id });
        for (const m of page.messages) addMessage(item, m);
        if (page.messages.length) after = page.messages[page.messages.length - 1].id;
      } while (page.hasMore && after);
    }

    function addMessage(item, message) {
      const pending = message.clientMessageId && [...item.messages.entries()]
        .find(([, m]) => !m.id && m.clientMessageId === message.clientMessageId && m.senderId === message.senderId);
      if (pending) item.messages.delete(pending[0]);
      item.messages.set(message.id, message);
      if (message.id > item.lastSeenId) item.lastSeenId = message.id;
    }

    async function select(conversationId) {
      current = conversationId;
      const item = conversations.get(conversationId);
      renderAll();
      try {
        const joined = await call("joinConversation", { conversationId });
        // The others' read positions, so ticks are right after a reload or a reconnect.
        for (const r of joined.readBy || []) {
          if (r.userId !== user.id && r.messageId > item.readByOthers) item.readByOthers = r.messageId;
        }
        await loadHistory(item);
        markRead(item);
      } catch (err) {
        toast("Chat unavailable", err.message, "error");
      }
      renderAll();
      if (agent) input.focus();
    }

    // ------------------------------------------------------------ sending
    async function submit(event) {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      input.value = "";
      try {
        let item = current != null ? conversations.get(current) : null;
        if (!item || item.conversation.status === "closed") {
          if (agent) return;
          const subject = text.length > 60 ? `${text.slice(0, 57)}…` : text;
          const { conversation } = await call("startConversation", { subject });
          item = entry(conversation);
          current = conversation.id;
        }
        const draft = { text, clientMessageId: newClientMessageId(), senderId: user.id, senderRole: user.role, createdAt: new Date().toISOString() };
        const draftKey = `draft-${draft.clientMessageId}`;
        item.messages.set(draftKey, draft);
        renderAll();
        try {
          const { message } = await call("message", { conversationId: item.conversation.id, text, clientMessageId: draft.clientMessageId });
          item.messages.delete(draftKey);
          addMessage(item, message);
        } catch (err) {
          draft.failed = true;
          toast("Message not sent", err.message, "error");
        }
        lastTypingSent = 0;
        renderAll();
      } catch (err) {
        toast("Chat unavailable", err.message, "error");
      }
    }

    function onInput() {
      const item = current != null ? conversations.get(current) : null;
      if (!item || item.conversation.status !== "open") return;
      const now = Date.now();
      if (now - lastTypingSent > TYPING_REPEAT_MS) {
        lastTypingSent = now;
        socket.emit("typing", { conversationId: item.conversation.id, isTyping: true });
      }
    }

    form.addEventListener("submit", submit);
    input.addEventListener("input", onInput);
    if (closeButton) {
      closeButton.addEventListener("click", async () => {
        try { await call("closeConversation", { conversationId: current }); } catch (err) { toast("Not closed", err.message, "error"); }
      });
    }

    // ------------------------------------------------------------ server events
    async function sync() {
      const { conversations: list } = await call("listConversations", agent ? { status: "open" } : {});
      for (const c of list) {
        const item = entry(c);
        if (typeof c.unreadCount === "number") item.unread = c.unreadCount;
      }
      if (agent) {
        // Join every open conversation, so new messages mark them unread in the list.
        await Promise.all(list.filter((c) => c.status === "open").map((c) => call("joinConversation", { conversationId: c.id }).catch(() => {})));
        if (current != null && conversations.has(current)) await select(current);
      } else {
        const open = list.filter((c) => c.status === "open").sort((a, b) => b.id - a.id)[0];
        if (open) await select(open.id);
      }
      renderAll();
    }

    let connectedBefore = false;
    socket.on("connect", async () => {
      setState("live", "live");
      state.title = "";
      try {
        await sync();
      } catch (err) {
        if (!connectedBefore) toast("Chat unavailable", err.message, "error");
      }
      connectedBefore = true;
    });
    socket.on("disconnect", () => setState("reconnecting", "reconnecting"));
    socket.on("connect_error", async (err) => {
      const refusal = h.refusalOf(err);
      if (refusal && (refusal.code === "token_expired" || refusal.code === "unauthorized")) {
        h.session.token = null;
        setTimeout(() => socket.connect(), 1000);
        setState("reconnecting", "re-authenticating");
      } else if (refusal && /namespace/i.test(refusal.message)) {
        setState("offline", "not on this server");
      } else if (refusal) {
        // Refused with a reason (e.g. too many open connections): say it, and try again later.
        setState("offline", "refused");
        state.title = refusal.message;
        h.showNotice(`Support chat refused: ${h.explain(refusal.message)}`);
        if (err.type !== "TransportError") setTimeout(() => { if (!socket.connected) socket.connect(); }, REFUSED_RETRY_MS);
      } else {
        const answers = await h.serverAnswers();
        if (!socket.connected) setState("offline", answers ? "refused" : "offline");
      }
    });
    socket.on("tokenExpiring", async () => {
      h.session.token = null;
      try { await call("refreshToken", { token: await freshToken() }); } catch { /* reconnects with a new token */ }
    });
    socket.on("presence", ({ agentsOnline }) => {
      if (agent) subtitle.textContent = `${agentsOnline} agent${agentsOnline === 1 ? "" : "s"} online`;
      else subtitle.textContent = agentsOnline > 0 ? "Support is online" : "We will answer as soon as an agent is back";
    });
    socket.on("conversationOpened", (conversation) => {
      entry(conversation);
      if (agent) {
        toast("New chat", `${conversation.customerId}: ${conversation.subject}`, "notify");
        call("joinConversation", { conversationId: conversation.id }).catch(() => {});
      }
      renderList();
    });
    socket.on("conversationClosed", ({ conversationId, conversation }) => {
      const item = conversations.get(conversationId);
      if (item) item.conversation = conversation || { ...item.conversation, status: "closed" };
      if (item && agent && current === conversationId) current = null;
      renderAll();
    });
    socket.on("message", (message) => {
      const item = conversations.get(message.conversationId);
      if (!item) { sync().catch(() => {}); return; }
      addMessage(item, message);
      typing.textContent = "";
      if (current === message.conversationId && document.visibilityState !== "hidden") markRead(item);
      else {
        item.unread += 1;
        if (!agent) toast("Support replied", message.text, "notify");
      }
      renderAll();
    });
    socket.on("typing", ({ conversationId, userId, isTyping }) => {
      if (conversationId !== current || userId === user.id) return;
      typing.textContent = isTyping ? `${agent ? userId : "Support"} is typing…` : "";
      clearTimeout(typingTimer);
      if (isTyping) typingTimer = setTimeout(() => { typing.textContent = ""; }, 8000);
    });
    socket.on("read", ({ conversationId, userId, messageId }) => {
      const item = conversations.get(conversationId);
      if (!item || userId === user.id) return;
      if (messageId > item.readByOthers) item.readByOthers = messageId;
      if (conversationId === current) renderMessages();
    });
    document.addEventListener("visibilitychange", () => {
      const item = current != null ? conversations.get(current) : null;
      if (item && document.visibilityState === "visible") { markRead(item); renderList(); }
    });
  }

  window.tiffinChat = { mount };
})();
