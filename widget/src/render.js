/*
 * Answer text to safe DOM: markdown (marked) -> HTML -> DOMPurify with a short allow-list ->
 * citations as links -> merged into the live answer block by block, so finished blocks are
 * never rebuilt while the answer streams (no flicker, no lost selection or copy button).
 *
 * What an answer may contain is decided here, not by the server: no script, no event handler,
 * no style, no image (alt text stays), no form; links only over http(s) to the hosts of the
 * answer's own sources, anything else is unwrapped to its text.
 */
import DOMPurify from "dompurify";
import { Marked } from "marked";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);

const markdown = new Marked({
  gfm: true,
  async: false,
  renderer: {
    // An image is never fetched: not even a tracking pixel on an allowed host. Its alt text stays.
    image: ({ text }) => escapeHtml(text || ""),
  },
});

const PURIFY = {
  ALLOWED_TAGS: [
    "a", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "i", "kbd", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody", "td",
    "th", "thead", "tr", "ul",
  ],
  ALLOWED_ATTR: ["href", "title", "align", "start"],
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  ALLOWED_URI_REGEXP: /^https?:\/\//i,
  RETURN_DOM_FRAGMENT: true,
};

let allowedHosts = new Set();

/** The host of an absolute http(s) URL without credentials, else null. */
export function webHost(href) {
  if (typeof href !== "string" || !/^https?:\/\//i.test(href.trim())) return null;
  try {
    const url = new URL(href.trim());
    if (url.username || url.password) return null;
    return url.protocol === "http:" || url.protocol === "https:" ? url.host.toLowerCase() : null;
  } catch (e) {
    return null;
  }
}

/** Whether a link may stay: http(s) to one of the answer's source hosts. */
export function allowedLink(href, hosts) {
  const host = webHost(href);
  return host !== null && hosts.has(host);
}

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A" && !allowedLink(node.getAttribute("href"), allowedHosts)) {
    node.removeAttribute("href");
  }
});

/** The hosts an answer may link to: those of its sources' urls. */
export function sourceHosts(sources) {
  const hosts = new Set();
  for (const source of sources || []) {
    const host = webHost(source && source.url);
    if (host) hosts.add(host);
  }
  return hosts;
}

