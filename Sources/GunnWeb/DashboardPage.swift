/// The dashboard page, served from the binary (no external asset: it works offline). The script
/// keeps its whole model in `window.gunnDash.model`, applies the stream's messages once per
/// animation frame, and draws the map on a canvas (docs/dashboard.md).
enum DashboardPage {
    static let html = #"""
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>gunn dashboard</title>
    <link rel="stylesheet" href="/dashboard.css">
    </head>
    <body>
    <header>
      <h1 title="gunn (群, swarm)">gunn</h1>
      <span id="conn" class="badge off" role="status" aria-live="polite">connecting…</span>
      <span id="seqinfo" aria-live="off"></span>
      <span id="mode" class="mode"></span>
      <button id="live" hidden>back to live</button>
      <form id="login" hidden>
        <label for="tok">Token (admin or observe)</label>
        <input id="tok" type="password" autocomplete="off" size="40">
        <button type="submit">Open</button>
      </form>
    </header>
    <main>
      <section id="mapbox" aria-label="World map">
        <canvas id="map" tabindex="0" aria-label="World map: arrows pan, + and - zoom, 0 fits, Escape leaves an agent's eyes"></canvas>
        <div id="eyes" class="overlay" aria-live="polite" hidden></div>
        <div id="inspect" class="overlay right" hidden></div>
      </section>
      <aside>
        <section aria-labelledby="h-agents">
          <h2 id="h-agents">Agents <span id="agentcount"></span></h2>
          <input id="agentfilter" placeholder="filter agents ( / )" aria-label="Filter agents">
          <ul id="agents" role="listbox" tabindex="0" aria-label="Agents: arrows move, Enter looks through its eyes, Escape leaves"></ul>
        </section>
        <section aria-labelledby="h-speech">
          <h2 id="h-speech">Speech</h2>
          <ol id="speech" aria-live="polite"></ol>
        </section>
        <section aria-labelledby="h-log">
          <h2 id="h-log">Log <span id="verify"></span></h2>
          <div class="filters">
            <label>kind <select id="kindfilter"><option value="">all</option></select></label>
            <label>agent <input id="logagent" size="10"></label>
          </div>
          <ol id="tail"></ol>
        </section>
        <section aria-labelledby="h-health">
          <h2 id="h-health">Health</h2>
          <div id="tree"></div>
          <div id="procs"></div>
        </section>
      </aside>
    </main>
    <script src="/dashboard.js"></script>
    </body>
    </html>
    """#

    static let style = #"""
    :root { --bg: #0e1116; --panel: #161b22; --fg: #e6edf3; --dim: #9da7b3; --accent: #58a6ff; --bad: #ff7b72; --ok: #3fb950; --warn: #d29922; }
    * { box-sizing: border-box; }
    body { margin: 0; background: var(--bg); color: var(--fg); font: 14px/1.4 system-ui, sans-serif; height: 100vh; display: flex; flex-direction: column; }
    header { display: flex; gap: 1em; align-items: center; padding: .4em 1em; background: var(--panel); border-bottom: 1px solid #30363d; }
    h1 { font-size: 1.1em; margin: 0; } h2 { font-size: 1em; margin: .2em 0; color: var(--accent); }
    .badge { padding: .1em .6em; border-radius: 1em; font-size: .85em; } .badge.on { background: #1f6f3b; } .badge.off { background: #8b2e2e; }
    .mode { color: var(--warn); }
    main { flex: 1; display: flex; min-height: 0; }
    #mapbox { flex: 1; position: relative; min-width: 0; }
    canvas { width: 100%; height: 100%; display: block; background: #0b0e13; }
    canvas:focus, ul:focus, button:focus, input:focus, select:focus, a:focus { outline: 2px solid var(--accent); outline-offset: 1px; }
    .overlay { position: absolute; left: .6em; top: .6em; background: rgba(22,27,34,.92); padding: .5em .8em; border: 1px solid #30363d; border-radius: 6px; max-width: 45%; }
    .overlay.right { left: auto; right: .6em; max-height: 60%; overflow: auto; white-space: pre-wrap; font: 12px/1.3 ui-monospace, monospace; }
    aside { width: 440px; overflow-y: auto; padding: .4em .8em; background: var(--panel); border-left: 1px solid #30363d; }
    aside section { margin-bottom: .8em; }
    ul, ol { list-style: none; margin: 0; padding: 0; }
    #agents { max-height: 180px; overflow-y: auto; border: 1px solid #30363d; }
    #agents li { padding: 0 .4em; cursor: pointer; display: flex; justify-content: space-between; font: 12px/1.6 ui-monospace, monospace; }
    #agents li[aria-selected="true"] { background: #1f3b5c; }
    #agents li.active { outline: 1px solid var(--accent); }
    #speech { max-height: 220px; overflow-y: auto; }
    #speech li { margin: .25em 0; padding: .3em .5em; border-radius: 8px; background: #21262d; }
    #speech li .who { color: var(--accent); font-weight: 600; margin-right: .4em; }
    #speech li.speaking .text::after { content: "▍"; color: var(--accent); }
    #speech li.cancelled .text { text-decoration: line-through; color: var(--dim); }
    #speech li.ended .text { color: var(--dim); font-style: italic; }
    #speech li .reason { color: var(--bad); margin-left: .4em; font-size: .9em; }
    a { color: var(--accent); }
    #tail { max-height: 260px; overflow-y: auto; font: 12px/1.5 ui-monospace, monospace; }
    #tail button { all: unset; display: block; width: 100%; cursor: pointer; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
    #tail button:hover, #tail button:focus { background: #1f3b5c; }
    #tail .seq { color: var(--dim); } #tail .kind { color: var(--warn); } #tail .sum { color: var(--dim); }
    #tail li.mark button { background: #3b2a1f; }
    .filters { display: flex; gap: 1em; margin-bottom: .3em; color: var(--dim); }
    input, select, button { background: #0d1117; color: var(--fg); border: 1px solid #30363d; border-radius: 4px; padding: .15em .4em; font: inherit; }
    .child { display: flex; gap: .6em; font: 12px/1.6 ui-monospace, monospace; }
    .state-running, .state-ready { color: var(--ok); } .state-stopped, .state-failed, .state-exited { color: var(--bad); } .state-starting, .state-backoff { color: var(--warn); }
    .proc { display: grid; grid-template-columns: 7em repeat(4, 1fr); gap: .3em; align-items: center; font-size: 12px; margin: .2em 0; }
    .proc svg { width: 100%; height: 22px; background: #0d1117; }
    .proc .v { color: var(--dim); font-size: 11px; }
    .ok { color: var(--ok); } .bad { color: var(--bad); }
    """#

    static let script = #"""
    'use strict';
    (() => {
      const $ = id => document.getElementById(id);
      const esc = s => String(s).replace(/[&<>"']/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
      const model = {seq: 0, scope: null, entities: {}, tail: [], speech: {}, agents: {}, agentOrder: [], head: 0,
                     health: null, eyes: null, selected: null, replay: null, connected: false, followError: null, hellos: 0};
      const stats = {frames: 0, messages: 0, batches: 0, applied: 0};
      const sparks = {};
      const D = window.gunnDash = {model, stats, sparks, select, openReplay, leaveReplay, zoom: s => { view.scale = s; dirty.map = true; }};
      let token = null, ws = null, queue = [], dirty = {map: true, agents: true, speech: true, tail: true, health: true, eyes: true};
      let view = {x: 0, y: 0, scale: 4, fitted: false}, active = -1, listed = [];

      // The token: from the page's fragment (#token=…, never sent to the server), kept for the tab.
      const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
      if (m) { token = decodeURIComponent(m[1]); sessionStorage.setItem('gunn-token', token); window.history.replaceState(null, '', location.pathname); }
      token = token || sessionStorage.getItem('gunn-token');
      $('login').addEventListener('submit', ev => { ev.preventDefault(); token = $('tok').value.trim(); sessionStorage.setItem('gunn-token', token); $('login').hidden = true; connect(); });

      let backoff = 200;
      function connect() {
        if (!token) { $('login').hidden = false; $('conn').textContent = 'no token'; return; }
        const url = location.origin.replace(/^http/, 'ws') + '/v1/dashboard/stream?access_token=' + encodeURIComponent(token);
        ws = new WebSocket(url, 'gunn.dashboard.v1');
        ws.onopen = () => { backoff = 200; };
        // Applied once per animation frame; in a hidden tab (no frames) at once, so nothing piles up.
        ws.onmessage = ev => {
          stats.messages++;
          if (!document.hidden) { queue.push(ev.data); return; }
          // What was queued before the tab was hidden goes first: messages are applied in order.
          if (queue.length) { const q = queue; queue = []; for (const t of q) apply(t); }
          apply(ev.data);
        };
        ws.onclose = ev => {
          model.connected = false; setConn();
          if (ev.code === 4401 || ev.code === 4403) { $('login').hidden = false; $('conn').textContent = 'token refused'; return; }
          setTimeout(connect, backoff); backoff = Math.min(backoff * 2, 2000);
        };
      }

      function setConn() {
        const c = $('conn');
        c.className = 'badge ' + (model.connected ? 'on' : 'off');
        c.textContent = model.connected ? 'live' : 'reconnecting…';
      }

      // Messages are applied once per animation frame, however many arrived since the last one.
      function apply(text) {
        const msg = JSON.parse(text);
        switch (msg.type) {
          case 'hello':
            model.hellos++; model.connected = true; model.scope = msg.scope; model.seq = msg.seq;
            model.entities = msg.entities || {}; model.tail = msg.tail || []; model.speech = {};
            for (const b of msg.speech || []) model.speech[b.agent_id + '/' + b.req_id] = b;
            model.followError = msg.follow_error || null; model.linkError = msg.link_error || null;
            if (msg.scope === 'agents') { model.agentOrder = msg.agents; for (const a of msg.agents) model.agents[a] = model.agents[a] || {agent_id: a}; }
            if (model.selected) send({select: model.selected});
            setConn(); for (const k in dirty) dirty[k] = true;
            if (!view.fitted) fit();
            break;
          case 'batch':
            stats.batches++;
            for (const id in msg.entities) { if (msg.entities[id] === null) delete model.entities[id]; else model.entities[id] = msg.entities[id]; }
            model.seq = msg.seq;
            const lastSeq = model.tail.length ? model.tail[model.tail.length - 1].seq : 0, added = msg.tail.filter(e => e.seq > lastSeq);
            if (added.length) { model.tail = model.tail.concat(added).slice(-200); dirty.tail = true; }
            model.skipped = (model.skipped || 0) + msg.skipped;
            for (const b of msg.speech) model.speech[b.agent_id + '/' + b.req_id] = b;
            // The server's bound, kept the same way: the oldest go first, a cancelled one last.
            const keys = Object.keys(model.speech);
            if (keys.length > 64) {
              keys.sort((a, b) => ((model.speech[a].state === 'cancelled') - (model.speech[b].state === 'cancelled')) || model.speech[a].order - model.speech[b].order);
              for (const k of keys.slice(0, keys.length - 64)) delete model.speech[k];
            }
            if (msg.speech.length) dirty.speech = true;
            model.followError = msg.follow_error || null; model.linkError = msg.link_error || null;
            dirty.map = true;
            break;
          case 'eyes':
            if (msg.agent_id === model.selected) { model.eyes = msg; dirty.eyes = dirty.map = dirty.speech = true; }
            break;
          case 'agents':
            model.head = msg.head;
            const seen = {};
            for (const a of msg.agents) { model.agents[a.agent_id] = a; seen[a.agent_id] = 1; }
            for (const id in model.agents) if (!seen[id] && model.scope === 'world') delete model.agents[id];
            if (model.scope === 'world') model.agentOrder = Object.keys(model.agents).sort();
            dirty.agents = true; dirty.eyes = true;
            break;
          case 'health':
            model.health = msg; record(msg); dirty.health = true;
            break;
          case 'error':
            console.warn('dashboard: ' + msg.name + ': ' + msg.message);
            break;
        }
        stats.applied++;
      }

      function send(o) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(o)); }

      // Looking through one agent's eyes (null: the whole world again).
      function select(agent) {
        model.selected = agent; model.eyes = null;
        send({select: agent});
        // Centred on the agent, zoomed so its surroundings fill the map.
        const e = agent && model.entities[agent];
        if (e && e.pos) { view.x = e.pos[0]; view.y = e.pos[1]; view.scale = Math.max(view.scale, 6); }
        dirty.map = dirty.agents = dirty.eyes = true;
        $('mode').textContent = agent ? 'through the eyes of ' + agent : '';
      }

      async function openReplay(seq) {
        let r, body;
        try {
          r = await fetch('/v1/dashboard/world?seq=' + seq, {headers: {'Authorization': 'Bearer ' + token}});
          body = await r.json();
        } catch (e) { $('mode').textContent = 'replay failed: ' + e; return; }
        if (r.status !== 200) { $('mode').textContent = 'replay refused: ' + body.name + ': ' + body.message; return; }
        model.replay = body; $('live').hidden = false;
        $('mode').textContent = 'the world as it was at seq ' + body.seq + ' (replayed from the log)';
        dirty.map = dirty.tail = true;
      }
      function leaveReplay() { model.replay = null; $('live').hidden = true; $('mode').textContent = model.selected ? 'through the eyes of ' + model.selected : ''; dirty.map = true; }
      $('live').addEventListener('click', leaveReplay);

      // Sparkline history: a minute of samples per process.
      function record(h) {
        const now = performance.now();
        for (const p in h.processes) {
          const v = h.processes[p], hist = sparks[p] = sparks[p] || {last: null, series: {rate: [], p99: [], queue: [], rss: []}};
          const count = (v.gunn_intents_total || 0) + (v.gunn_http_requests_total || 0) + (v.gunn_eventlog_appends_total || 0);
          const rate = hist.last ? Math.max(0, (count - hist.last.count) / ((now - hist.last.at) / 1000)) : 0;
          hist.last = {count, at: now};
          const p99 = 1000 * (v['gunn_intent_seconds:p99'] || v['gunn_http_request_seconds:p99'] || v['gunn_eventlog_commit_seconds:p99'] || 0);
          const push = (k, x) => { hist.series[k].push(x); if (hist.series[k].length > 60) hist.series[k].shift(); };
          push('rate', rate); push('p99', p99); push('queue', v['gunn_queue_depth{queued_items}'] || 0); push('rss', (v.gunn_process_resident_memory_bytes || 0) / 1048576);
        }
      }

      // ---- the map
      const canvas = $('map'), ctx = canvas.getContext('2d');
      function shown() {
        if (model.replay) return model.replay.entities;
        if (model.selected && model.eyes && model.eyes.view) return model.eyes.view.entities;
        if (model.selected) return {};
        return model.entities;
      }
      function fit() {
        const ids = Object.keys(model.entities);
        if (!ids.length) return;
        let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
        for (const id of ids) { const p = model.entities[id].pos; if (!p) continue; x0 = Math.min(x0, p[0]); x1 = Math.max(x1, p[0]); y0 = Math.min(y0, p[1]); y1 = Math.max(y1, p[1]); }
        if (!isFinite(x0)) return;
        const w = canvas.clientWidth || 800, h = canvas.clientHeight || 600;
        view.scale = Math.max(0.05, Math.min(40, 0.9 * Math.min(w / Math.max(1, x1 - x0), h / Math.max(1, y1 - y0))));
        view.x = (x0 + x1) / 2; view.y = (y0 + y1) / 2; view.fitted = true; dirty.map = true;
      }
      const palette = ['#58a6ff', '#3fb950', '#d29922', '#f778ba', '#a5d6ff', '#ffa657', '#bc8cff', '#7ee787'];
      const colors = {};
      const color = kind => colors[kind] || (colors[kind] = palette[Object.keys(colors).length % palette.length]);
      function draw() {
        const w = canvas.clientWidth, h = canvas.clientHeight, dpr = window.devicePixelRatio || 1;
        if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
        ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
        ctx.fillStyle = '#0b0e13'; ctx.fillRect(0, 0, w, h);
        const sx = x => (x - view.x) * view.scale + w / 2, sy = y => (y - view.y) * view.scale + h / 2;
        // A light grid every 10 world units (or 100 when zoomed out).
        const step = view.scale < 2 ? 100 : 10;
        ctx.strokeStyle = '#161b22'; ctx.lineWidth = 1; ctx.beginPath();
        const gx0 = Math.floor((view.x - w / 2 / view.scale) / step) * step, gy0 = Math.floor((view.y - h / 2 / view.scale) / step) * step;
        for (let x = gx0; sx(x) < w; x += step) { ctx.moveTo(sx(x), 0); ctx.lineTo(sx(x), h); }
        for (let y = gy0; sy(y) < h; y += step) { ctx.moveTo(0, sy(y)); ctx.lineTo(w, sy(y)); }
        ctx.stroke();
        const ents = shown();
        const eyeAt = model.selected && model.entities[model.selected] && model.entities[model.selected].pos;
        if (eyeAt && model.eyes && model.eyes.policy && model.eyes.policy.distance_limit !== undefined) {
          ctx.strokeStyle = '#58a6ff'; ctx.setLineDash([6, 4]); ctx.beginPath();
          ctx.arc(sx(eyeAt[0]), sy(eyeAt[1]), model.eyes.policy.distance_limit * view.scale, 0, 2 * Math.PI); ctx.stroke(); ctx.setLineDash([]);
        }
        const r = Math.max(2, Math.min(8, view.scale * 0.8));
        const byKind = {};
        for (const id in ents) { const e = ents[id]; if (!e.pos) continue; (byKind[e.kind || 'entity'] = byKind[e.kind || 'entity'] || []).push([id, e]); }
        for (const kind in byKind) {
          ctx.fillStyle = color(kind); ctx.beginPath();
          for (const [id, e] of byKind[kind]) {
            const x = sx(e.pos[0]), y = sy(e.pos[1]);
            if (x < -10 || y < -10 || x > w + 10 || y > h + 10) continue;
            if (kind === 'agent') { ctx.moveTo(x + r, y); ctx.arc(x, y, r, 0, 2 * Math.PI); } else ctx.rect(x - r, y - r, 2 * r, 2 * r);
          }
          ctx.fill();
        }
        if (model.selected && ents[model.selected] && ents[model.selected].pos) {
          const p = ents[model.selected].pos; ctx.strokeStyle = '#ffffff'; ctx.lineWidth = 2; ctx.beginPath(); ctx.arc(sx(p[0]), sy(p[1]), r + 4, 0, 2 * Math.PI); ctx.stroke();
        }
        // Live speech beside its speaker: the two newest of each, the newest first, moved up
        // until it overlaps no other bubble.
        ctx.font = '12px system-ui, sans-serif';
        const perAgent = {}, placed = [];
        const bubbles = Object.values(model.speech).sort((a, b) => b.order - a.order).filter(b => (perAgent[b.agent_id] = (perAgent[b.agent_id] || 0) + 1) <= 2).slice(0, 24);
        for (const b of bubbles) {
          const e = ents[b.agent_id]; if (!e || !e.pos) continue;
          const text = (b.text.length > 48 ? '…' + b.text.slice(-47) : b.text) || '…';
          const tw = ctx.measureText(text).width, x = sx(e.pos[0]) + 8;
          let y = sy(e.pos[1]) - 10;
          for (let k = 0; k < 8 && placed.some(p => x < p[0] + p[2] && p[0] < x + tw + 8 && y - 13 < p[1] + 17 && p[1] < y + 4); k++) y -= 19;
          placed.push([x - 4, y - 13, tw + 8]);
          ctx.fillStyle = b.state === 'cancelled' ? 'rgba(139,46,46,.9)' : 'rgba(33,38,45,.92)'; ctx.fillRect(x - 4, y - 13, tw + 8, 17);
          ctx.fillStyle = b.state === 'cancelled' ? '#c9d1d9' : '#e6edf3'; ctx.fillText(text, x, y);
          if (b.state === 'cancelled') { ctx.strokeStyle = '#ff7b72'; ctx.beginPath(); ctx.moveTo(x, y - 4); ctx.lineTo(x + tw, y - 4); ctx.stroke(); }
        }
      }

      // Pan (drag, arrows), zoom (wheel, + and -), fit (0); a click picks the nearest entity.
      let drag = null;
      canvas.addEventListener('mousedown', ev => { drag = {x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y, moved: false}; });
      window.addEventListener('mousemove', ev => { if (!drag) return; const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y; if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true; view.x = drag.vx - dx / view.scale; view.y = drag.vy - dy / view.scale; dirty.map = true; });
      window.addEventListener('mouseup', ev => { if (drag && !drag.moved) pick(ev); drag = null; });
      canvas.addEventListener('wheel', ev => { ev.preventDefault(); view.scale = Math.max(0.05, Math.min(80, view.scale * (ev.deltaY < 0 ? 1.2 : 1 / 1.2))); dirty.map = true; }, {passive: false});
      canvas.addEventListener('keydown', ev => {
        const d = 40 / view.scale;
        if (ev.key === 'ArrowLeft') view.x -= d; else if (ev.key === 'ArrowRight') view.x += d;
        else if (ev.key === 'ArrowUp') view.y -= d; else if (ev.key === 'ArrowDown') view.y += d;
        else if (ev.key === '+' || ev.key === '=') view.scale *= 1.25; else if (ev.key === '-') view.scale /= 1.25;
        else if (ev.key === '0') fit(); else if (ev.key === 'Escape') { select(null); leaveReplay(); } else return;
        ev.preventDefault(); dirty.map = true;
      });
      function pick(ev) {
        const rect = canvas.getBoundingClientRect(), w = canvas.clientWidth, h = canvas.clientHeight;
        const wx = (ev.clientX - rect.left - w / 2) / view.scale + view.x, wy = (ev.clientY - rect.top - h / 2) / view.scale + view.y;
        let best = null, bd = 12 / view.scale;
        const ents = shown();
        for (const id in ents) { const p = ents[id].pos; if (!p) continue; const d = Math.hypot(p[0] - wx, p[1] - wy); if (d < bd) { bd = d; best = id; } }
        const box = $('inspect');
        if (!best) { box.hidden = true; return; }
        box.hidden = false; box.textContent = best + '\n' + JSON.stringify(ents[best], null, 1);
        if (model.agents[best] && !model.replay) select(best);
      }

      // ---- the side panels
      function filtered() { const f = $('agentfilter').value.trim(); return model.agentOrder.filter(a => !f || a.includes(f)); }
      function renderAgents() {
        listed = filtered();
        const rows = listed.slice(0, 200).map((id, i) => {
          const a = model.agents[id] || {};
          return '<li role="option" id="ag-' + i + '" data-agent="' + esc(id) + '" aria-selected="' + (id === model.selected) + '"' + (i === active ? ' class="active"' : '') + '>' +
            '<span>' + esc(id) + '</span><span>q' + (a.queue_depth || 0) + ' t' + (a.tokens || 0) + ' ✕' + (a.cancellations || 0) + '</span></li>';
        });
        $('agents').innerHTML = rows.join('');
        $('agentcount').textContent = '(' + (listed.length > 200 ? '200 of ' : '') + listed.length + ')';
        if (active >= 0) $('agents').setAttribute('aria-activedescendant', 'ag-' + active);
      }
      $('agents').addEventListener('click', ev => { const li = ev.target.closest('li'); if (li) select(li.dataset.agent === model.selected ? null : li.dataset.agent); });
      $('agents').addEventListener('keydown', ev => {
        listed = filtered();
        const n = Math.min(listed.length, 200);
        if (ev.key === 'ArrowDown') active = Math.min(n - 1, active + 1);
        else if (ev.key === 'ArrowUp') active = Math.max(0, active - 1);
        else if (ev.key === 'Enter' && active >= 0 && listed[active] !== undefined) select(listed[active]);
        else if (ev.key === 'Escape') select(null);
        else return;
        ev.preventDefault(); dirty.agents = true;
        const li = document.getElementById('ag-' + active); if (li) li.scrollIntoView({block: 'nearest'});
      });
      $('agentfilter').addEventListener('input', () => { active = -1; dirty.agents = true; });
      document.addEventListener('keydown', ev => { if (ev.key === '/' && document.activeElement.tagName !== 'INPUT') { ev.preventDefault(); $('agentfilter').focus(); } });

      function renderEyes() {
        const box = $('eyes');
        if (!model.selected) { box.hidden = true; return; }
        box.hidden = false;
        const e = model.eyes, a = model.agents[model.selected] || {};
        if (!e) { box.textContent = 'waiting for the eyes of ' + model.selected + '…'; return; }
        if (!e.known) { box.textContent = model.selected + ': its observation policy is not known yet'; return; }
        const n = Object.keys(e.view.entities).length, head = Math.max(model.head, model.seq), pending = e.pending_observations || 0;
        box.innerHTML = '<strong>' + esc(model.selected) + '</strong> sees ' + n + ' entities' +
          '<br>view_seq ' + (e.view_seq ?? '?') + ' · its last observation came at global_seq ' + (e.view_global_seq ?? '?') + ' of ' + head +
          ' · ' + (pending ? pending + ' observations pending: it is behind' : 'nothing pending: its view is current') +
          '<br>intents queued ' + (e.queue_depth ?? 0) + ' · live generations ' + (a.active_generations || 0) +
          '<br>policy ' + esc(JSON.stringify(e.policy));
      }

      function renderSpeech() {
        // The newest thirty, and every cancellation still held: interruptions stay in sight.
        // Through an agent's eyes, only the speech of what it sees.
        const seen = model.selected && model.eyes && model.eyes.view ? model.eyes.view.entities : null;
        const all = Object.values(model.speech).filter(b => !seen || seen[b.agent_id]).sort((a, b) => b.order - a.order);
        const items = all.filter((b, i) => i < 30 || b.state === 'cancelled');
        $('speech').innerHTML = items.map(b => {
          let reason = '';
          if (b.state === 'cancelled') {
            reason = b.stale_seq ? '<span class="reason">cancelled: <a href="#" data-seq="' + b.stale_seq + '">' + esc(b.reason) + '</a></span>' : '<span class="reason">cancelled: ' + esc(b.reason) + '</span>';
          }
          return '<li class="' + esc(b.state) + '" data-key="' + esc(b.agent_id + '/' + b.req_id) + '"><span class="who">' + esc(b.agent_id) + '</span><span class="text">' + esc(b.text) + '</span>' + reason + '</li>';
        }).join('');
      }
      $('speech').addEventListener('click', ev => { const a = ev.target.closest('a[data-seq]'); if (a) { ev.preventDefault(); model.mark = +a.dataset.seq; openReplay(+a.dataset.seq); } });

      const kinds = new Set();
      function renderTail() {
        const kf = $('kindfilter').value, af = $('logagent').value.trim();
        for (const e of model.tail) if (!kinds.has(e.kind)) { kinds.add(e.kind); const o = document.createElement('option'); o.value = o.textContent = e.kind; $('kindfilter').appendChild(o); }
        const rows = [];
        for (let i = model.tail.length - 1; i >= 0 && rows.length < 100; i--) {
          const e = model.tail[i];
          if (kf && e.kind !== kf) continue;
          if (af && !e.agent_id.includes(af)) continue;
          rows.push('<li' + (e.seq === model.mark ? ' class="mark"' : '') + '><button data-seq="' + e.seq + '" title="see the world at seq ' + e.seq + '"><span class="seq">' + e.seq + '</span> <span class="kind">' + esc(e.kind) + '</span> ' +
                    esc(e.agent_id || '-') + ' <span class="sum">' + esc(e.checksum) + ' ' + esc(e.payload) + '</span></button></li>');
        }
        $('tail').innerHTML = rows.join('');
        const v = $('verify');
        v.className = model.followError || model.linkError ? 'bad' : 'ok';
        v.textContent = model.followError ? '✕ ' + model.followError : model.linkError ? '✕ the log writer refused: ' + model.linkError : '✓ chain verified to ' + model.seq;
      }
      $('tail').addEventListener('click', ev => { const b = ev.target.closest('button[data-seq]'); if (b) { model.mark = +b.dataset.seq; openReplay(+b.dataset.seq); } });
      $('kindfilter').addEventListener('change', () => { dirty.tail = true; });
      $('logagent').addEventListener('input', () => { dirty.tail = true; });

      function spark(values, label, unit) {
        const max = Math.max(1e-9, ...values), n = values.length;
        const pts = values.map((v, i) => (n < 2 ? 0 : (i / (n - 1)) * 100).toFixed(1) + ',' + (20 - 18 * v / max).toFixed(1)).join(' ');
        const last = n ? values[n - 1] : 0;
        return '<div><svg viewBox="0 0 100 22" preserveAspectRatio="none" role="img" aria-label="' + label + '"><polyline fill="none" stroke="#58a6ff" stroke-width="1.5" points="' + pts + '"/></svg>' +
               '<div class="v">' + label + ' ' + (last >= 100 ? last.toFixed(0) : last.toFixed(2)) + unit + '</div></div>';
      }
      function renderHealth() {
        const h = model.health; if (!h) return;
        const kids = h.children.map(c => '<div class="child" data-child="' + esc(c.name) + '" data-state="' + esc(c.state) + '" data-restarts="' + c.restarts + '">' +
          '<span>' + esc(c.name) + '</span><span class="state-' + esc(c.state) + '">' + esc(c.state) + '</span><span>restarts ' + c.restarts + '</span><span>pid ' + c.pid + '</span>' +
          (c.last_exit ? '<span>last exit: ' + esc(c.last_exit) + '</span>' : '') + '</div>');
        const br = h.breakers.map(b => '<div class="child"><span>breaker ' + esc(b.link) + '</span><span class="' + (b.state === 'closed' ? 'ok' : 'bad') + '">' + esc(b.state) + '</span></div>');
        $('tree').innerHTML = (h.supervised ? '<div class="child"><strong>supervisor</strong></div>' : '<div class="child">no supervisor</div>') + kids.join('') + br.join('') +
          (h.orchestrator ? '' : '<div class="child bad">the orchestrator does not answer</div>');
        $('procs').innerHTML = Object.keys(sparks).sort().map(p => {
          const s = sparks[p].series, up = h.up[p];
          return '<div class="proc"><span class="' + (up === false ? 'bad' : '') + '">' + esc(p) + '</span>' + spark(s.rate, 'req/s', '') + spark(s.p99, 'p99', ' ms') + spark(s.queue, 'queue', '') + spark(s.rss, 'RSS', ' MiB') + '</div>';
        }).join('');
      }

      let lastPanels = 0;
      function frame(now) {
        stats.frames++;
        // The next frame is asked for first: one bad message or drawing error never stops the page.
        requestAnimationFrame(frame);
        if (queue.length) { const q = queue; queue = []; for (const t of q) { try { apply(t); } catch (e) { console.warn('dashboard: ' + e); } } }
        if (dirty.map) { draw(); dirty.map = false; }
        if (dirty.eyes) { renderEyes(); dirty.eyes = false; }
        // The lists are rebuilt at most four times a second: the map keeps the frame rate.
        if (now - lastPanels > 250) {
          lastPanels = now;
          if (dirty.agents) { renderAgents(); dirty.agents = false; }
          if (dirty.speech) { renderSpeech(); dirty.speech = false; }
          if (dirty.tail) { renderTail(); dirty.tail = false; }
          if (dirty.health) { renderHealth(); dirty.health = false; }
          $('seqinfo').textContent = 'seq ' + model.seq + ' · ' + Object.keys(model.entities).length + ' entities' + (model.skipped ? ' · ' + model.skipped + ' entries not listed (over 100 a batch)' : '');
        }
      }
      window.addEventListener('resize', () => { dirty.map = true; });
      requestAnimationFrame(frame);
      connect();
    })();
    """#
}
