// The berth console: one page, native ES modules, Preact + htm (web-ui/vendor), talking to
// the agent's own /v1 API with the session cookie. No build step: what is here is what runs.
import { html, render, useState, useEffect, useRef, useCallback } from './vendor/preact-htm.js';
// uPlot (charts) is loaded by the metrics page only, when it first draws.
let uPlotModule = null;
const loadUPlot = () => (uPlotModule ||= import('./vendor/uplot.js').then((m) => m.default));

// ---------- API ----------
let onSignedOut = () => {};
// Who the console is signed in as (GET /v1/session): the role decides which actions it
// offers; the API refuses the others with 403 anyway.
let me = { name: '', role: 'viewer' };
const RANK = { viewer: 0, operator: 1, admin: 2 };
const may = (role) => (RANK[me.role] ?? 0) >= RANK[role];

async function api(method, path, body) {
  const opts = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (r.status === 401 && path !== '/v1/session') onSignedOut();
  if (!r.ok) throw new Error((data && data.error) || `${method} ${path}: ${r.status}`);
  return data;
}

const get = (p) => api('GET', p);
const enc = encodeURIComponent;

// Reads an NDJSON stream (logs -f) until aborted, calling `each` per object.
async function ndjson(path, signal, each) {
  const r = await fetch(path, { credentials: 'same-origin', signal });
  if (!r.ok) {
    let e = `${r.status}`;
    try { e = (await r.json()).error; } catch { /* keep the status */ }
    throw new Error(e);
  }
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line) { try { each(JSON.parse(line)); } catch { /* a partial line */ } }
    }
  }
}

// The page's one live stream: the event log, long-polled (the agent holds each request
// until an event comes, up to 25 s). `on` gets each new event.
function useEvents(app, on) {
  const cb = useRef(on);
  cb.current = on;
  useEffect(() => {
    const ctl = new AbortController();
    let after = 0;
    let stop = false;
    (async () => {
      try {
        const first = await get(`/v1/events?limit=30${app ? `&app=${enc(app)}` : ''}`);
        after = first.reduce((m, e) => Math.max(m, e.id), 0);
        cb.current(first, true);
      } catch { /* shown by the page's own load */ }
      while (!stop) {
        try {
          const r = await fetch(`/v1/events?after=${after}&wait=25&limit=200${app ? `&app=${enc(app)}` : ''}`,
            { credentials: 'same-origin', signal: ctl.signal });
          if (r.status === 401) { onSignedOut(); return; }
          const evs = r.ok ? await r.json() : [];
          if (evs.length) {
            after = evs.reduce((m, e) => Math.max(m, e.id), after);
            cb.current(evs, false);
          }
        } catch (e) {
          if (stop) return;
          await new Promise((res) => setTimeout(res, 2000));
        }
      }
    })();
    return () => { stop = true; ctl.abort(); };
  }, [app]);
}

