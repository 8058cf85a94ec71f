/*
 * Docent chat widget: one <script> tag adds a chat button and panel to any page.
 *
 *   <script src="https://docs-bot.example.com/widget.js" defer
 *           data-api="https://docs-bot.example.com" data-title="Ask the docs"
 *           data-key="optional-public-key"></script>
 *
 * Options (data- attributes on the tag): api, key, title, mode ("floating" or "inline" with
 * target="#id"), position ("bottom-right" or "bottom-left"), theme ("auto", "light", "dark"),
 * placeholder, greeting, accent, accent-text, font, radius. The widget lives in a shadow root on
 * its host element (marked `data-docent-widget`) and adds no global of its own.
 */
import { LIMITS, ask, historyTurn, sendFeedback } from "./api.js";
import { renderAnswer, sourceName, webHost } from "./render.js";
import { loadTurns, saveTurns, storageKey } from "./store.js";
import { STYLE } from "./style.js";

const SVG = "http://www.w3.org/2000/svg";
const THUMB = "M2 9h4v12H2zM8 21V9.6L12.6 2c1.6 0 2.7 1.3 2.3 2.9L14 9h6.1c1.3 0 2.2 1.2 1.9 2.4l-2 8.1A2 2 0 0 1 18 21z";

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  if (text != null) node.textContent = text;
  return node;
}

function thumb(down) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", THUMB);
  if (down) path.setAttribute("transform", "rotate(180 12 12)");
  svg.append(path);
  return svg;
}

function readConfig(script) {
  const data = (name, fallback) => script.getAttribute(`data-${name}`) || fallback;
  return {
    api: data("api", new URL(script.src).origin).replace(/\/+$/, ""),
    key: data("key", ""),
    title: data("title", "Ask the docs"),
    mode: data("mode", "floating"),
    target: data("target", ""),
    position: data("position", "bottom-right"),
    theme: data("theme", "auto"),
    placeholder: data("placeholder", "Ask a question…"),
    greeting: data("greeting", "Ask a question about the documentation: answers cite their sources."),
    style: {
      "--docent-accent": data("accent", ""),
      "--docent-accent-text": data("accent-text", ""),
      "--docent-font": data("font", ""),
      "--docent-radius": data("radius", ""),
    },
  };
}

/** The history the API accepts, from the finished turns (stopped or failed ones are left out). */
function historyOf(turns) {
  const history = [];
  for (const turn of turns) {
    if (turn.state === "done" && turn.text) {
      history.push(historyTurn("user", turn.q), historyTurn("assistant", turn.text));
    }
  }
  return history.slice(-LIMITS.turns);
}

const FEEDBACK_NOTES = {
  204: "Thanks for the feedback.",
  404: "This answer can no longer be rated.",
  429: "Too many ratings for now: try again later.",
  0: "The feedback could not be sent.",
};

