// The chat page: asks over POST /api/v1/chat/ (stream: true) and renders the server-sent
// events as they arrive. Plain JavaScript, no build step. Text is only ever inserted with
// textContent, never as HTML.
(function () {
  "use strict";

  const chat = document.getElementById("chat");
  const messages = document.getElementById("messages");
  const form = document.getElementById("ask-form");
  const question = document.getElementById("question");
  const send = document.getElementById("send");
  const dialog = document.getElementById("passage-dialog");
  let conversationId = chat.dataset.conversationId || null;

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function postJson(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body),
    });
  }

  async function errorDetail(response) {
    try {
      const body = await response.json();
      if (body && body.detail) return body.detail;
    } catch (e) { /* not JSON */ }
    if (response.status === 429) return "Too many questions. Please wait a moment.";
    return "Something went wrong (" + response.status + "). Please try again.";
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // "... 180 EUR [1]." -> text nodes and clickable [1] buttons that open citation 1.
  function renderCited(container, text) {
    container.textContent = "";
    const parts = text.split(/(\[\d+(?:\s*,\s*\d+)*\])/);
    for (const part of parts) {
      const m = part.match(/^\[([\d,\s]+)\]$/);
      if (!m) { container.append(part); continue; }
      for (const n of m[1].split(",").map((s) => s.trim())) {
        const ref = el("button", "cite-ref", n);
        ref.type = "button";
        ref.dataset.index = n;
        ref.setAttribute("aria-label", "Source " + n);
        container.append(ref);
      }
    }
  }

  function renderCitations(bubble, citations) {
    const old = bubble.querySelector(".citations");
    if (old) old.remove();
    if (!citations || !citations.length) return;
    const list = el("ol", "citations");
    for (const c of citations) {
      const item = el("li", "citation");
      item.dataset.index = c.index;
      if (c.available === false) {
        const span = el("span", "cite cite-unavailable");
        span.append(el("span", "cite-num", String(c.index)), "Source no longer available to you");
        item.append(span);
      } else {
        const button = el("button", "cite");
        button.type = "button";
        button.dataset.chunkId = c.chunk_id;
        button.dataset.documentId = c.document_id;
        button.append(el("span", "cite-num", String(c.index)), el("span", "cite-title", c.title));
        item.append(button, el("span", "cite-snippet", c.snippet));
      }
      list.append(item);
    }
    bubble.querySelector(".msg-meta").before(list);
  }

  function notice(kind, text) {
    const p = el("p", "notice notice-" + kind, text);
    p.setAttribute("role", kind === "error" ? "alert" : "status");
    return p;
  }

  function addUserMessage(text) {
    const article = el("article", "msg msg-user");
    const bubble = el("div", "bubble");
    bubble.append(el("p", "msg-text", text));
    article.append(bubble);
    messages.append(article);
  }

  function addAssistantMessage() {
    const node = document.getElementById("assistant-template").content.firstElementChild.cloneNode(true);
    messages.append(node);
    return node;
  }

  function scrollToEnd() {
    messages.scrollTop = messages.scrollHeight;
  }

  function addToSidebar(id, title) {
    const list = document.getElementById("conversation-list");
    const empty = list.querySelector(".empty-list");
    if (empty) empty.remove();
    for (const a of list.querySelectorAll("a.active")) { a.classList.remove("active"); a.removeAttribute("aria-current"); }
    let link = list.querySelector('a[data-conversation-id="' + id + '"]');
    if (!link) {
      const item = el("li");
      link = el("a", "", title);
      link.href = "/c/" + id + "/";
      link.dataset.conversationId = id;
      item.append(link);
      list.prepend(item);
    } else {
      list.prepend(link.parentElement);
    }
    link.classList.add("active");
    link.setAttribute("aria-current", "page");
  }

  function finishAnswer(article, done) {
    const bubble = article.querySelector(".bubble");
    const text = bubble.querySelector(".msg-text");
    article.classList.remove("is-streaming");
    article.dataset.messageId = done.message_id;
    if (done.not_found) {
      article.classList.add("is-not-found");
      text.replaceWith(notice("info", "Nothing found: none of the documents your roles can see answer this."));
    } else {
      renderCited(text, done.answer); // authoritative: may differ from the streamed draft
    }
    if (done.fallback_used) {
      bubble.querySelector(".msg-meta").before(el("p", "note",
        "A quotation from the document: the model's own answer could not be checked against it, so none is shown."));
    }
    const meta = bubble.querySelector(".msg-meta");
    if (done.scoped_roles && done.scoped_roles.length) {
      const scope = el("span", "scope", "Scoped to ");
      for (const r of done.scoped_roles) scope.append(el("span", "chip", r));
      meta.append(scope);
    }
    const feedback = document.getElementById("feedback-template").content.firstElementChild.cloneNode(true);
    feedback.dataset.messageId = done.message_id;
    meta.append(feedback);
  }

  function failAnswer(article, detail) {
    article.classList.remove("is-streaming");
    const text = article.querySelector(".msg-text");
    text.replaceWith(notice("error", detail));
  }

  // Server-sent events from a fetch body: "event: name\ndata: json\n\n".
  async function* readEvents(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        if (data) yield { name, data: JSON.parse(data) };
      }
    }
  }

  async function ask(text) {
    const welcome = document.getElementById("welcome");
    if (welcome) welcome.remove();
    addUserMessage(text);
    const article = addAssistantMessage();
    scrollToEnd();
    const textNode = article.querySelector(".msg-text");
    let streamed = "";
    let finished = false;
    try {
      const response = await postJson("/api/v1/chat/", {
        message: text, conversation_id: conversationId ? Number(conversationId) : null, stream: true,
      });
      if (!response.ok) { failAnswer(article, await errorDetail(response)); return; }
      for await (const event of readEvents(response)) {
        if (event.name === "token") {
          streamed += event.data.text;
          textNode.textContent = streamed;
          scrollToEnd();
        } else if (event.name === "citations") {
          renderCitations(article.querySelector(".bubble"), event.data.citations);
        } else if (event.name === "done") {
          finished = true;
          finishAnswer(article, event.data);
          const isNew = conversationId !== String(event.data.conversation_id);
          conversationId = String(event.data.conversation_id);
          chat.dataset.conversationId = conversationId;
          addToSidebar(conversationId, text.length > 80 ? text.slice(0, 79) + "…" : text);
          if (isNew) history.replaceState(null, "", "/c/" + conversationId + "/");
        } else if (event.name === "error") {
          finished = true;
          failAnswer(article, event.data.detail);
        }
      }
      if (!finished) failAnswer(article, "The answer was interrupted. Please try again.");
    } catch (e) {
      failAnswer(article, "Could not reach the server. Check your connection and try again.");
    } finally {
      scrollToEnd();
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = question.value.trim();
    if (!text) return;
    question.value = "";
    autosize();
    send.disabled = true;
    question.disabled = true;
    try {
      await ask(text);
    } finally {
      send.disabled = false;
      question.disabled = false;
      question.focus();
    }
  });

  question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  function autosize() {
    question.style.height = "auto";
    question.style.height = Math.min(question.scrollHeight, 192) + "px";
  }
  question.addEventListener("input", autosize);

  // Citations: open the passage (fetched in the user's scope; 404 when no longer visible).
  async function openPassage(button) {
    const index = button.closest(".citation").dataset.index;
    document.getElementById("passage-kicker").textContent = "Source " + index;
    document.getElementById("passage-title").textContent = button.querySelector(".cite-title").textContent;
    document.getElementById("passage-location").textContent = "";
    const body = document.getElementById("passage-text");
    body.textContent = "Loading…";
    const file = document.getElementById("passage-file");
    file.hidden = true;
    if (!dialog.open) dialog.showModal();
    const response = await fetch("/api/v1/chunks/" + button.dataset.chunkId + "/", { credentials: "same-origin" });
    if (!response.ok) {
      body.textContent = response.status === 404
        ? "This passage is no longer available to you."
        : await errorDetail(response);
      return;
    }
    const passage = await response.json();
    document.getElementById("passage-title").textContent = passage.title;
    const where = [passage.heading, passage.page ? "page " + passage.page : ""].filter(Boolean).join(" · ");
    document.getElementById("passage-location").textContent = where;
    body.textContent = passage.text;
    file.href = "/api/v1/documents/" + passage.document_id + "/file/";
    file.hidden = false;
  }

  messages.addEventListener("click", async (event) => {
    const cite = event.target.closest("button.cite");
    if (cite) { openPassage(cite); return; }
    const ref = event.target.closest(".cite-ref");
    if (ref) {
      const article = ref.closest(".msg-assistant");
      const target = article.querySelector('.citation[data-index="' + ref.dataset.index + '"] button.cite');
      if (target) openPassage(target);
      return;
    }
    const fb = event.target.closest(".fb");
    if (fb) { rate(fb.closest(".feedback"), fb.dataset.rating); }
  });

  messages.addEventListener("submit", (event) => {
    const commentForm = event.target.closest(".fb-comment");
    if (!commentForm) return;
    event.preventDefault();
    const box = commentForm.closest(".feedback");
    rate(box, box.dataset.rating || "up", commentForm.elements.comment.value);
  });

  async function rate(box, rating, comment) {
    const status = box.querySelector(".fb-status");
    const body = { rating };
    if (comment !== undefined) body.comment = comment;
    const response = await postJson("/api/v1/messages/" + box.dataset.messageId + "/feedback/", body);
    if (!response.ok) { status.textContent = await errorDetail(response); return; }
    box.dataset.rating = rating;
    for (const b of box.querySelectorAll(".fb")) b.setAttribute("aria-pressed", String(b.dataset.rating === rating));
    const commentForm = box.querySelector(".fb-comment");
    if (comment === undefined) {
      commentForm.hidden = false;
      status.textContent = "Thanks!";
      commentForm.elements.comment.focus();
    } else {
      commentForm.hidden = true;
      status.textContent = "Thanks for the feedback.";
    }
  }

  // Phone widths: the conversation list slides in.
  const toggle = document.querySelector(".sidebar-toggle");
  const sidebar = document.getElementById("sidebar");
  toggle.addEventListener("click", () => {
    const open = sidebar.classList.toggle("open");
    toggle.setAttribute("aria-expanded", String(open));
  });

  for (const node of document.querySelectorAll(".msg-text[data-cited]")) renderCited(node, node.textContent.trim());
  scrollToEnd();
})();
