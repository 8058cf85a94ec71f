/*
 * The widget's two calls: `POST /chat` (SSE over fetch, abortable) and `POST /feedback`.
 *
 * What the API accepts, so the widget never sends a request it refuses: at most 20 history
 * turns, a turn of at most 8000 characters (answers are kept shorter: the model needs their
 * gist, not every quote), and a body well under MAX_CHAT_BODY_BYTES' default (256 KiB).
 */
export const LIMITS = { turns: 20, question: 2000, answer: 4000, bodyBytes: 200000, comment: 1000 };

export function historyTurn(role, content) {
  const max = role === "user" ? LIMITS.question : LIMITS.answer;
  return { role, content: content.length > max ? content.slice(0, max) : content };
}

/** The request body: the oldest turns go first while it is over the byte budget. */
export function chatBody(question, history) {
  let turns = history.slice(-LIMITS.turns);
  let body = JSON.stringify({ question, history: turns });
  while (turns.length && new TextEncoder().encode(body).length > LIMITS.bodyBytes) {
    turns = turns.slice(2);
    body = JSON.stringify({ question, history: turns });
  }
  return body;
}

function headers(config, accept) {
  const out = { "content-type": "application/json", accept };
  if (config.key) out["x-api-key"] = config.key;
  return out;
}

async function errorEvent(response) {
  const body = await response.json().catch(() => ({}));
  const error = (body && body.error) || {};
  return {
    type: "error",
    status: response.status,
    code: error.code || `http_${response.status}`,
    message: error.message || `The request failed (${response.status}).`,
    retryAfter: Number(response.headers.get("retry-after")) || null,
  };
}

/**
 * POST /chat and hand each SSE event to onEvent as it arrives; `signal` aborts the stream (the
 * server then stops the model). Rejects on network failure and abort (AbortError).
 */
export async function ask(config, question, history, onEvent, signal) {
  const response = await fetch(`${config.api}/chat`, {
    method: "POST",
    headers: headers(config, "text/event-stream"),
    body: chatBody(question, history),
    signal,
  });
  // A server configured with a smaller MAX_CHAT_BODY_BYTES (413), or stricter limits (422),
  // refuses the history before counting the request: ask again without it.
  if ((response.status === 413 || response.status === 422) && history.length) {
    return ask(config, question, [], onEvent, signal);
  }
  if (!response.ok) {
    onEvent(await errorEvent(response));
    return;
  }
  onEvent({ type: "start", request_id: response.headers.get("x-request-id") });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let data = [];
  for (;;) {
    const step = await reader.read();
    if (step.done) return;
    buffer += decoder.decode(step.value, { stream: true });
    const lines = buffer.split(/\r?\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line.startsWith("data:")) {
        data.push(line.slice(5).replace(/^ /, ""));
      } else if (line === "" && data.length) {
        const frame = data.join("\n");
        data = [];
        let event = null;
        try {
          event = JSON.parse(frame);
        } catch (e) {
          continue; // not ours
        }
        onEvent(event);
      }
    }
  }
}

/** POST /feedback; resolves to the HTTP status (0 when the network failed). */
export async function sendFeedback(config, requestId, rating, comment) {
  const body = { request_id: requestId, rating };
  if (comment) body.comment = comment.slice(0, LIMITS.comment);
  try {
    const response = await fetch(`${config.api}/feedback`, {
      method: "POST",
      headers: headers(config, "application/json"),
      body: JSON.stringify(body),
    });
    return response.status;
  } catch (e) {
    return 0;
  }
}
