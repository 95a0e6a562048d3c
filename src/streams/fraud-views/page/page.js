// The live fraud-views page: one card per view and the alerts, redrawn from each `snapshot` server-sent
// event. Ages are computed against this browser's clock every second, so a view whose as-of stops
// moving visibly falls behind. No framework, no build step; every value goes in through textContent.
'use strict';

(function () {
  const STALE_AFTER_MS = Number(document.body.dataset.staleAfterMs) || 10000;
  const HISTORY_POINTS = 300; // per view: ~5 min at one snapshot a second
  const MAX_SERIES = 6;
  const MAX_ROWS = 10;
  const COLORS = ['#58a6ff', '#f0883e', '#3fb950', '#d2a8ff', '#ff7b72', '#79c0ff', '#e3b341'];

  let snapshot = null;
  let connected = false;
  const cards = new Map(); // view name -> { root, parts, chart, chartKeys }
  const history = new Map(); // view name -> [{ t, values: {label: [value, baseline]} }]

  const $ = (selector) => document.querySelector(selector);
  const el = (tag, attrs, text) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };

  // -- formatting -------------------------------------------------------------------------------
  const clock = (ms) => new Date(ms).toISOString().slice(11, 19);
  function duration(ms) {
    const s = Math.max(0, ms) / 1000;
    if (s < 10) return `${s.toFixed(1)} s`;
    if (s < 120) return `${Math.round(s)} s`;
    if (s < 7200) return `${Math.round(s / 60)} min`;
    if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
    return `${Math.round(s / 86400)} d`;
  }
  const isRate = (name) => /rate|ratio|share/i.test(name);
  const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;
  function metric(name, value) {
    if (typeof value === 'string' && ISO_TIME.test(value)) return clock(Date.parse(value));
    if (typeof value !== 'number') return String(value);
    if (isRate(name) && Math.abs(value) <= 1) return `${(value * 100).toFixed(value < 0.01 ? 2 : 1)}%`;
    if (Number.isInteger(value)) return value.toLocaleString('en-US');
    return value.toLocaleString('en-US', { maximumFractionDigits: Math.abs(value) < 10 ? 2 : 1 });
  }
  const keyLabel = (key) => Object.values(key).join(' · ');
  const windowLabel = (w) =>
    w.size === 'mtd'
      ? `${w.start.slice(0, 7)} mtd`
      : `${clock(Date.parse(w.start))}–${clock(Date.parse(w.end)).slice(0, 5)} ${w.size}`;

  // -- staleness --------------------------------------------------------------------------------
  function staleness(view, now) {
    if (!connected) return 'page disconnected';
    if (!snapshot.store.reachable) return 'store unreachable';
    if (view.age.asOf === null) return 'no events yet';
    const behind = now - Date.parse(view.age.asOf);
    return behind > STALE_AFTER_MS ? `${duration(behind)} behind` : null;
  }

  function ageText(view, now) {
    const a = view.age;
    const parts = [];
    if (a.asOf === null) parts.push('no events yet');
    else parts.push(`as of ${clock(Date.parse(a.asOf))} UTC`, `${duration(now - Date.parse(a.asOf))} behind`);
    parts.push(`consumer lag ${a.consumerLag === null ? '–' : a.consumerLag.toLocaleString('en-US')}`);
    if (a.processingLagMs !== null) parts.push(`processing ${duration(a.processingLagMs)}`);
    parts.push(a.windowOpen ? 'window open' : 'window closed');
    return parts.join(' · ');
  }

  function renderAges() {
    if (!snapshot) return;
    const now = Date.now();
    for (const view of snapshot.views) {
      const card = cards.get(view.name);
      if (!card) continue;
      card.parts.age.textContent = ageText(view, now);
      card.parts.age.dataset.asOf = view.age.asOf || '';
      const reason = staleness(view, now);
      card.root.dataset.stale = reason ? 'true' : 'false';
      card.parts.badge.hidden = !reason;
      card.parts.reason.textContent = reason || '';
    }
    const store = snapshot.store;
    const storeStatus = $('[data-testid=store-status]');
    storeStatus.dataset.state = store.reachable ? 'reachable' : 'unreachable';
    storeStatus.textContent = store.reachable
      ? 'store reachable'
      : `store unreachable${store.lastReadAt ? ` · last read ${duration(now - Date.parse(store.lastReadAt))} ago` : ''}`;
    storeStatus.title = store.error || '';
  }

  // -- cards ------------------------------------------------------------------------------------
  function createCard(view) {
    const root = el('section', { class: 'card', 'data-testid': 'view-card', 'data-view': view.name });
    const header = el('header');
    const title = el('h2', { 'data-testid': 'view-title' });
    const name = el('span', { class: 'name mono' });
    const badge = el('span', { class: 'badge stale', 'data-testid': 'stale-badge' }, 'STALE');
    const reason = el('span', { class: 'reason', 'data-testid': 'stale-reason' });
    badge.append(reason);
    badge.hidden = true;
    header.append(title, name, badge);
    const desc = el('p', { class: 'desc', 'data-testid': 'view-description' });
    const age = el('div', { class: 'age', 'data-testid': 'view-age' });
    const chart = el('div', { class: 'chart', 'data-testid': 'view-chart' });
    const table = el('table', { 'data-testid': 'view-rows' });
    const tableWrap = el('div', { class: 'table-wrap' });
    tableWrap.append(table);
    const foot = el('div', { class: 'foot', 'data-testid': 'view-foot' });
    root.append(header, desc, age, chart, tableWrap, foot);
    return { root, parts: { title, name, badge, reason, desc, age, chart, table, foot }, chart: null, chartKeys: '' };
  }

  function renderTable(table, view) {
    table.replaceChildren();
    const rows = view.rows.slice(0, MAX_ROWS);
    if (rows.length === 0) {
      table.append(el('caption', { class: 'empty' }, 'No rows in the current window.'));
      return;
    }
    const keys = [...new Set(rows.flatMap((r) => Object.keys(r.key)))];
    const metrics = [...new Set(rows.flatMap((r) => Object.keys(r.metrics)))].slice(0, 7);
    const head = el('tr');
    for (const k of keys) head.append(el('th', {}, k));
    head.append(el('th', {}, 'window'));
    for (const m of metrics) head.append(el('th', { class: 'n' }, m));
    const thead = el('thead');
    thead.append(head);
    const tbody = el('tbody');
    for (const row of rows) {
      const tr = el('tr', { 'data-testid': 'view-row', 'data-key': keyLabel(row.key) });
      const m = row.metrics;
      // A rate well above its baseline is what an operator looks for first.
      if (
        typeof m.declineRate === 'number' &&
        typeof m.baseline === 'number' &&
        m.declineRate > 2 * m.baseline + 0.05
      ) {
        tr.className = 'hot';
      }
      for (const k of keys) tr.append(el('td', { title: row.key[k] || '' }, row.key[k] || ''));
      tr.append(el('td', {}, windowLabel(row.window)));
      for (const name of metrics) tr.append(el('td', { class: 'n' }, name in m ? metric(name, m[name]) : ''));
      tbody.append(tr);
    }
    table.append(thead, tbody);
  }

  // -- charts -----------------------------------------------------------------------------------
  /** Which metric a view is charted by over time, if any: a rate against its baseline, or a throughput. */
  function chartSpecOf(view) {
    const has = (name) => view.rows.some((r) => typeof r.metrics[name] === 'number');
    if (has('declineRate'))
      return { metric: 'declineRate', baseline: has('baseline') ? 'baseline' : null, percent: true };
    if (has('eventsPerSecond')) return { metric: 'eventsPerSecond', baseline: null, percent: false };
    return null;
  }

  function remember(view, spec, receivedAt) {
    const t = view.age.asOf ? Date.parse(view.age.asOf) : receivedAt;
    const points = history.get(view.name) || [];
    const values = {};
    for (const row of view.rows.slice(0, MAX_SERIES)) {
      const v = row.metrics[spec.metric];
      const b = spec.baseline ? row.metrics[spec.baseline] : null;
      if (typeof v === 'number') values[keyLabel(row.key)] = [v, typeof b === 'number' ? b : null];
    }
    const last = points[points.length - 1];
    if (last && last.t === t)
      last.values = values; // a late event updated the same as-of
    else if (!last || t > last.t) points.push({ t, values });
    if (points.length > HISTORY_POINTS) points.splice(0, points.length - HISTORY_POINTS);
    history.set(view.name, points);
    return points;
  }

  function renderChart(card, view, receivedAt) {
    const spec = chartSpecOf(view);
    if (!spec || typeof uPlot === 'undefined') {
      card.parts.chart.hidden = true;
      return;
    }
    card.parts.chart.hidden = false;
    const points = remember(view, spec, receivedAt);
    const labels = [];
    for (const p of points) for (const label of Object.keys(p.values)) if (!labels.includes(label)) labels.push(label);
    const shown = labels.slice(-MAX_SERIES);
    const data = [points.map((p) => p.t / 1000)];
    const series = [{}];
    shown.forEach((label, i) => {
      const color = COLORS[i % COLORS.length];
      const fmt = (u, v) =>
        v === null || v === undefined ? '–' : spec.percent ? `${(v * 100).toFixed(1)}%` : metric('', v);
      data.push(points.map((p) => (p.values[label] ? p.values[label][0] : null)));
      series.push({ label, stroke: color, width: 1.5, value: fmt, spanGaps: true });
      if (spec.baseline) {
        data.push(points.map((p) => (p.values[label] ? p.values[label][1] : null)));
        series.push({
          label: `${label} baseline`,
          stroke: `${color}99`,
          width: 1,
          dash: [4, 4],
          value: fmt,
          spanGaps: true,
        });
      }
    });
    const keys = `${spec.metric}|${shown.join('|')}`;
    const width = Math.max(200, card.parts.chart.clientWidth || card.root.clientWidth - 24);
    if (card.chart && card.chartKeys === keys) {
      card.chart.setData(data);
      return;
    }
    if (card.chart) card.chart.destroy();
    const axis = {
      stroke: '#8792a2',
      grid: { stroke: '#222a34', width: 1 },
      ticks: { stroke: '#2a323d', width: 1 },
      font: '11px system-ui, sans-serif',
    };
    card.chart = new uPlot(
      {
        width,
        height: 150,
        series,
        legend: { show: true, live: false },
        // Times on the axis in UTC, like the as-of line (uPlot picks the tick spacing and format).
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
        cursor: { points: { size: 5 } },
        scales: {
          x: { time: true },
          y: { range: (u, min, max) => [spec.percent ? 0 : Math.min(0, min), max > 0 ? max * 1.15 : 1] },
        },
        axes: [
          // Whole seconds at least, labelled HH:MM:SS like the as-of line.
          {
            ...axis,
            space: 70,
            incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600],
            values: (u, ticks) => ticks.map((s) => clock(s * 1000)),
          },
          {
            ...axis,
            size: 48,
            values: (u, ticks) => ticks.map((v) => (spec.percent ? `${Math.round(v * 100)}%` : metric('', v))),
          },
        ],
      },
      data,
      card.parts.chart,
    );
    card.chartKeys = keys;
  }

  // -- alerts -----------------------------------------------------------------------------------
  function renderAlerts(alerts) {
    const list = $('[data-testid=alerts]');
    const newestFirst = [...alerts].sort((a, b) => (a.raisedAt < b.raisedAt ? 1 : a.raisedAt > b.raisedAt ? -1 : 0));
    list.replaceChildren(
      ...newestFirst.slice(0, 100).map((a) => {
        const li = el('li', { 'data-testid': 'alert', 'data-rule': a.rule, 'data-alert-id': a.id });
        li.append(
          el(
            'span',
            { class: 'when mono', title: `event time ${a.eventTime}` },
            `${clock(Date.parse(a.raisedAt))} UTC`,
          ),
          el('span', { class: 'rule', 'data-testid': 'alert-rule' }, a.rule),
          el('div', { class: 'message', 'data-testid': 'alert-message' }, a.message),
          el(
            'div',
            { class: 'detail mono' },
            `${Object.entries(a.key)
              .map(([k, v]) => `${k}=${v}`)
              .join(
                ' ',
              )} · ${metric(a.rule, a.value)} vs ${metric(a.rule, a.threshold)} · window ${clock(Date.parse(a.windowStart))}`,
          ),
        );
        return li;
      }),
    );
    $('[data-testid=alerts-count]').textContent = String(alerts.length);
    $('[data-testid=alerts-empty]').hidden = alerts.length > 0;
  }

  // -- a snapshot -------------------------------------------------------------------------------
  function onSnapshot(next) {
    const receivedAt = Date.now();
    snapshot = next;
    const container = $('[data-testid=views]');
    $('[data-testid=views-empty]').hidden = next.views.length > 0;
    const names = new Set(next.views.map((v) => v.name));
    for (const [name, card] of cards) {
      if (names.has(name)) continue;
      if (card.chart) card.chart.destroy();
      card.root.remove();
      cards.delete(name);
      history.delete(name);
    }
    for (const view of next.views) {
      let card = cards.get(view.name);
      if (!card) {
        card = createCard(view);
        cards.set(view.name, card);
      }
      container.append(card.root); // in the snapshot's order
      card.parts.title.textContent = view.title;
      card.parts.name.textContent = view.name;
      card.parts.desc.textContent = view.description;
      renderTable(card.parts.table, view);
      card.parts.foot.textContent = `${view.rows.length.toLocaleString('en-US')} rows · ${view.lateEvents.toLocaleString('en-US')} late events`;
      renderChart(card, view, receivedAt);
    }
    renderAlerts(next.alerts);
    $('[data-testid=generated-at]').textContent = `snapshot ${clock(Date.parse(next.generatedAt))} UTC`;
    renderAges();
  }

  // -- the event stream: reconnects after a server restart ---------------------------------------
  let retryMs = 1000;
  function setConnection(state) {
    connected = state === 'live';
    const pill = $('[data-testid=connection-status]');
    pill.dataset.state = state;
    pill.textContent = state === 'live' ? 'live' : 'reconnecting…';
    renderAges();
  }
  function connect() {
    const source = new EventSource('/events');
    source.addEventListener('snapshot', (event) => {
      retryMs = 1000;
      setConnection('live');
      onSnapshot(JSON.parse(event.data));
    });
    source.onopen = () => setConnection('live');
    source.onerror = () => {
      setConnection('reconnecting');
      // The browser retries a dropped stream by itself; one it gave up on (a 429, a proxy's error page) we reopen.
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(connect, retryMs);
        retryMs = Math.min(retryMs * 2, 10000);
      }
    };
  }

  window.addEventListener('resize', () => {
    for (const card of cards.values()) {
      if (card.chart) card.chart.setSize({ width: Math.max(200, card.parts.chart.clientWidth), height: 150 });
    }
  });
  setInterval(renderAges, 1000);
  connect();
})();
