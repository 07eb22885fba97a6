// Run by benches/console.sh from tests/ui (for its playwright-core). Prints the first-load
// figures of the overview and an app page, then the agent's CPU with 5 live tabs open.
import fs from 'node:fs';
import { createRequire } from 'node:module';

// playwright-core is installed for the console test, in tests/ui (the working directory).
const { chromium } = createRequire(`${process.cwd()}/`)('playwright-core');

const url = process.env.BERTH_URL;
const token = process.env.BERTH_TOKEN;
const pid = process.env.AGENT_PID;
const apps = Number(process.env.APPS || 50);
const replicas = Number(process.env.REPLICAS || 10);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

// A signed-in context with a cold cache.
async function fresh() {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const r = await ctx.request.post(`${url}/v1/session`, { data: { token }, headers: { Origin: url } });
  if (!r.ok()) throw new Error(`sign-in: ${r.status()}`);
  return ctx;
}

// Bytes on the wire (CDP's encodedDataLength: headers and compressed bodies) and the time
// from navigation to `ready` holding, for one first load.
async function firstLoad(path, ready, arg) {
  const ctx = await fresh();
  const page = await ctx.newPage();
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  let bytes = 0;
  let requests = 0;
  cdp.on('Network.loadingFinished', (e) => { bytes += e.encodedDataLength; requests += 1; });
  const t0 = Date.now();
  await page.goto(`${url}${path}`);
  await page.waitForFunction(ready, arg, { timeout: 30000, polling: 'raf' });
  const ms = Date.now() - t0;
  await page.waitForTimeout(300);
  const assets = bytes;
  await ctx.close();
  return { ms, kib: assets / 1024, requests };
}

const cpuTicks = () => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]);
};

const results = [];
for (let i = 0; i < 3; i++) {
  results.push(['overview', await firstLoad('/#/', (n) => document.querySelectorAll('section[aria-label="apps"] tbody tr').length >= n, apps)]);
}
for (let i = 0; i < 3; i++) {
  results.push(['app page', await firstLoad('/#/apps/cb1', (n) => document.querySelectorAll('section[aria-label="service web"] table:first-of-type tbody tr').length >= n, replicas)]);
}
for (const [what, r] of results) {
  console.log(`${what}: ${r.kib.toFixed(1)} KiB over ${r.requests} requests, interactive in ${r.ms} ms`);
}

// 5 tabs on live pages, then the agent's CPU over 60 s.
const ctx = await fresh();
for (const p of ['/#/', '/#/apps/cb1', '/#/logs?app=cb1', '/#/events', '/#/metrics']) {
  const page = await ctx.newPage();
  await page.goto(`${url}${p}`);
}
await new Promise((r) => setTimeout(r, 10000));
const hz = 100;
const c0 = cpuTicks();
const t0 = Date.now();
await new Promise((r) => setTimeout(r, 60000));
const pct = ((cpuTicks() - c0) / hz) / ((Date.now() - t0) / 1000) * 100;
console.log(`agent CPU with 5 live tabs open: ${pct.toFixed(2)}% of a core over 60 s`);
await browser.close();