function mount(host, config) {
  const root = host.attachShadow({ mode: "open" });
  root.append(el("style", {}, STYLE));
  const floating = config.mode !== "inline";
  const key = storageKey(config.api);
  const panel = el("section", {
    class: `panel ${floating ? "floating" : "inline"}`,
    "aria-labelledby": "docent-title",
  });
  const header = el("header");
  const title = el("h2", { id: "docent-title" }, config.title);
  const fresh = el("button", { type: "button", class: "new" }, "New conversation");
  header.append(title, fresh);
  const log = el("div", {
    class: "log", role: "log", "aria-live": "polite", "aria-label": "Conversation", tabindex: "0",
  });
  const status = el("p", { class: "sr", role: "status" });
  const form = el("form", { class: "ask" });
  const label = el("label", { for: "docent-q", class: "sr" }, "Your question");
  const input = el("textarea", {
    id: "docent-q", name: "question", placeholder: config.placeholder, maxlength: String(LIMITS.question),
    required: "",
  });
  const send = el("button", { type: "submit", class: "send" }, "Ask");
  const stop = el("button", { type: "button", class: "stop", hidden: "" }, "Stop");
  form.append(label, input, send, stop);
  panel.append(header, log, status, form);

  let turns = loadTurns(key);
  let controller = null;

  if (floating) {
    const launcher = el("button", { class: "launcher", type: "button", "aria-expanded": "false" }, config.title);
    const close = el("button", { type: "button", class: "close", "aria-label": "Close" }, "×");
    header.append(close);
    panel.setAttribute("role", "dialog");
    panel.hidden = true;
    const toggle = (open) => {
      panel.hidden = !open;
      launcher.setAttribute("aria-expanded", String(open));
      if (open) input.focus();
      else launcher.focus();
    };
    launcher.addEventListener("click", () => toggle(panel.hidden));
    close.addEventListener("click", () => toggle(false));
    panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.stopPropagation();
        toggle(false);
      }
    });
    launcher.setAttribute("aria-controls", "docent-panel");
    panel.id = "docent-panel";
    root.append(launcher);
  }
  root.append(panel);

  const greeting = el("p", { class: "greeting" }, config.greeting);
  const save = () => saveTurns(key, turns);

  function showSources(view, turn) {
    const cited = turn.sources.filter((s) => turn.citations.includes(s.id));
    if (!cited.length) return;
    const list = el("ul", { class: "sources", "aria-label": "Sources" });
    for (const source of cited) {
      const item = el("li");
      item.append(el("span", { class: "id" }, source.id));
      const name = sourceName(source);
      if (webHost(source.url)) {
        item.append(el("a", {
          href: source.url, target: "_blank", rel: "noopener noreferrer", "data-source": source.id,
        }, name));
      } else {
        item.append(name);
      }
      list.append(item);
    }
    view.append(list);
  }

  function showFeedback(view, turn) {
    if (!turn.requestId) return;
    const box = el("div", { class: "feedback", role: "group", "aria-label": "Rate this answer" });
    const up = el("button", { type: "button", class: "rate up", "aria-label": "Helpful", "aria-pressed": "false" });
    const down = el("button", { type: "button", class: "rate down", "aria-label": "Not helpful", "aria-pressed": "false" });
    up.append(thumb(false));
    down.append(thumb(true));
    const comment = el("form", { class: "comment", hidden: "" });
    const commentId = `docent-c${Math.random().toString(36).slice(2, 9)}`;
    const text = el("textarea", {
      id: commentId, maxlength: String(LIMITS.comment), placeholder: "What was wrong or missing? (optional)",
    });
    comment.append(el("label", { for: commentId, class: "sr" }, "Comment (optional)"), text,
      el("button", { type: "submit" }, "Send"));
    const note = el("p", { class: "fb-note", role: "status" });
    box.append(el("span", {}, "Helpful?"), up, down, comment, note);
    const pressed = () => {
      up.setAttribute("aria-pressed", String(turn.rating === "up"));
      down.setAttribute("aria-pressed", String(turn.rating === "down"));
    };
    pressed();
    const rate = async (rating) => {
      turn.rating = rating;
      pressed();
      save();
      note.textContent = "";
      const status = await sendFeedback(config, turn.requestId, rating, "");
      box.setAttribute("data-status", String(status));
      if (status === 204) comment.hidden = false;
      else note.textContent = FEEDBACK_NOTES[status] || FEEDBACK_NOTES[0];
    };
    up.addEventListener("click", () => rate("up"));
    down.addEventListener("click", () => rate("down"));
    comment.addEventListener("submit", async (event) => {
      event.preventDefault();
      const said = text.value.trim();
      if (!said || !turn.rating) return;
      const status = await sendFeedback(config, turn.requestId, turn.rating, said);
      box.setAttribute("data-status", String(status));
      if (status === 204) comment.hidden = true;
      note.textContent = FEEDBACK_NOTES[status] || FEEDBACK_NOTES[0];
    });
    view.append(box);
  }

  function notice(view, kind, message) {
    const attrs = { class: `notice ${kind}` };
    if (kind !== "stopped") attrs.role = "alert";
    view.append(el("p", attrs, message));
  }

  /* The DOM of one turn; while streaming, `update` re-renders its answer. */
  function turnView(turn) {
    const view = el("article", { class: "turn" });
    view.append(el("p", { class: "q" }, turn.q));
    const answer = el("div", { class: "a", "data-state": turn.state || "waiting" });
    view.append(answer);
    return { view, answer };
  }

  function finish(view, answer, turn) {
    answer.setAttribute("data-state", turn.state);
    answer.removeAttribute("aria-busy");
    renderAnswer(answer, turn.text, turn.sources, false);
    if (turn.state === "done") {
      showSources(view, turn);
      showFeedback(view, turn);
    } else if (turn.state === "stopped") {
      notice(view, "stopped", turn.notice || "Stopped.");
    } else {
      notice(view, turn.limited ? "limit" : "fail", turn.notice || "The answer could not be completed.");
    }
  }

  function showAll() {
    log.replaceChildren(greeting);
    for (const turn of turns) {
      const { view, answer } = turnView(turn);
      log.append(view);
      finish(view, answer, turn);
    }
    log.scrollTop = log.scrollHeight;
  }

  function streaming(on) {
    if (!on && root.activeElement === stop) input.focus(); // Stop is going: keep focus in the form
    send.hidden = on;
    stop.hidden = !on;
  }

  fresh.addEventListener("click", () => {
    if (controller) controller.abort();
    turns = [];
    save();
    showAll();
    status.textContent = "New conversation.";
    input.focus();
  });
  stop.addEventListener("click", () => {
    if (controller) controller.abort();
    input.focus();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  log.addEventListener("click", async (event) => {
    const button = event.target.closest && event.target.closest("button.copy");
    if (!button) return;
    const code = button.parentElement.querySelector("pre").textContent;
    let copied = false;
    try {
      await navigator.clipboard.writeText(code);
      copied = true;
    } catch (e) {
      const scratch = el("textarea", { "aria-hidden": "true", style: "position:fixed;opacity:0" });
      scratch.value = code;
      root.append(scratch);
      scratch.select();
      try {
        copied = document.execCommand("copy");
      } catch (e2) {
        copied = false;
      }
      scratch.remove();
    }
    button.textContent = copied ? "Copied" : "Copy failed";
    button.setAttribute("data-copied", String(copied));
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = input.value.trim();
    if (!question || controller) return;
    input.value = "";
    const history = historyOf(turns);
    const turn = {
      q: question, text: "", state: "waiting", sources: [], citations: [], requestId: "", rating: "",
      notice: "", limited: false,
    };
    turns.push(turn);
    save();
    const { view, answer } = turnView(turn);
    answer.setAttribute("aria-busy", "true");
    log.append(view);
    log.scrollTop = log.scrollHeight;
    status.textContent = "Answering…";
    const ours = new AbortController();
    controller = ours;
    streaming(true);
    let frame = 0;
    const draw = () => {
      frame = 0;
      renderAnswer(answer, turn.text, turn.sources, true);
      log.scrollTop = log.scrollHeight;
    };
    try {
      await ask(config, question, history, (ev) => {
        if (ev.type === "start") {
          turn.requestId = ev.request_id || "";
        } else if (ev.type === "sources") {
          turn.sources = ev.sources || [];
        } else if (ev.type === "chunk") {
          turn.text += ev.content;
          turn.state = "streaming";
          answer.setAttribute("data-state", "streaming");
          if (!frame) frame = requestAnimationFrame(draw);
        } else if (ev.type === "done") {
          turn.state = "done";
          turn.citations = ev.citations || [];
          turn.requestId = ev.request_id || turn.requestId;
        } else if (ev.type === "error") {
          turn.state = "error";
          if (ev.status === 429) {
            turn.limited = true;
            const wait = ev.retryAfter ? ` Try again in ${ev.retryAfter} s.` : " Try again shortly.";
            turn.notice = `You have asked too many questions for now.${wait}`;
          } else {
            turn.notice = `The answer could not be completed: ${ev.message || "please try again."}`;
          }
        }
      }, ours.signal);
      if (turn.state !== "done" && turn.state !== "error") {
        turn.state = "error";
        turn.notice = "The answer was cut off: please ask again.";
      }
    } catch (error) {
      if (ours.signal.aborted) {
        turn.state = "stopped";
        turn.notice = "Stopped.";
      } else {
        turn.state = "error";
        turn.notice = "Docent could not be reached. Check your connection and try again.";
      }
    }
    if (frame) cancelAnimationFrame(frame);
    controller = null;
    streaming(false);
    if (!turns.includes(turn)) return; // a new conversation began meanwhile
    finish(view, answer, turn);
    status.textContent = { done: "Answer complete.", stopped: "Answer stopped." }[turn.state] || turn.notice;
    save();
    log.scrollTop = log.scrollHeight;
  });

  showAll();
  return root;
}

function start(script) {
  const config = readConfig(script);
  let host = config.mode === "inline" && config.target ? document.querySelector(config.target) : null;
  if (!host) {
    host = el("div", { id: "docent-widget" });
    config.mode = "floating";
    document.body.append(host);
  }
  if (host.shadowRoot) return;
  host.setAttribute("data-docent-widget", "");
  host.setAttribute("data-theme", config.theme);
  host.setAttribute("data-position", config.position);
  for (const [name, value] of Object.entries(config.style)) {
    if (value) host.style.setProperty(name, value);
  }
  mount(host, config);
}

const script = document.currentScript;
if (script) {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => start(script));
  else start(script);
}