/** A source's label without markdown or `{ #anchor }` attribute lists. */
export function cleanLabel(text) {
  return String(text || "")
    .replace(/\s*\{[^{}]*\}\s*$/, "")
    .replace(/[`*_]+/g, "")
    .replace(/\s+/g, " ")
    .trim();
}

export function sourceName(source) {
  const parts = [cleanLabel(source.title), cleanLabel(source.heading)].filter(Boolean);
  const unique = parts.filter((part, i) => parts.indexOf(part) === i);
  return unique.join(" › ") || cleanLabel(source.document_id) || source.id;
}

/*
 * Mid-stream, the text is cut before a construct that is not finished yet, so it never shows
 * as raw syntax first and as markup a moment later: a table until its delimiter row arrived, an
 * unclosed code span, `**`, link or tag. Inside an open code fence the text is shown as is
 * (marked closes the fence at the end).
 */
const DELIMITER_ROW = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

export function streamingText(text) {
  const fences = (text.match(/^ {0,3}(```|~~~)/gm) || []).length;
  if (fences % 2 === 1) return text;
  const gap = text.lastIndexOf("\n\n");
  const blockStart = gap < 0 ? 0 : gap + 2;
  const block = text.slice(blockStart);
  const lines = block.split("\n");
  if (/^\s*\|/.test(lines[0])) {
    // The delimiter row counts once its line is finished (a partial one changes the columns).
    const done = lines.slice(0, -1);
    if (!done.some((line) => DELIMITER_ROW.test(line) && line.includes("-"))) {
      return text.slice(0, blockStart);
    }
    const last = text.lastIndexOf("\n") + 1;
    return last > blockStart ? text.slice(0, last) : text.slice(0, blockStart);
  }
  let cut = block.length;
  const lastLine = block.slice(block.lastIndexOf("\n") + 1);
  if (/^ {0,3}[`~]/.test(lastLine)) cut = block.length - lastLine.length;
  const ticks = (block.match(/`/g) || []).length;
  if (ticks % 2 === 1) cut = Math.min(cut, block.lastIndexOf("`"));
  const code = block.slice(0, cut).replace(/`[^`]*`/g, (m) => " ".repeat(m.length));
  const strong = code.split("**").length - 1;
  if (strong % 2 === 1) cut = Math.min(cut, code.lastIndexOf("**"));
  const open = code.lastIndexOf("[");
  if (open >= 0 && code.indexOf("]", open) < 0) cut = Math.min(cut, open);
  const target = code.lastIndexOf("](");
  if (target >= 0 && code.indexOf(")", target) < 0) {
    cut = Math.min(cut, Math.max(code.lastIndexOf("[", target), 0));
  }
  const tag = code.lastIndexOf("<");
  if (tag >= 0 && code.indexOf(">", tag) < 0) cut = Math.min(cut, tag);
  return text.slice(0, blockStart + cut).replace(/[!\\]$/, "");
}

const CITATION = /\[(S\d+)\]/g;

/* `[S1]` in text (outside code and links) becomes a link to that source's section. */
function linkCitations(fragment, byId) {
  const walker = document.createTreeWalker(fragment, NodeFilter.SHOW_TEXT);
  const texts = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (CITATION.test(node.nodeValue) && !node.parentElement?.closest("code,pre,a")) {
      texts.push(node);
    }
    CITATION.lastIndex = 0;
  }
  for (const node of texts) {
    const text = node.nodeValue;
    const parts = document.createDocumentFragment();
    let last = 0;
    for (const match of text.matchAll(CITATION)) {
      parts.append(text.slice(last, match.index));
      const source = byId[match[1]];
      if (source && allowedLink(source.url, allowedHosts)) {
        const link = document.createElement("a");
        link.className = "cite";
        link.href = source.url;
        link.setAttribute("data-cite", match[1]);
        link.title = sourceName(source);
        link.textContent = match[1];
        parts.append(link);
      } else {
        parts.append(match[0]);
      }
      last = match.index + match[0].length;
    }
    parts.append(text.slice(last));
    node.replaceWith(parts);
  }
}

/** Markdown to a sanitised fragment: links only to `sources`' hosts, citations linked. */
export function renderMarkdown(text, sources) {
  allowedHosts = sourceHosts(sources);
  const byId = {};
  for (const source of sources || []) byId[source.id] = source;
  const fragment = DOMPurify.sanitize(markdown.parse(text), PURIFY);
  for (const link of [...fragment.querySelectorAll("a")]) {
    if (!link.hasAttribute("href")) link.replaceWith(...link.childNodes);
  }
  linkCitations(fragment, byId);
  for (const link of fragment.querySelectorAll("a[href]")) {
    link.target = "_blank";
    link.rel = "noopener noreferrer nofollow";
  }
  return fragment;
}

/* The widget's own controls around a rendered block: a copy button on code, a scroller on tables. */
function decorate(node) {
  if (node.nodeType !== 1) return node;
  let result = node;
  for (const pre of node.matches("pre") ? [node] : [...node.querySelectorAll("pre")]) {
    const box = document.createElement("div");
    box.className = "code";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy code");
    if (pre === node) result = box;
    else pre.replaceWith(box);
    box.append(button, pre);
  }
  for (const table of node.matches("table") ? [node] : [...node.querySelectorAll("table")]) {
    const box = document.createElement("div");
    box.className = "table";
    box.tabIndex = 0;
    box.setAttribute("role", "region");
    box.setAttribute("aria-label", "Table");
    if (table === node) result = box;
    else table.replaceWith(box);
    box.append(table);
  }
  return result;
}

const rendered = new WeakMap();

/**
 * Make `target`'s children match the fragment's, keeping each live block whose rendering did
 * not change: while an answer streams only its last block or two are replaced.
 */
export function morph(target, fragment) {
  const incoming = [...fragment.childNodes];
  incoming.forEach((node, i) => {
    const key = node.nodeType === 1 ? node.outerHTML : `${node.nodeType}:${node.nodeValue}`;
    const live = target.childNodes[i];
    if (live && rendered.get(live) === key) return;
    const fresh = decorate(node);
    rendered.set(fresh, key);
    if (live) live.replaceWith(fresh);
    else target.append(fresh);
  });
  while (target.childNodes.length > incoming.length) target.lastChild.remove();
}

/** Render answer text into `target`; `streaming` holds back unfinished constructs. */
export function renderAnswer(target, text, sources, streaming) {
  morph(target, renderMarkdown(streaming ? streamingText(text) : text, sources));
}