// ---------- helpers ----------
function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}
const time = (ms) => new Date(ms).toLocaleTimeString();
function bytes(n) {
  if (!n) return '0';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(n < 10 && i ? 1 : 0)} ${u[i]}`;
}
const St = ({ s }) => html`<span class=${`state-${String(s).split(/[ :]/)[0]}`}>${s}</span>`;
const Bar = ({ pct, label }) => html`<span class="bar" role="meter" aria-label=${label} aria-valuenow=${Math.round(pct || 0)} aria-valuemin="0" aria-valuemax="100"><span style=${`width:${Math.min(100, pct || 0)}%`}></span></span> ${pct == null ? '–' : `${Math.round(pct)}%`}`;

function useLoad(fn, deps) {
  const [state, set] = useState({ data: null, error: null, n: 0 });
  const reload = useCallback(() => set((s) => ({ ...s, n: s.n + 1 })), []);
  useEffect(() => {
    let live = true;
    fn().then((data) => live && set((s) => ({ ...s, data, error: null })),
      (e) => live && set((s) => ({ ...s, error: e.message })));
    return () => { live = false; };
  }, [...deps, state.n]);
  return [state.data, state.error, reload];
}

function debounce(f, ms) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => f(...a), ms); };
}

const Err = ({ e }) => e ? html`<div class="msg error" role="alert">${e}</div>` : null;

// ---------- sign in ----------
function SignIn({ done }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState(null);
  const submit = async (ev) => {
    ev.preventDefault();
    try {
      await api('POST', '/v1/session', { token });
      done();
    } catch (e) { setError(e.message); }
  };
  return html`<main><section class="card signin">
    <h1>Sign in to berth</h1>
    <p class="muted">Use the agent's API token (<code>/var/lib/berth/api.token</code> on the host).</p>
    <form onSubmit=${submit}>
      <div class="row"><label>Token <input id="token" type="password" autocomplete="current-password" value=${token} onInput=${(e) => setToken(e.target.value)} required size="40"/></label></div>
      <div class="row"><button class="primary" type="submit">Sign in</button></div>
      <${Err} e=${error}/>
    </form></section></main>`;
}

// ---------- overview ----------
function Events({ events }) {
  return html`<table><thead><tr><th>time</th><th>kind</th><th>node</th><th>app</th><th>message</th></tr></thead><tbody>
    ${events.map((e) => html`<tr key=${e.id}><td>${time(e.time_ms)}</td><td>${e.kind}</td><td>${e.node || ''}</td>
      <td>${e.app ? html`<a href=${`#/apps/${e.app}`}>${e.app}${e.service ? `/${e.service}` : ''}</a>` : ''}</td><td class="wrap">${e.message}</td></tr>`)}
  </tbody></table>`;
}

function useRecentEvents(app, onChange) {
  const [events, setEvents] = useState([]);
  const changed = useRef(debounce(onChange, 300));
  useEvents(app, (evs, first) => {
    setEvents((old) => (first ? evs.slice().reverse() : [...evs.slice().reverse(), ...old]).slice(0, 50));
    if (!first) changed.current();
  });
  return events;
}

function Overview({ cluster }) {
  const [apps, appsErr, reloadApps] = useLoad(() => get('/v1/apps'), []);
  const [nodes, nodesErr, reloadNodes] = useLoad(() => (cluster ? get('/v1/nodes') : Promise.resolve(null)), [cluster]);
  const [health] = useLoad(() => get('/v1/health'), []);
  const [alarms, , reloadAlarms] = useLoad(() => get('/v1/alarms'), []);
  const events = useRecentEvents(null, () => { reloadApps(); reloadNodes(); reloadAlarms(); });
  useEffect(() => {
    const t = setInterval(() => { reloadNodes(); }, 15000);
    return () => clearInterval(t);
  }, []);
  // An alarm fires until its `alarm_cleared` event: the latest event of each decides.
  const last = {};
  for (const e of events.slice().reverse()) {
    if (e.kind === 'alarm' || e.kind === 'alarm-cleared') last[e.message.split(':')[0]] = e;
  }
  const firing = Object.values(last).filter((e) => e.kind === 'alarm');
  return html`<main><h1>Overview</h1><div class="grid">
    <section class="card" aria-label="hosts"><h2>Hosts</h2>
      ${nodes ? html`<table><thead><tr><th>name</th><th>state</th><th>cpu</th><th>memory</th><th>instances</th><th>zone</th><th>labels</th></tr></thead><tbody>
        ${nodes.map((n) => html`<tr key=${n.node_id}><td>${n.name}${n.me ? ' (this host)' : ''}</td><td><${St} s=${n.drain ? 'drained' : n.state}/></td>
          <td><${Bar} pct=${n.cpu_percent} label=${`${n.name} cpu`}/></td>
          <td><${Bar} pct=${n.mem_total ? 100 * n.mem_used / n.mem_total : null} label=${`${n.name} memory`}/></td>
          <td>${n.instances}</td><td>${(n.labels || {}).az || ''}</td><td class="wrap">${Object.entries(n.labels || {}).map(([k, v]) => `${k}=${v}`).join(' ')}</td></tr>`)}
      </tbody></table>` : html`<p>${health ? html`This host, <b>${health.node_name}</b> (${health.engine}), in no cluster.` : ''}</p>`}
      <${Err} e=${nodesErr}/>
    </section>
    <section class="card" aria-label="apps"><h2>Apps</h2>
      <${Err} e=${appsErr}/>
      ${apps && !apps.length ? html`<p>No app yet: <a href="#/deploy">deploy one</a>.</p>` : ''}
      ${apps && apps.length ? html`<table><thead><tr><th>app</th><th>state</th><th>running</th><th>node</th></tr></thead><tbody>
        ${apps.map((a) => html`<tr key=${a.name}><td><a href=${`#/apps/${a.name}`}>${a.name}</a></td><td><${St} s=${a.state}/></td><td>${a.running}/${a.desired}</td><td>${a.node || ''}</td></tr>`)}
      </tbody></table>` : ''}
    </section>
    <section class="card" aria-label="alarms"><h2>Alarms</h2>
      ${firing.length ? html`<ul>${firing.map((e) => html`<li class="bad">${e.message} (${ago(e.time_ms)})</li>`)}</ul>` : html`<p class="muted">None firing among the recent events.</p>`}
      <p class="muted">${(alarms || []).length} rule(s): ${(alarms || []).map((a) => `${a.name} (${a.metric} ${a.comparison} ${a.threshold})`).join(', ')}</p>
    </section>
  </div>
  <section class="card" aria-label="recent events"><h2>Recent events</h2><${Events} events=${events}/></section>
  </main>`;
}

// ---------- app ----------
function Versions({ app, service, reload }) {
  const [vs, err, again] = useLoad(() => get(`/v1/apps/${enc(app)}/services/${enc(service)}/versions`), [app, service, reload]);
  const [weights, setWeights] = useState({});
  const [msg, setMsg] = useState(null);
  const list = (vs && (vs.versions || vs)) || [];
  const sum = Object.values(weights).reduce((a, b) => a + (Number(b) || 0), 0);
  const act = async (f, ok) => {
    setMsg(null);
    try { await f(); setMsg({ ok }); setWeights({}); again(); } catch (e) { setMsg({ error: e.message }); }
  };
  const split = () => act(() => api('POST', `/v1/apps/${enc(app)}/services/${enc(service)}/traffic`,
    { weights: Object.fromEntries(Object.entries(weights).map(([k, v]) => [k, Number(v) || 0])) }), 'traffic split applied');
  const edited = Object.keys(weights).length > 0;
  return html`<div>
    <${Err} e=${err}/>
    <table><thead><tr><th>version</th><th>image</th><th>replicas</th><th>traffic</th><th>state</th><th>message</th><th>new weight</th></tr></thead><tbody>
      ${list.map((v) => html`<tr key=${v.name}><td>${v.name}</td><td>${v.image}</td><td>${v.replicas}</td><td>${v.weight ?? v.traffic ?? ''}%</td>
        <td><${St} s=${v.state}/></td><td class="wrap">${v.message || ''}</td>
        <td>${may('operator') ? html`<input type="number" min="0" max="100" size="4" aria-label=${`weight of ${v.name}`} value=${weights[v.number] ?? ''}
          onInput=${(e) => setWeights({ ...weights, [v.number]: e.target.value })}/>` : ''}</td></tr>`)}
    </tbody></table>
    ${edited ? html`<p class=${sum === 100 ? 'ok' : 'bad'}>Preview: ${Object.entries(weights).map(([k, w]) => `${service}-${String(k).padStart(3, '0')} ${Number(w) || 0}%`).join(', ')} (sum ${sum}${sum === 100 ? '' : ', must be 100'})</p>` : ''}
    ${may('operator') ? html`<div class="row">
      <button onClick=${split} disabled=${!edited || sum !== 100}>Apply split</button>
      <button onClick=${() => act(() => api('POST', `/v1/apps/${enc(app)}/services/${enc(service)}/rollback`, {}), 'rolled back')}>Roll back</button>
      <button onClick=${() => act(() => api('POST', `/v1/apps/${enc(app)}/services/${enc(service)}/release/confirm`), 'release confirmed')}>Confirm blue/green</button>
      <button onClick=${() => act(() => api('POST', `/v1/apps/${enc(app)}/services/${enc(service)}/release/abort`), 'release aborted')}>Abort blue/green</button>
    </div>` : ''}
    ${msg ? html`<div class=${`msg ${msg.error ? 'error' : 'ok'}`} role="status">${msg.error || msg.ok}</div>` : ''}
  </div>`;
}

// ---------- terminal (berth exec over a WebSocket, api/exec.rs) ----------
// xterm.js is a classic script (it defines window.Terminal), loaded when first needed. It
// writes styles through a <style> element and style attributes, which the console's
// Content-Security-Policy refuses: both are kept to CSSOM, which it allows.
let xtermLoading;
function loadXterm() {
  if (xtermLoading) return xtermLoading;
  const create = Document.prototype.createElement;
  Document.prototype.createElement = function (tag, ...rest) {
    if (String(tag).toLowerCase() !== 'style') return create.call(this, tag, ...rest);
    const el = create.call(this, 'x-style');
    const sheet = new CSSStyleSheet();
    document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
    Object.defineProperty(el, 'textContent', { get: () => '', set: (v) => sheet.replaceSync(String(v)) });
    return el;
  };
  const setAttr = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (n, v) {
    if (String(n).toLowerCase() === 'style' && this.style) { this.style.cssText = v; return; }
    return setAttr.call(this, n, v);
  };
  xtermLoading = new Promise((ok, fail) => {
    const s = create.call(document, 'script');
    s.src = '/ui/vendor/xterm.js';
    s.onload = () => ok(window.Terminal);
    s.onerror = () => fail(new Error('cannot load the terminal'));
    document.head.appendChild(s);
  });
  return xtermLoading;
}

function Terminal({ app, inst, close }) {
  const box = useRef(null);
  const [state, setState] = useState('connecting');
  useEffect(() => {
    let ws, term, gone = false;
    const enc8 = new TextEncoder();
    const frame = (kind, bytes) => { const m = new Uint8Array(bytes.length + 1); m[0] = kind; m.set(bytes, 1); return m; };
    loadXterm().then((T) => {
      if (gone) return;
      term = new T({ cols: 100, rows: 28, convertEol: false, cursorBlink: true });
      term.open(box.current);
      const q = `cmd=sh&tty=1&slot=${inst.slot}&cols=${term.cols}&rows=${term.rows}`;
      const proto = location.protocol === 'https:' ? 'wss' : 'ws';
      ws = new WebSocket(`${proto}://${location.host}/v1/apps/${enc(app)}/services/${enc(inst.service)}/exec?${q}`);
      ws.binaryType = 'arraybuffer';
      ws.onopen = () => { setState('connected'); term.focus(); };
      ws.onmessage = (e) => {
        const b = new Uint8Array(e.data);
        if (b[0] === 1 || b[0] === 2) term.write(b.subarray(1));
        else if (b[0] === 3) { const code = new DataView(e.data).getInt32(1); term.write(`\r\n[exited ${code}]\r\n`); setState(`exited ${code}`); }
        else if (b[0] === 4) { const why = new TextDecoder().decode(b.subarray(1)); term.write(`\r\n[${why}]\r\n`); setState(why); }
      };
      ws.onclose = () => setState((s) => (s === 'connected' || s === 'connecting' ? 'closed' : s));
      term.onData((d) => { if (ws.readyState === 1) ws.send(frame(0, enc8.encode(d))); });
      term.onResize(({ cols, rows }) => {
        if (ws.readyState !== 1) return;
        const b = new Uint8Array(4); const v = new DataView(b.buffer); v.setUint16(0, cols); v.setUint16(2, rows);
        ws.send(frame(1, b));
      });
    }).catch((e) => setState(e.message));
    return () => { gone = true; if (ws) ws.close(); if (term) term.dispose(); };
  }, [app, inst.name]);
  return html`<section class="card" aria-label=${`terminal of ${inst.name}`}>
    <h2>Terminal: ${inst.name} <span class="muted" role="status">${state}</span> <button onClick=${close}>Close</button></h2>
    <div class="terminal" ref=${box}></div>
  </section>`;
}

