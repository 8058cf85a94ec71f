// The insights page: the admin key lives in this closure only (never storage, never the URL).
(function () {
  'use strict';
  let key = null;
  const $ = (id) => document.getElementById(id);
  const form = $('unlock');
  const status = $('status');

  function say(text, error) {
    status.textContent = text;
    status.classList.toggle('error', Boolean(error));
  }

  function item(list, parts) {
    const li = document.createElement('li');
    for (const part of parts) li.append(part);
    list.append(li);
  }

  function counted(text, count, unit) {
    const span = document.createElement('span');
    span.className = 'count';
    span.textContent = ` (${count} ${unit}${count === 1 ? '' : 's'})`;
    return [text, span];
  }

  function empty(list, text) {
    if (!list.children.length) item(list, [text]);
  }

  function pageLink(page) {
    if (!page.url || !/^https?:\/\//i.test(page.url)) return page.title;
    const a = document.createElement('a');
    a.href = page.url;
    a.rel = 'noopener noreferrer';
    a.textContent = page.title;
    return a;
  }

  function render(data) {
    const t = data.totals;
    $('period').textContent = `${data.from} to ${data.to} (UTC); kept ${data.retention_days} days.`;
    $('total-questions').textContent = String(t.questions);
    $('answered-share').textContent =
      t.answered_share === null ? '–' : `${Math.round(t.answered_share * 100)}%`;
    $('total-unanswered').textContent = String(t.unanswered);
    $('total-up').textContent = String(t.up);
    $('total-down').textContent = String(t.down);
    $('texts-note').hidden = data.texts;

    const body = $('per-day').tBodies[0];
    body.replaceChildren();
    for (const day of [...data.per_day].reverse()) {
      const row = body.insertRow();
      const head = document.createElement('th');
      head.scope = 'row';
      head.textContent = day.day;
      row.append(head);
      for (const name of ['questions', 'answered', 'up', 'down']) {
        const cell = row.insertCell();
        cell.className = 'n';
        cell.textContent = String(day[name]);
      }
    }

    const noTexts = 'Not kept (INSIGHTS=off).';
    for (const [id, rows] of [['top-questions', data.top_questions], ['gaps', data.unanswered_questions]]) {
      const list = $(id);
      list.replaceChildren();
      for (const q of rows) item(list, counted(q.question, q.count, 'time'));
      empty(list, data.texts ? 'None in this period.' : noTexts);
    }

    const down = $('rated-down');
    down.replaceChildren();
    for (const d of data.rated_down) {
      const parts = [data.texts ? (d.question || '(question not kept)') : `Answer ${d.request_id}`];
      const when = document.createElement('span');
      when.className = 'count';
      when.textContent = ` (${d.day})`;
      parts.push(when);
      if (d.comment) {
        const quote = document.createElement('blockquote');
        quote.textContent = d.comment;
        parts.push(quote);
      }
      item(down, parts);
    }
    empty(down, 'None in this period.');

    for (const [id, rows] of [['most-cited', data.most_cited_pages], ['least-cited', data.least_cited_pages]]) {
      const list = $(id);
      list.replaceChildren();
      for (const p of rows) item(list, counted(pageLink(p), p.citations, 'citation'));
      empty(list, 'No page cited in this period.');
    }
    $('report').hidden = false;
  }

  async function call(method, path) {
    const response = await fetch(path, {
      method,
      headers: { 'X-API-Key': key, Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
    });
    if (response.status === 401 || response.status === 403) {
      key = null;
      throw new Error(response.status === 401 ? 'The key was refused.' : 'This key is not an admin key.');
    }
    if (!response.ok) {
      let message = `The server answered ${response.status}.`;
      try { message = (await response.json()).error.message || message; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    return response.status === 204 ? null : response.json();
  }

  async function load(focus) {
    say('Loading…');
    try {
      const data = await call('GET', `/insights?days=${encodeURIComponent($('days').value)}`);
      render(data);
      say(`Insights for the last ${data.days} day${data.days === 1 ? '' : 's'}: ${data.totals.questions} questions.`);
      if (focus) $('report-title').focus();
    } catch (error) {
      $('report').hidden = true;
      say(error.message, true);
      $('key').focus();
    }
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const typed = $('key').value.trim();
    if (typed) key = typed;
    $('key').value = '';  // held in memory only from here on
    if (!key) { say('Type the admin key first.', true); return; }
    load(true);
  });

  $('erase').addEventListener('click', async () => {
    if (!key) return;
    if (!window.confirm('Erase every recorded question, rating, comment and count?')) return;
    try {
      await call('DELETE', '/insights');
      say('Insights erased.');
      await load(false);
    } catch (error) {
      say(error.message, true);
    }
  });
})();
