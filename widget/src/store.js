/*
 * The conversation in sessionStorage: it survives navigations on the same site (same origin,
 * same tab) and ends with the tab. Storage can be missing, full or forbidden (sandboxed frames,
 * privacy modes): the widget then just forgets.
 */
const MAX_TURNS = 20;
const MAX_TEXT = 20000;

export function storageKey(api) {
  return `docent-widget:${api}`;
}

function storage() {
  try {
    return window.sessionStorage;
  } catch (e) {
    return null;
  }
}

const text = (value, max) => (typeof value === "string" ? value.slice(0, max) : "");

/* Only the fields the widget shows, re-checked: the stored value is the page's, not ours. */
function cleanTurn(turn) {
  if (!turn || typeof turn !== "object") return null;
  const sources = Array.isArray(turn.sources) ? turn.sources : [];
  return {
    q: text(turn.q, 2000),
    text: text(turn.text, MAX_TEXT),
    state: ["done", "stopped", "error"].includes(turn.state) ? turn.state : "stopped",
    notice: text(turn.notice, 300),
    limited: turn.limited === true,
    requestId: text(turn.requestId, 200),
    rating: turn.rating === "up" || turn.rating === "down" ? turn.rating : "",
    citations: Array.isArray(turn.citations) ? turn.citations.filter((c) => typeof c === "string") : [],
    sources: sources.slice(0, 20).map((s) => ({
      id: text(s && s.id, 20),
      title: text(s && s.title, 300),
      heading: text(s && s.heading, 300),
      url: text(s && s.url, 2000),
      document_id: text(s && s.document_id, 512),
    })),
  };
}

export function loadTurns(key) {
  const store = storage();
  if (!store) return [];
  try {
    const value = JSON.parse(store.getItem(key) || "[]");
    return Array.isArray(value) ? value.map(cleanTurn).filter((t) => t && t.q) : [];
  } catch (e) {
    return [];
  }
}

export function saveTurns(key, turns) {
  const store = storage();
  if (!store) return;
  let kept = turns.slice(-MAX_TURNS).map(cleanTurn);
  while (kept.length) {
    try {
      store.setItem(key, JSON.stringify(kept));
      return;
    } catch (e) {
      kept = kept.slice(1); // over the quota: the oldest turns go first
    }
  }
  try {
    store.removeItem(key);
  } catch (e) {
    /* nothing to forget */
  }
}