function AppPage({ name }) {
  const [tick, setTick] = useState(0);
  // Once its removal is asked, the page asks nothing more of the app.
  const removing = useRef(false);
  const bump = () => { if (!removing.current) setTick((t) => t + 1); };
  const [status, err] = useLoad(() => get(`/v1/apps/${enc(name)}`), [name, tick]);
  const [ps] = useLoad(() => get(`/v1/ps?app=${enc(name)}`), [name, tick]);
  // The stored spec holds the services' environment: operators and admins only.
  const [spec] = useLoad(() => (may('operator') ? get(`/v1/apps/${enc(name)}/spec`).catch(() => null) : Promise.resolve(null)), [name]);
  const events = useRecentEvents(name, bump);
  const [msg, setMsg] = useState(null);
  const [scale, setScale] = useState({});
  const [term, setTerm] = useState(null);
  const confirmRef = useRef(null);
  const act = async (f, ok) => {
    setMsg(null);
    try { await f(); setMsg({ ok }); bump(); } catch (e) { setMsg({ error: e.message }); }
  };
  if (err) return html`<main><h1>${name}</h1><${Err} e=${err}/></main>`;
  if (!status) return html`<main><p class="loading">loading ${name}…</p></main>`;
  const instances = ps || [];
  const svcPath = (svc) => `/v1/apps/${enc(name)}/services/${enc(svc)}`;
  const remove = async () => {
    confirmRef.current.close();
    removing.current = true;
    try { await api('DELETE', `/v1/apps/${enc(name)}`); location.hash = '#/'; } catch (e) { removing.current = false; setMsg({ error: e.message }); }
  };
  return html`<main>
    <h1>${name} <${St} s=${status.state}/> <span class="muted">${status.running}/${status.desired} running</span></h1>
    <div class="row">
      ${may('operator') ? html`<button onClick=${() => act(() => api('POST', `/v1/apps/${enc(name)}/stop`), 'stopped')}>Stop</button>
      <button onClick=${() => act(() => api('POST', `/v1/apps/${enc(name)}/start`), 'started')}>Start</button>
      <button onClick=${() => act(() => api('POST', `/v1/apps/${enc(name)}/redeploy`, {}), 'redeployed')}>Redeploy</button>` : ''}
      <a href=${`#/logs?app=${enc(name)}`}>Logs</a> <a href=${`#/metrics?app=${enc(name)}`}>Metrics</a>
      ${may('operator') ? html`<button class="danger" onClick=${() => confirmRef.current.showModal()}>Remove…</button>` : ''}
    </div>
    ${msg ? html`<div class=${`msg ${msg.error ? 'error' : 'ok'}`} role="status">${msg.error || msg.ok}</div>` : ''}
    <dialog ref=${confirmRef} aria-label="confirm removal">
      <p>Remove app <b>${name}</b>: its ${instances.length} container(s) (${instances.map((i) => i.name).join(', ')}) and its network go. Named volumes stay.</p>
      <div class="row"><button class="danger" onClick=${remove}>Remove ${name}</button><button onClick=${() => confirmRef.current.close()}>Cancel</button></div>
    </dialog>
    ${status.services.map((s) => html`<section class="card" key=${s.name} aria-label=${`service ${s.name}`}>
      <h2>${s.name} <span class="muted">${s.image} · ${s.running}/${s.desired}${s.auto ? ` (${s.auto})` : ''}</span></h2>
      ${may('operator') ? html`<div class="row"><label>Replicas <input type="number" min="0" max="100" size="4" aria-label=${`replicas of ${s.name}`}
        value=${scale[s.name] ?? s.desired} onInput=${(e) => setScale({ ...scale, [s.name]: e.target.value })}/></label>
        <button onClick=${() => act(() => api('POST', `/v1/apps/${enc(name)}/scale`, { services: { [s.name]: Number(scale[s.name] ?? s.desired) } }), `${s.name} scaled`)}>Scale ${s.name}</button>
        <button onClick=${() => act(() => api('POST', `${svcPath(s.name)}/restart`), `${s.name} restarted`)}>Restart ${s.name}</button>
        <button class="danger" onClick=${() => confirm(`Remove service ${s.name} from ${name}? Its containers go, as a deploy without it would do.`) && act(() => api('DELETE', svcPath(s.name)), `${s.name} removed`)}>Remove ${s.name}…</button></div>` : ''}
      <table><thead><tr><th>instance</th><th>node</th><th>slot</th><th>version</th><th>state</th><th>health</th><th>ports</th><th>status</th><th></th></tr></thead><tbody>
        ${instances.filter((i) => i.service === s.name).map((i) => html`<tr key=${i.container_id}><td>${i.name}</td><td>${i.node}</td><td>${i.slot}</td><td>${i.version}</td>
          <td><${St} s=${i.state}/></td><td><${St} s=${i.health || '–'}/></td>
          <td>${(i.ports || []).map((p) => `${p.host_port}->${p.container_port}`).join(' ')}</td><td>${i.status}</td>
          <td class="actions"><a href=${`#/logs?app=${enc(name)}&service=${enc(i.service)}&slot=${i.slot}`} aria-label=${`logs of ${i.name}`}>Logs</a>
            <a href=${`#/metrics?app=${enc(name)}`} aria-label=${`monitor ${i.name}`}>Monitor</a>
            ${may('operator') ? html`${i.state === 'running'
              ? html`<button aria-label=${`stop ${i.name}`} onClick=${() => act(() => api('POST', `${svcPath(i.service)}/slots/${i.slot}/stop`), `${i.name} stopped`)}>Stop</button>
                <button aria-label=${`restart ${i.name}`} onClick=${() => act(() => api('POST', `${svcPath(i.service)}/slots/${i.slot}/restart`), `${i.name} restarted`)}>Restart</button>
                <button aria-label=${`terminal of ${i.name}`} onClick=${() => setTerm(i)}>Terminal</button>`
              : html`<button aria-label=${`start ${i.name}`} onClick=${() => act(() => api('POST', `${svcPath(i.service)}/slots/${i.slot}/start`), `${i.name} started`)}>Start</button>`}` : ''}</td></tr>`)}
      </tbody></table>
      <h2>Versions</h2>
      <${Versions} app=${name} service=${s.name} reload=${tick}/>
    </section>`)}
    ${term ? html`<${Terminal} key=${term.name} app=${name} inst=${term} close=${() => setTerm(null)}/>` : ''}
    <section class="card"><h2>Events</h2><${Events} events=${events}/></section>
    ${spec ? html`<section class="card"><h2>Stored spec</h2><pre>${JSON.stringify(spec.spec, null, 2)}</pre></section>` : ''}
  </main>`;
}

// ---------- deploy ----------
function Deploy() {
  const [name, setName] = useState('');
  const [template, setTemplate] = useState('services:\n  web:\n    image: nginx:alpine\n');
  const [vars, setVars] = useState('');
  const [check, setCheck] = useState(null);
  const [progress, setProgress] = useState([]);
  const [result, setResult] = useState(null);
  const [busy, setBusy] = useState(false);
  const varsMap = () => Object.fromEntries(vars.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#') && l.includes('='))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  const validate = useRef(debounce(async (req) => {
    try { setCheck(await api('POST', '/v1/config', req)); } catch (e) { setCheck({ ok: false, error: e.message }); }
  }, 250));
  useEffect(() => { validate.current({ name: name || 'app', template, vars: varsMap() }); }, [name, template, vars]);
  const upload = async (e) => {
    const f = e.target.files[0];
    if (f) { setTemplate(await f.text()); if (!name) setName(f.name.replace(/\.(ya?ml)$/, '').toLowerCase().replace(/[^a-z0-9_-]/g, '-')); }
  };
  const deploy = async () => {
    setBusy(true); setResult(null); setProgress([]);
    const ctl = new AbortController();
    // Progress: the app's events while the deploy runs.
    (async () => {
      let after = 0;
      try { const f = await get('/v1/events?limit=1'); after = f.reduce((m, e) => Math.max(m, e.id), 0); } catch { /* from the start */ }
      while (!ctl.signal.aborted) {
        try {
          const r = await fetch(`/v1/events?after=${after}&wait=10&app=${enc(name)}`, { credentials: 'same-origin', signal: ctl.signal });
          const evs = r.ok ? await r.json() : [];
          if (evs.length) { after = evs.reduce((m, e) => Math.max(m, e.id), after); setProgress((p) => [...p, ...evs]); }
        } catch { return; }
      }
    })();
    try {
      const r = await api('POST', '/v1/apps', { name, template, vars: varsMap() });
      // Wait until every service runs its desired count, or a version failed.
      for (let i = 0; i < 120; i++) {
        const s = await get(`/v1/apps/${enc(name)}`);
        if (s.state === 'running' && s.running >= s.desired) { setResult({ ok: `${name} is running: ${s.running}/${s.desired} (versions ${r.versions.join(', ')})` }); break; }
        if (s.state === 'failing') { setResult({ error: `${name} is failing: see the events below` }); break; }
        await new Promise((res) => setTimeout(res, 1000));
      }
    } catch (e) { setResult({ error: e.message }); }
    setTimeout(() => ctl.abort(), 1500);
    setBusy(false);
  };
  const where = check && !check.ok && check.line ? ` (line ${check.line}, column ${check.column})` : '';
  return html`<main><h1>Deploy</h1><section class="card">
    <div class="row"><label>App name <input id="app-name" value=${name} onInput=${(e) => setName(e.target.value)} placeholder="shop" required/></label>
      <label>Template file <input type="file" accept=".yml,.yaml" onChange=${upload}/></label></div>
    <label for="template">Template (compose YAML)</label>
    <textarea id="template" rows="18" spellcheck="false" value=${template} onInput=${(e) => setTemplate(e.target.value)}></textarea>
    <div class="row"><label for="vars">Variables (KEY=value per line)</label>
      <label>Variables file <input type="file" accept=".env,text/plain" onChange=${async (e) => { const f = e.target.files[0]; if (f) setVars(await f.text()); }}/></label></div>
    <textarea id="vars" rows="3" spellcheck="false" value=${vars} onInput=${(e) => setVars(e.target.value)}></textarea>
    <div id="check" role="status" aria-live="polite">
      ${check && check.ok ? html`<div class="msg ok">Valid: services ${check.services.join(', ')}</div>` : ''}
      ${check && !check.ok ? html`<div class="msg error">${check.error}${where}</div>` : ''}
      ${check && check.warnings && check.warnings.length ? html`<ul class="warn">${check.warnings.map((w) => html`<li>${w}</li>`)}</ul>` : ''}
    </div>
    <div class="row"><button class="primary" onClick=${deploy} disabled=${busy || !name || !(check && check.ok)}>Deploy</button></div>
    ${result ? html`<div id="deploy-result" class=${`msg ${result.error ? 'error' : 'ok'}`} role="status">${result.error || result.ok}${result.ok ? html` · <a href=${`#/apps/${name}`}>open ${name}</a>` : ''}</div>` : ''}
    ${progress.length ? html`<h2>Progress</h2><${Events} events=${progress}/>` : ''}
  </section></main>`;
}

// ---------- logs ----------
const MAX_LINES = 2000;
function Logs({ params }) {
  const [app, setApp] = useState(params.get('app') || '');
  const [service, setService] = useState(params.get('service') || '');
  const [grep, setGrep] = useState('');
  const [stream, setStream] = useState('');
  const run = params.get('run') || '';
  const [since, setSince] = useState(run ? '' : '10m');
  const [slot, setSlot] = useState(params.get('slot') || '');
  const [paused, setPaused] = useState(false);
  const [lines, setLines] = useState([]);
  const [error, setError] = useState(null);
  const [apps] = useLoad(() => get('/v1/apps'), []);
  const pending = useRef([]);
  const pausedRef = useRef(false);
  pausedRef.current = paused;
  const box = useRef(null);
  useEffect(() => {
    if (!app) return undefined;
    setLines([]); setError(null);
    const ctl = new AbortController();
    const q = new URLSearchParams({ app, follow: '1', tail: '200' });
    if (service) q.set('service', service);
    if (service && slot) q.set('slot', slot);
    if (grep) q.set('grep', grep);
    if (stream) q.set('stream', stream);
    if (since) q.set('since', since);
    if (run) q.set('run', run);
    ndjson(`/v1/logs?${q}`, ctl.signal, (l) => { pending.current.push(l); })
      .catch((e) => { if (!ctl.signal.aborted) setError(e.message); });
    // Lines are drawn in batches (a frame at most every 100 ms), keeping the last 2,000.
    const t = setInterval(() => {
      if (pausedRef.current || !pending.current.length) return;
      const add = pending.current; pending.current = [];
      setLines((old) => { const all = old.concat(add); return all.length > MAX_LINES ? all.slice(all.length - MAX_LINES) : all; });
    }, 100);
    return () => { ctl.abort(); clearInterval(t); };
  }, [app, service, slot, grep, stream, since]);
  useEffect(() => { if (box.current && !paused) box.current.scrollTop = box.current.scrollHeight; }, [lines]);
  const download = () => {
    const blob = new Blob(lines.map((l) => `${new Date(l.time_ns / 1e6).toISOString()} ${l.service}/${l.slot} ${l.stream} ${l.message}\n`), { type: 'text/plain' });
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob); a.download = `${app}-logs.txt`; a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  };
  return html`<main><h1>Logs</h1><section class="card">
    <div class="row">
      <label>App <select value=${app} onChange=${(e) => setApp(e.target.value)} aria-label="app"><option value="">choose…</option>
        ${(apps || []).map((a) => html`<option value=${a.name}>${a.name}</option>`)}</select></label>
      <label>Service <input value=${service} onChange=${(e) => setService(e.target.value)} size="10"/></label>
      <label>Instance (slot) <input value=${slot} onChange=${(e) => setSlot(e.target.value)} size="3" inputmode="numeric"/></label>
      <label>Grep <input value=${grep} onChange=${(e) => setGrep(e.target.value)} size="14"/></label>
      <label>Stream <select value=${stream} onChange=${(e) => setStream(e.target.value)}><option value="">both</option><option>stdout</option><option>stderr</option></select></label>
      <label>Since <input value=${since} onChange=${(e) => setSince(e.target.value)} size="6"/></label>
      <button onClick=${() => setPaused(!paused)}>${paused ? 'Resume' : 'Pause'}</button>
      <button onClick=${download} disabled=${!lines.length}>Download</button>
    </div>
    <${Err} e=${error}/>
    <div class="logs" ref=${box} id="log-lines" aria-live="off">${lines.map((l) => html`<div key=${l.id} class=${l.stream}>${new Date(l.time_ns / 1e6).toLocaleTimeString()} ${l.service}/${l.slot} ${l.message}</div>`)}</div>
  </section></main>`;
}

// ---------- metrics ----------
function Chart({ title, series, field, fmt }) {
  const ref = useRef(null);
  useEffect(() => {
    if (!ref.current || !series.length) return undefined;
    let u = null;
    let gone = false;
    const times = [...new Set(series.flatMap((s) => s.buckets.map((b) => b.time_ns / 1e9)))].sort((a, b) => a - b);
    const data = [times, ...series.map((s) => {
      const m = new Map(s.buckets.map((b) => [b.time_ns / 1e9, b[field]]));
      return times.map((t) => (m.has(t) ? m.get(t) : null));
    })];
    const palette = ['#1f6feb', '#cf222e', '#1a7f37', '#9a6700', '#8250df', '#bf3989', '#0a7ea4'];
    loadUPlot().then((UPlot) => {
      if (gone || !ref.current) return;
      u = new UPlot({
        title, width: Math.min(ref.current.clientWidth || 600, 1200), height: 220,
        series: [{}, ...series.map((s, i) => ({ label: s.name, stroke: palette[i % palette.length], value: (_, v) => (v == null ? '–' : fmt(v)) }))],
        axes: [{}, { values: (_, vs) => vs.map(fmt), size: 70 }],
      }, data, ref.current);
    });
    return () => { gone = true; if (u) u.destroy(); };
  }, [series, field]);
  return html`<div ref=${ref} class="chart" role="img" aria-label=${title}></div>`;
}

// Series summed per service (each minute's figures of its containers added up).
function perService(series) {
  const by = new Map();
  for (const x of series) {
    const key = x.app ? `${x.app}/${x.service}` : x.name;
    const acc = by.get(key) || { name: key, buckets: new Map() };
    for (const b of x.buckets) {
      const a = acc.buckets.get(b.time_ns) || { time_ns: b.time_ns };
      for (const k of ['cpu_percent', 'mem_bytes', 'net_rx_rate', 'net_tx_rate', 'blk_read_rate', 'blk_write_rate']) a[k] = (a[k] || 0) + (b[k] || 0);
      acc.buckets.set(b.time_ns, a);
    }
    by.set(key, acc);
  }
  return [...by.values()].map((x) => ({ name: x.name, buckets: [...x.buckets.values()].sort((p, q) => p.time_ns - q.time_ns) }));
}

function Metrics({ params }) {
  const app = params.get('app') || '';
  const [tick, setTick] = useState(0);
  const [group, setGroup] = useState('container');
  const [series, err] = useLoad(() => get(`/v1/metrics${app ? `?app=${enc(app)}` : ''}`), [app, tick]);
  useEffect(() => { const t = setInterval(() => setTick((x) => x + 1), 30000); return () => clearInterval(t); }, []);
  const raw = series || [];
  const s = group === 'service' ? perService(raw) : group === 'host' ? raw.filter((x) => x.name === 'host') : raw;
  const pct = (v) => `${v.toFixed(1)}%`;
  const rate = (v) => `${bytes(v)}/s`;
  return html`<main><h1>Metrics${app ? ` of ${app}` : ''}</h1><p class="muted">The last hour, a point a minute, from the agent's own history (refreshed every 30 s).</p>
    <div class="row"><label>Per <select value=${group} onChange=${(e) => setGroup(e.target.value)} aria-label="group by">
      <option value="container">container</option><option value="service">service</option><option value="host">host</option></select></label></div>
    <${Err} e=${err}/>
    ${s.length ? html`<section class="card">
      <${Chart} title="CPU" series=${s} field="cpu_percent" fmt=${pct}/>
      <${Chart} title="Memory" series=${s} field="mem_bytes" fmt=${bytes}/>
      <${Chart} title="Network received" series=${s} field="net_rx_rate" fmt=${rate}/>
      <${Chart} title="Network sent" series=${s} field="net_tx_rate" fmt=${rate}/>
      <${Chart} title="Block read" series=${s} field="blk_read_rate" fmt=${rate}/>
      <${Chart} title="Block written" series=${s} field="blk_write_rate" fmt=${rate}/>
    </section>` : html`<p>No figures yet (the first point comes after a minute).</p>`}
    <${Alarms}/></main>`;
}

function Alarms() {
  const [alarms, err, reload] = useLoad(() => get('/v1/alarms'), []);
  const [msg, setMsg] = useState(null);
  const [rule, setRule] = useState({ name: '', metric: 'cpu_percent', comparison: '>', threshold: '80', periods: '3', app: '' });
  const remove = async (n) => { try { await api('DELETE', `/v1/alarms/${enc(n)}`); reload(); } catch (e) { setMsg(e.message); } };
  const add = async (ev) => {
    ev.preventDefault(); setMsg(null);
    try {
      await api('POST', '/v1/alarms', { ...rule, threshold: Number(rule.threshold), periods: Number(rule.periods) });
      setRule({ ...rule, name: '' }); reload();
    } catch (e) { setMsg(e.message); }
  };
  const field = (k) => (e) => setRule({ ...rule, [k]: e.target.value });
  return html`<section class="card"><h2>Alarms</h2><${Err} e=${err || msg}/>
    <table><thead><tr><th>name</th><th>rule</th><th>scope</th><th></th></tr></thead><tbody>
    ${(alarms || []).map((a) => html`<tr key=${a.name}><td>${a.name}</td><td>${a.metric} ${a.comparison} ${a.threshold} for ${a.periods} period(s)</td><td>${a.app || 'all'}</td>
      <td>${may('operator') ? html`<button class="danger" onClick=${() => remove(a.name)}>Remove</button>` : ''}</td></tr>`)}
    </tbody></table>
    ${may('operator') ? html`<form onSubmit=${add} aria-label="add an alarm"><div class="row">
      <label>Name <input value=${rule.name} onInput=${field('name')} required size="12"/></label>
      <label>Metric <select value=${rule.metric} onChange=${field('metric')}><option>cpu_percent</option><option>mem_percent</option><option>mem_bytes</option></select></label>
      <label>When <select value=${rule.comparison} onChange=${field('comparison')}><option>${'>'}</option><option>${'<'}</option></select></label>
      <label>Threshold <input type="number" value=${rule.threshold} onInput=${field('threshold')} size="6"/></label>
      <label>For (minutes) <input type="number" min="1" value=${rule.periods} onInput=${field('periods')} size="3"/></label>
      <label>App (empty: all; host: the host) <input value=${rule.app} onInput=${field('app')} size="10"/></label>
      <button type="submit">Add alarm</button></div></form>` : ''}</section>`;
}

// ---------- events, volumes, images, nodes ----------
function EventsPage({ params }) {
  const [app, setApp] = useState(params.get('app') || '');
  const [kind, setKind] = useState('');
  const [node, setNode] = useState('');
  const events = useRecentEvents(app || null, () => {});
  const shown = events.filter((e) => (!kind || e.kind === kind) && (!node || e.node === node));
  return html`<main><h1>Events</h1><section class="card">
    <div class="row"><label>App <input value=${app} onChange=${(e) => setApp(e.target.value)} size="12"/></label>
      <label>Kind <input value=${kind} onInput=${(e) => setKind(e.target.value)} size="10"/></label>
      <label>Node <input value=${node} onInput=${(e) => setNode(e.target.value)} size="10"/></label></div>
    <${Events} events=${shown}/></section></main>`;
}

function Volumes() {
  const [vols, err, reload] = useLoad(() => get('/v1/volumes'), []);
  const [name, setName] = useState('');
  const [driver, setDriver] = useState('local');
  const [opts, setOpts] = useState('');
  const [msg, setMsg] = useState(null);
  const create = async (ev) => {
    ev.preventDefault(); setMsg(null);
    const o = Object.fromEntries(opts.split('\n').map((l) => l.trim()).filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    try { await api('POST', '/v1/volumes', { name, driver, opts: o }); setMsg({ ok: `volume ${name} created` }); setName(''); setOpts(''); reload(); } catch (e) { setMsg({ error: e.message }); }
  };
  const remove = async (n) => { setMsg(null); try { await api('DELETE', `/v1/volumes/${enc(n)}`); setMsg({ ok: `volume ${n} removed` }); reload(); } catch (e) { setMsg({ error: e.message }); } };
  return html`<main><h1>Volumes</h1><section class="card"><${Err} e=${err}/>
    <table><thead><tr><th>name</th><th>node</th><th>driver</th><th>state</th><th>users</th><th>options</th><th></th></tr></thead><tbody>
    ${(vols || []).map((v) => html`<tr key=${`${v.node}/${v.name}`}><td>${v.name}</td><td>${v.node || ''}</td><td>${v.driver}</td><td><${St} s=${v.state}/></td>
      <td class="wrap">${(v.used_by || []).map((u) => `${u.container}:${u.target}`).join(', ')}</td><td class="wrap">${Object.entries(v.opts || {}).map(([k, x]) => `${k}=${x}`).join(' ')}</td>
      <td>${may('admin') ? html`<button class="danger" onClick=${() => remove(v.name)} aria-label=${`remove volume ${v.name}`}>Remove</button>` : ''}</td></tr>`)}
    </tbody></table></section>
    ${may('admin') ? html`<section class="card"><h2>Create a volume</h2><form onSubmit=${create}>
      <div class="row"><label>Name <input value=${name} onInput=${(e) => setName(e.target.value)} required/></label>
        <label>Driver <select value=${driver} onChange=${(e) => setDriver(e.target.value)}><option>local</option><option>oss</option><option>nas</option></select></label></div>
      <label for="vol-opts">Options (KEY=value per line; secrets are sealed at rest and masked in every view)</label>
      <textarea id="vol-opts" rows="4" value=${opts} onInput=${(e) => setOpts(e.target.value)}></textarea>
      <div class="row"><button class="primary" type="submit">Create</button></div></form>
    </section>` : ''}
    ${msg ? html`<div class=${`msg ${msg.error ? 'error' : 'ok'}`} role="status">${msg.error || msg.ok}</div>` : ''}</main>`;
}

function Jobs({ params }) {
  const [jobs, err, reload] = useLoad(() => get('/v1/jobs'), []);
  const [open, setOpen] = useState(params.get('app') || '');
  const [runs, setRuns] = useState(null);
  const [msg, setMsg] = useState(null);
  const load = async (app) => { setOpen(app); setRuns(null); try { setRuns(await get(`/v1/apps/${enc(app)}/runs`)); } catch (e) { setMsg(e.message); } };
  useEffect(() => { if (open) load(open); const t = setInterval(() => { reload(); if (open) load(open); }, 3000); return () => clearInterval(t); }, [open]);
  const act = async (app, a) => { setMsg(null); try { await api('POST', `/v1/apps/${enc(app)}/job/${a}`); reload(); if (open === app) load(app); } catch (e) { setMsg(e.message); } };
  const t = (ms) => (ms ? new Date(ms).toLocaleString() : '-');
  const took = (r) => (r.started_ms ? `${(((r.ended_ms || Date.now()) - r.started_ms) / 1000).toFixed(1)} s` : '-');
  return html`<main><h1>Jobs</h1><section class="card"><${Err} e=${err || msg}/>
    <table><thead><tr><th>job</th><th>state</th><th>schedule</th><th>last run</th><th>next run</th><th></th></tr></thead><tbody>
    ${(jobs || []).map((j) => html`<tr key=${j.app}><td><a href=${`#/jobs?app=${enc(j.app)}`} onClick=${() => load(j.app)}>${j.app}</a></td>
      <td><${St} s=${j.state}/>${j.queued ? ` (${j.queued} queued)` : ''}</td><td>${j.schedule ? `${j.schedule}${j.timezone ? ` (${j.timezone})` : ''}` : '-'}</td>
      <td>${j.last_run ? `${j.last_run.run} ${j.last_run.state} ${t(j.last_run.started_ms || j.last_run.due_ms)}` : '-'}</td><td>${t(j.next_run_ms)}</td>
      <td>${may('operator') ? html`<button onClick=${() => act(j.app, 'run')} aria-label=${`run job ${j.app} now`}>Run now</button>
        <button class="danger" onClick=${() => act(j.app, 'cancel')} aria-label=${`cancel the running run of ${j.app}`}>Cancel run</button>
        ${j.schedule ? html`<button onClick=${() => act(j.app, j.suspended ? 'resume' : 'suspend')}>${j.suspended ? 'Resume' : 'Suspend'}</button>` : ''}` : ''}</td></tr>`)}
    </tbody></table>${jobs && !jobs.length ? html`<p>No jobs: deploy a template with <code>aliyun.project_type: "batch"</code>.</p>` : ''}</section>
    ${open && runs ? html`<section class="card"><h2>Runs of ${open}</h2>
      <table><thead><tr><th>run</th><th>trigger</th><th>state</th><th>started</th><th>took</th><th>tasks</th><th>containers</th><th>reason</th><th></th></tr></thead><tbody>
      ${runs.map((r) => html`<tr key=${r.run}><td>${r.run}</td><td>${r.trigger}</td><td><${St} s=${r.state}/></td><td>${t(r.started_ms || r.due_ms)}</td><td>${took(r)}</td>
        <td class="wrap">${Object.entries(r.tasks || {}).map(([k, v]) => `${k}: ${v}`).join(', ')}</td>
        <td class="wrap">${r.attempts.map((a) => `${a.container}${a.exit_code === null || a.exit_code === undefined ? ' running' : ` exit ${a.exit_code}`}`).join(', ')}</td>
        <td class="wrap">${r.reason || ''}</td><td><a href=${`#/logs?app=${enc(open)}&run=${r.run}`}>logs</a></td></tr>`)}
      </tbody></table></section>` : ''}</main>`;
}

function Images() {
  const [imgs, err, reload] = useLoad(() => get('/v1/images'), []);
  const [msg, setMsg] = useState(null);
  const prune = async () => { try { const r = await api('POST', '/v1/images/prune'); setMsg(`removed ${(r.deleted || []).length}, ${bytes(r.space_reclaimed)} reclaimed`); reload(); } catch (e) { setMsg(e.message); } };
  return html`<main><h1>Images</h1><section class="card"><${Err} e=${err}/>
    <div class="row">${may('admin') ? html`<button onClick=${prune}>Prune unused</button>` : ''} ${msg || ''}</div>
    <table><thead><tr><th>tags</th><th>size</th><th>containers</th></tr></thead><tbody>
    ${(imgs || []).map((i) => html`<tr key=${i.id}><td class="wrap">${(i.tags || []).join(', ') || i.id.slice(7, 19)}</td><td>${bytes(i.size)}</td><td>${i.containers}</td></tr>`)}
    </tbody></table></section></main>`;
}

function Nodes({ cluster }) {
  const [nodes, err, reload] = useLoad(() => (cluster ? get('/v1/nodes') : Promise.resolve([])), [cluster]);
  const [msg, setMsg] = useState(null);
  const act = async (n, a, body) => { setMsg(null); try { await api('POST', `/v1/nodes/${enc(n)}/${a}`, body); reload(); } catch (e) { setMsg(e.message); } };
  if (!cluster) return html`<main><h1>Nodes</h1><section class="card"><p>This host is in no cluster: <code>berth cluster init</code> starts one, <code>berth cluster join TOKEN</code> joins one.</p></section></main>`;
  return html`<main><h1>Nodes</h1><section class="card"><${Err} e=${err || msg}/>
    <table><thead><tr><th>name</th><th>address</th><th>state</th><th>labels</th><th>agent</th><th></th></tr></thead><tbody>
    ${(nodes || []).map((n) => html`<tr key=${n.node_id}><td>${n.name}</td><td>${n.address}</td><td><${St} s=${n.drain ? 'drained' : n.state}/></td>
      <td class="wrap">${Object.entries(n.labels || {}).map(([k, v]) => `${k}=${v}`).join(' ')}</td><td>${n.agent}</td>
      <td>${may('admin') ? html`<button onClick=${() => act(n.name, n.drain ? 'undrain' : 'drain')}>${n.drain ? 'Undrain' : 'Drain'}</button>
        <button onClick=${() => { const l = prompt(`Labels for ${n.name} (k=v to set, k- to remove, space-separated)`); if (l) act(n.name, 'label', { set: Object.fromEntries(l.split(/\s+/).filter((x) => x.includes('=')).map((x) => x.split('=', 2))), remove: l.split(/\s+/).filter((x) => x.endsWith('-')).map((x) => x.slice(0, -1)) }); }}>Labels…</button>` : ''}</td></tr>`)}
    </tbody></table></section></main>`;
}

// ---------- shell ----------
function route() {
  const h = location.hash.replace(/^#/, '') || '/';
  const [path, query] = h.split('?');
  return { path, params: new URLSearchParams(query || '') };
}

function App() {
  const [signedIn, setSignedIn] = useState(null);
  const [cluster, setCluster] = useState(false);
  const [r, setR] = useState(route());
  useEffect(() => {
    onSignedOut = () => setSignedIn(false);
    get('/v1/session').then((s) => { me = s.who || me; setCluster(s.cluster); setSignedIn(s.signed_in); }, () => setSignedIn(false));
    const on = () => setR(route());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  if (signedIn === null) return html`<p class="loading">loading…</p>`;
  if (!signedIn) {
    return html`<${SignIn} done=${() => get('/v1/session').then((s) => { me = s.who || me; setCluster(s.cluster); setSignedIn(true); })}/>`;
  }
  const signOut = async () => { try { await api('DELETE', '/v1/session'); } finally { setSignedIn(false); } };
  const nav = [['#/', 'Overview'], ...(may('operator') ? [['#/deploy', 'Deploy']] : []), ['#/logs', 'Logs'], ['#/metrics', 'Metrics'], ['#/events', 'Events'], ['#/jobs', 'Jobs'], ['#/volumes', 'Volumes'], ['#/images', 'Images'], ['#/nodes', 'Nodes']];
  const at = `#${r.path}`;
  let page;
  const m = r.path.match(/^\/apps\/([^/]+)$/);
  if (m) page = html`<${AppPage} name=${decodeURIComponent(m[1])}/>`;
  else if (r.path === '/deploy') page = may('operator') ? html`<${Deploy}/>` : html`<main><h1>Deploy</h1><p>Access ${me.name} has role ${me.role}: deploying needs operator.</p></main>`;
  else if (r.path === '/logs') page = html`<${Logs} params=${r.params}/>`;
  else if (r.path === '/metrics') page = html`<${Metrics} params=${r.params}/>`;
  else if (r.path === '/events') page = html`<${EventsPage} params=${r.params}/>`;
  else if (r.path === '/volumes') page = html`<${Volumes}/>`;
  else if (r.path === '/jobs') page = html`<${Jobs} params=${r.params}/>`;
  else if (r.path === '/images') page = html`<${Images}/>`;
  else if (r.path === '/nodes') page = html`<${Nodes} cluster=${cluster}/>`;
  else page = html`<${Overview} cluster=${cluster}/>`;
  return html`<header><span class="brand">berth</span>
    <nav aria-label="main">${nav.map(([href, label]) => html`<a href=${href} aria-current=${at === href ? 'page' : null}>${label}</a>`)}</nav>
    <span class="who" aria-label="signed in as">${me.name} (${me.role})</span>
    <button onClick=${signOut}>Sign out</button></header>${page}`;
}

render(html`<${App}/>`, document.getElementById('root'));
