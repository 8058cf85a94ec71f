/*
 * Docent chat widget: one <script> tag adds a chat button and panel to any page.
 *
 *   <script src="https://docs-bot.example.com/widget.js" defer
 *           data-api="https://docs-bot.example.com" data-title="Ask the docs"
 *           data-key="optional-public-key"></script>
 *
 * data-mode="inline" with data-target="#id" renders the chat into that element instead
 * (Docent's own page at / does this). No dependencies, no build step; answer text is only ever
 * inserted as text, never as HTML, and links point only at the sources' urls.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var config = {
    api: (script.getAttribute("data-api") || new URL(script.src).origin).replace(/\/+$/, ""),
    key: script.getAttribute("data-key") || "",
    title: script.getAttribute("data-title") || "Ask the docs",
    mode: script.getAttribute("data-mode") || "floating",
    target: script.getAttribute("data-target") || "",
  };

  var STYLE = [
    ":host{all:initial}",
    "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',sans-serif}",
    ".launcher{position:fixed;right:20px;bottom:20px;z-index:2147483000;border:0;border-radius:24px;",
    "padding:12px 18px;background:#3b4cca;color:#fff;font-size:15px;cursor:pointer;box-shadow:0 2px 10px #0004}",
    ".launcher:focus-visible,button:focus-visible,textarea:focus-visible{outline:3px solid #ffb000;outline-offset:2px}",
    ".panel{display:flex;flex-direction:column;background:#fff;color:#1b1b1f;font-size:15px;line-height:1.5}",
    ".floating{position:fixed;right:20px;bottom:76px;width:min(420px,calc(100vw - 40px));height:min(600px,calc(100vh - 110px));",
    "z-index:2147483000;border-radius:12px;box-shadow:0 6px 30px #0005;overflow:hidden}",
    ".inline{width:100%;min-height:70vh;border:1px solid #d0d0d8;border-radius:12px;overflow:hidden}",
    "header{display:flex;justify-content:space-between;align-items:center;padding:10px 14px;background:#3b4cca;color:#fff}",
    "header h2{font-size:16px;margin:0}",
    "header button{background:none;border:0;color:#fff;font-size:20px;cursor:pointer}",
    ".log{flex:1;overflow-y:auto;padding:12px 14px}",
    ".turn{margin:0 0 14px}",
    ".q{font-weight:600;margin:0 0 4px}",
    ".a{white-space:pre-wrap;margin:0}",
    ".sources{margin:6px 0 0;padding-left:18px;font-size:13px}",
    ".sources a,.a a{color:#3b4cca}",
    ".notice{margin:6px 0 0;padding:8px 10px;border-radius:8px;font-size:14px}",
    ".notice.limit{background:#fff4d6;color:#5c4300}",
    ".notice.fail{background:#fde2e2;color:#7a1010}",
    "form{display:flex;gap:8px;padding:10px;border-top:1px solid #e4e4ea}",
    "textarea{flex:1;resize:none;height:44px;padding:10px;border:1px solid #c4c4cc;border-radius:8px;font-size:15px}",
    "form button{padding:0 16px;border:0;border-radius:8px;background:#3b4cca;color:#fff;font-size:15px;cursor:pointer}",
    "form button[disabled]{opacity:.5;cursor:default}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}",
  ].join("");

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text != null) node.textContent = text;
    return node;
  }

  /* Answer text with [S1] markers turned into links to that source's url (text nodes only). */
  function renderAnswer(node, text, sources) {
    node.textContent = "";
    var byId = {};
    sources.forEach(function (s) { byId[s.id] = s; });
    var pattern = /\[(S\d+)\]/g, last = 0, match;
    while ((match = pattern.exec(text)) !== null) {
      node.appendChild(document.createTextNode(text.slice(last, match.index)));
      var source = byId[match[1]];
      if (source && source.url && /^https?:\/\//.test(source.url)) {
        var link = el("a", { href: source.url, target: "_blank", rel: "noopener", "data-cite": match[1] }, "[" + match[1] + "]");
        node.appendChild(link);
      } else {
        node.appendChild(document.createTextNode(match[0]));
      }
      last = pattern.lastIndex;
    }
    node.appendChild(document.createTextNode(text.slice(last)));
  }

  /*
   * What the API accepts, so the widget never sends a request it refuses: at most 20 history
   * turns, a turn of at most 8000 characters (answers are kept shorter: the model needs their
   * gist, not every quote), and a body well under MAX_CHAT_BODY_BYTES' default (256 KiB).
   */
  var LIMITS = { turns: 20, question: 2000, answer: 4000, bodyBytes: 200000 };

  function historyTurn(role, content) {
    var max = role === "user" ? LIMITS.question : LIMITS.answer;
    return { role: role, content: content.length > max ? content.slice(0, max) : content };
  }

  /* The request body: the oldest turns go first while it is over the byte budget. */
  function chatBody(question, history) {
    var turns = history.slice(-LIMITS.turns);
    var body = JSON.stringify({ question: question, history: turns });
    while (turns.length && new TextEncoder().encode(body).length > LIMITS.bodyBytes) {
      turns = turns.slice(2);
      body = JSON.stringify({ question: question, history: turns });
    }
    return body;
  }

  /* POST /chat and hand each SSE event to onEvent as it arrives. */
  function ask(question, history, onEvent) {
    var headers = { "content-type": "application/json", accept: "text/event-stream" };
    if (config.key) headers["x-api-key"] = config.key;
    return fetch(config.api + "/chat", {
      method: "POST",
      headers: headers,
      body: chatBody(question, history),
    }).then(function (response) {
      // A server configured with a smaller MAX_CHAT_BODY_BYTES (413), or stricter limits (422),
      // refuses the history before counting the request: ask again without it.
      if ((response.status === 413 || response.status === 422) && history.length) {
        return ask(question, [], onEvent);
      }
      if (!response.ok) {
        return response.json().catch(function () { return {}; }).then(function (body) {
          var error = (body && body.error) || {};
          onEvent({
            type: "error",
            status: response.status,
            code: error.code || "http_" + response.status,
            message: error.message || "The request failed (" + response.status + ").",
            retryAfter: Number(response.headers.get("retry-after")) || null,
          });
        });
      }
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function pump() {
        return reader.read().then(function (step) {
          if (step.done) return;
          buffer += decoder.decode(step.value, { stream: true });
          var lines = buffer.split(/\r?\n/);
          buffer = lines.pop();
          lines.forEach(function (line) {
            if (line.indexOf("data:") === 0) {
              try { onEvent(JSON.parse(line.slice(5))); } catch (e) { /* not ours */ }
            }
          });
          return pump();
        });
      }
      return pump();
    });
  }

  function mount(host) {
    var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
    root.appendChild(el("style", {}, STYLE));
    var floating = config.mode !== "inline";
    var panel = el("section", { class: "panel " + (floating ? "floating" : "inline"), "aria-label": config.title });
    var header = el("header");
    header.appendChild(el("h2", {}, config.title));
    var log = el("div", { class: "log", role: "log", "aria-live": "polite", "aria-relevant": "additions text" });
    var form = el("form");
    var label = el("label", { for: "docent-q", class: "sr" }, "Your question");
    var input = el("textarea", { id: "docent-q", name: "question", placeholder: "Ask a question…", maxlength: "2000", required: "" });
    var send = el("button", { type: "submit" }, "Ask");
    form.appendChild(label); form.appendChild(input); form.appendChild(send);
    panel.appendChild(header); panel.appendChild(log); panel.appendChild(form);
    var history = [];

    if (floating) {
      var launcher = el("button", { class: "launcher", type: "button", "aria-expanded": "false" }, config.title);
      var close = el("button", { type: "button", "aria-label": "Close" }, "×");
      header.appendChild(close);
      panel.hidden = true;
      var toggle = function (open) {
        panel.hidden = !open;
        launcher.setAttribute("aria-expanded", String(open));
        if (open) input.focus(); else launcher.focus();
      };
      launcher.addEventListener("click", function () { toggle(panel.hidden); });
      close.addEventListener("click", function () { toggle(false); });
      root.appendChild(launcher);
    }
    root.appendChild(panel);

    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var question = input.value.trim();
      if (!question || send.disabled) return;
      input.value = "";
      send.disabled = true;
      var turn = el("article", { class: "turn" });
      turn.appendChild(el("p", { class: "q" }, question));
      var answer = el("p", { class: "a", "data-state": "waiting" }, "…");
      turn.appendChild(answer);
      log.appendChild(turn);
      var text = "", sources = [];
      var notice = function (kind, message) {
        turn.appendChild(el("p", { class: "notice " + kind, role: "alert" }, message));
      };
      ask(question, history, function (ev) {
        if (ev.type === "sources") {
          sources = ev.sources || [];
        } else if (ev.type === "chunk") {
          text += ev.content;
          answer.setAttribute("data-state", "streaming");
          renderAnswer(answer, text, sources);
        } else if (ev.type === "done") {
          answer.setAttribute("data-state", "done");
          if (!text) answer.textContent = "";
          var cited = sources.filter(function (s) { return (ev.citations || []).indexOf(s.id) >= 0; });
          if (cited.length) {
            var list = el("ol", { class: "sources", "aria-label": "Sources" });
            cited.forEach(function (s) {
              var item = el("li");
              var name = [s.title, s.heading].filter(Boolean).join(" › ") || s.document_id;
              if (s.url && /^https?:\/\//.test(s.url)) {
                item.appendChild(el("a", { href: s.url, target: "_blank", rel: "noopener", "data-source": s.id }, name));
              } else {
                item.textContent = name;
              }
              list.appendChild(item);
            });
            turn.appendChild(list);
          }
          history.push(historyTurn("user", question), historyTurn("assistant", text || "(no answer)"));
          if (history.length > LIMITS.turns) history.splice(0, history.length - LIMITS.turns);
        } else if (ev.type === "error") {
          answer.setAttribute("data-state", "error");
          if (!text) answer.textContent = "";
          if (ev.status === 429) {
            var wait = ev.retryAfter ? " Try again in " + ev.retryAfter + " s." : " Try again shortly.";
            notice("limit", "You have asked too many questions for now." + wait);
          } else {
            notice("fail", "The answer could not be completed: " + (ev.message || "please try again."));
          }
        }
        log.scrollTop = log.scrollHeight;
      }).catch(function () {
        answer.setAttribute("data-state", "error");
        notice("fail", "Docent could not be reached. Check your connection and try again.");
      }).then(function () {
        send.disabled = false;
        input.focus();
      });
    });
    return root;
  }

  function start() {
    var host;
    if (config.mode === "inline" && config.target) {
      host = document.querySelector(config.target);
    }
    if (!host) {
      host = el("div", { id: "docent-widget" });
      document.body.appendChild(host);
    }
    window.DocentWidget = { root: mount(host), config: config };
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
