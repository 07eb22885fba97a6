// Run by benches/logs-page.sh from tests/ui (for its playwright-core): the console's Logs
// page following an app that prints about 2,000 lines a second. Measures, over 20 s, how
// many lines a second reach the page, how far behind the newest line shown is, and how
// smooth the page stays (main-thread gaps seen by a 10 ms timer, long tasks).
import { createRequire } from 'node:module';

const { chromium } = createRequire(`${process.cwd()}/`)('playwright-core');
const url = process.env.BERTH_URL;
const token = process.env.BERTH_TOKEN;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const r = await ctx.request.post(`${url}/v1/session`, { data: { token }, headers: { Origin: url } });
if (!r.ok()) throw new Error(`sign-in: ${r.status()}`);
const page = await ctx.newPage();
await page.goto(`${url}/#/logs?app=flood`);
await page.getByLabel('app').selectOption('flood');
await page.waitForFunction(() => /line \d+-\d+/.test(document.getElementById('log-lines')?.textContent || ''), null, { timeout: 30000 });
await page.waitForTimeout(3000);
// Frame gaps and long tasks while the page follows.
await page.evaluate(() => {
  // A 10 ms timer: each gap between its firings is how long the page's main thread could
  // not answer (headless Chromium does not run requestAnimationFrame for a page no one sees).
  window.gaps = []; let last = performance.now();
  window.timer = setInterval(() => { const t = performance.now(); window.gaps.push(t - last); last = t; }, 10);
  window.longTasks = 0;
  new PerformanceObserver((l) => { for (const e of l.getEntries()) window.longTasks += e.duration; }).observe({ entryTypes: ['longtask'] });
});
// The newest line shown, as a count of lines printed (`line I-J`: batch I of 200, line J).
const newest = () => page.evaluate(() => {
  const rows = document.querySelectorAll('#log-lines div');
  const m = rows.length ? rows[rows.length - 1].textContent.match(/line (\d+)-(\d+)/) : null;
  return m ? Number(m[1]) * 200 + Number(m[2]) : 0;
});
const n0 = await newest();
const t0 = Date.now();
const behind = [];
for (let i = 0; i < 20; i++) {
  await page.waitForTimeout(1000);
  // How far behind: the page's newest line against the newest the container printed, as the
  // agent's store says (a tail of 1 line).
  const last = await (await ctx.request.get(`${url}/v1/logs?app=flood&tail=1`)).text();
  const m = last.match(/line (\d+)-(\d+)/);
  if (m) behind.push(Number(m[1]) * 200 + Number(m[2]) - await newest());
}
const n1 = await newest();
const secs = (Date.now() - t0) / 1000;
const frames = await page.evaluate(() => { clearInterval(window.timer); return { gaps: window.gaps, long: window.longTasks }; });
const g = frames.gaps.slice(1).sort((a, b) => a - b);
const pct = (p) => g[Math.min(g.length - 1, Math.floor(g.length * p / 100))].toFixed(0);
const rows = await page.evaluate(() => document.querySelectorAll('#log-lines div').length);
behind.sort((a, b) => a - b);
console.log(`lines reaching the page: ${((n1 - n0) / secs).toFixed(0)}/s over ${secs.toFixed(0)} s (${rows} kept on the page)`);
console.log(`newest line shown behind the store's newest: median ${behind[Math.floor(behind.length / 2)]} lines, max ${behind[behind.length - 1]}`);
console.log(`main-thread gaps (10 ms timer): p50 ${pct(50)} ms, p99 ${pct(99)} ms, max ${g[g.length - 1].toFixed(0)} ms over ${g.length} firings; long tasks ${frames.long.toFixed(0)} ms in all (${(frames.long / secs / 10).toFixed(1)}% of the time)`);
await browser.close();
