// Drives the berth console in Debian's headless Chromium against a real agent and engine.
// Env: BERTH_URL (the agent's API), BERTH_TOKEN, BERTH_IMAGE (a local image whose `sh` runs
// httpd), BERTH_SHOTS (directory for screenshots). Exits non-zero with the reason on failure.
// Run by tests/e2e/console.rs.
import { chromium } from 'playwright-core';
import fs from 'node:fs';

const url = process.env.BERTH_URL;
const token = process.env.BERTH_TOKEN;
const image = process.env.BERTH_IMAGE;
const shots = process.env.BERTH_SHOTS || 'target/console';
const app = `ui${Date.now() % 100000}`;
fs.mkdirSync(shots, { recursive: true });

const step = (s) => console.log(`-- ${s}`);
const fail = (m) => { throw new Error(m); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const errors = [];
let failed = null;
let page = null;
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await ctx.newPage();
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`${page.url()}: ${m.text()}`); });
  page.on('pageerror', (e) => errors.push(`${page.url()}: ${e.message}`));
  // Which request a "Failed to load resource" message is about.
  page.on('response', (r) => { if (r.status() >= 400) errors.push(`(response ${r.status()} ${r.request().method()} ${r.url()})`); });
  // Requests that fail because a page left (aborted streams) are not errors of the page.
  const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });

  step('sign-in: a wrong token is refused');
  await page.goto(url);
  await page.getByLabel('Token').fill('not-the-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'wrong token' }).waitFor();
  await shot('signin');
  // The console's own failed sign-in logs a 401 in the browser console: expected here.
  errors.length = 0;

  step('sign-in with the token');
  await page.getByLabel('Token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  await page.getByLabel('signed in as').filter({ hasText: 'the API token (admin)' }).waitFor();
  const cookies = await ctx.cookies();
  const c = cookies.find((k) => k.name === 'berth_session') || fail('no session cookie');
  if (!c.httpOnly || c.sameSite !== 'Strict') fail(`cookie flags: ${JSON.stringify(c)}`);

  step('a cross-site POST with the session is refused');
  const cross = await page.evaluate(async (u) => {
    const r = await fetch(`${u}/v1/apps/none/stop`, { method: 'POST', credentials: 'include', headers: { 'Origin-Test': '1' } });
    return r.status;
  }, url);
  // Same-origin from the page: the browser sends the right Origin; an unknown app is a 404.
  if (cross !== 404) fail(`a same-origin POST got ${cross}`);
  const forged = await ctx.request.post(`${url}/v1/apps/none/stop`, { headers: { Origin: 'http://evil.example' } });
  if (forged.status() !== 403) fail(`a POST with another site's Origin got ${forged.status()}`);
  errors.length = 0; // the 404 asked for above

  step('deploy: an invalid template shows its error at its line');
  await page.getByRole('link', { name: 'Deploy', exact: true }).click();
  await page.getByLabel('App name').fill(app);
  await page.getByLabel('Template (compose YAML)').fill(`services:\n  web:\n    image: ${image}\n    bogus_key: 1\n`);
  await page.locator('#check .msg.error').filter({ hasText: 'line 4' }).waitFor();
  await shot('deploy-invalid');

  step('deploy a template and watch it become healthy');
  await page.getByLabel('Template (compose YAML)').fill(
    `services:\n  web:\n    image: ${image}\n    command: sh -c 'echo started; i=0; while true; do i=$$((i+1)); echo tick-$$i; sleep 1; done'\n    stop_grace_period: 1s\n`);
  await page.locator('#check .msg.ok').waitFor();
  await page.getByRole('button', { name: 'Deploy' }).click();
  await page.locator('#deploy-result.ok').waitFor({ timeout: 90000 });
  await shot('deploy');

  step('app page: scale 1 -> 3 and see three instances');
  await page.goto(`${url}/#/apps/${app}`);
  await page.getByRole('heading', { name: new RegExp(`^${app}`) }).waitFor();
  await page.getByLabel('replicas of web').fill('3');
  await page.getByRole('button', { name: 'Scale web' }).click();
  await page.waitForFunction((a) => document.querySelectorAll('section[aria-label="service web"] tbody tr td:nth-child(5) .state-running').length >= 3
    && [...document.querySelectorAll('section[aria-label="service web"] tbody tr')].filter((r) => r.textContent.includes(`${a}_web`)).length >= 3, app, { timeout: 60000 });
  await shot('app');

  step('terminal: a shell in a container echoes what is typed, and exits with its code');
  await page.getByRole('button', { name: `terminal of ${app}_web_1` }).click();
  await page.getByRole('status').filter({ hasText: 'connected' }).waitFor({ timeout: 30000 });
  await page.locator('.xterm-helper-textarea').focus();
  await page.keyboard.type('echo berth-$((6*7)) in $(hostname)');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => /berth-42 in [0-9a-f]{12}/.test(document.querySelector('.terminal').textContent), null, { timeout: 30000 });
  // Its styles reached the page through CSSOM (the policy refuses inline ones): rows are
  // laid out at the terminal's row height, not collapsed.
  const rowH = await page.evaluate(() => document.querySelector('.xterm-rows > div').getBoundingClientRect().height);
  if (!(rowH > 8)) fail(`terminal rows are ${rowH}px high`);
  await shot('terminal');
  await page.keyboard.type('exit 5');
  await page.keyboard.press('Enter');
  await page.getByRole('status').filter({ hasText: 'exited 5' }).waitFor({ timeout: 30000 });
  const ev = await (await ctx.request.get(`${url}/v1/events?app=${app}`)).text();
  if (!ev.includes(`exec in ${app}_web_1`)) fail(`no exec event: ${ev.slice(0, 400)}`);
  await page.getByRole('button', { name: 'Close' }).click();

  step('container rows: stop, start and restart one container; its logs link names it');
  const third = `${app}_web_3`;
  await page.getByRole('button', { name: `stop ${third}` }).click();
  await page.getByRole('status').filter({ hasText: `${third} stopped` }).waitFor();
  await page.getByRole('button', { name: `start ${third}` }).waitFor({ timeout: 30000 });
  const stopped = await (await ctx.request.get(`${url}/v1/ps?app=${app}`)).json();
  if (stopped.find((i) => i.name === third)?.state === 'running') fail(`${third} still runs after stop`);
  await page.getByRole('button', { name: `start ${third}` }).click();
  await page.getByRole('status').filter({ hasText: `${third} started` }).waitFor();
  await page.getByRole('button', { name: `restart ${third}` }).waitFor({ timeout: 30000 });
  await page.getByRole('button', { name: `restart ${third}` }).click();
  await page.getByRole('status').filter({ hasText: `${third} restarted` }).waitFor();
  const ps3 = (await (await ctx.request.get(`${url}/v1/ps?app=${app}`)).json()).find((i) => i.name === third);
  if (!ps3 || ps3.state !== 'running') fail(`${third} after restart: ${JSON.stringify(ps3)}`);
  const evs = await (await ctx.request.get(`${url}/v1/events?app=${app}`)).text();
  if (!/restarting [^"]*\/3/.test(evs) && !evs.includes(`restarting ${third}`)) fail(`no restart event: ${evs.slice(0, 600)}`);
  const logsHref = await page.getByRole('link', { name: `logs of ${third}` }).getAttribute('href');
  if (!logsHref.includes('service=web') || !logsHref.includes('slot=3')) fail(`logs link: ${logsHref}`);

  step('a second version; split traffic 50/50, then roll back');
  const deployed = await ctx.request.post(`${url}/v1/apps`, {
    headers: { Origin: url },
    data: { name: app, template: `services:\n  web:\n    image: ${image}\n    command: sh -c 'echo v2; while true; do echo v2-tick; sleep 1; done'\n    stop_grace_period: 1s\n    labels:\n      berth.scale: "3"\n      berth.auto_scaling.min_instances: "1"\n      berth.auto_scaling.max_instances: "3"\n`, traffic: 'none' },
  });
  if (!deployed.ok()) fail(`second deploy: ${deployed.status()} ${await deployed.text()}`);
  await page.reload();
  await page.getByLabel('weight of web-002').waitFor({ timeout: 30000 });
  // An autoscaled service shows its bounds.
  await page.getByRole('heading', { name: /\(auto 1\.\.3\)/ }).waitFor();
  // A version takes traffic once it is normal (the page follows the events that say so).
  await page.locator('tr', { hasText: 'web-002' }).locator('.state-normal').waitFor({ timeout: 60000 });
  await page.getByLabel('weight of web-001').fill('50');
  await page.getByLabel('weight of web-002').fill('50');
  await page.getByText('sum 100').waitFor();
  await page.getByRole('button', { name: 'Apply split' }).click();
  await page.getByRole('status').filter({ hasText: 'traffic split applied' }).waitFor();
  const v = await (await ctx.request.get(`${url}/v1/apps/${app}/services/web/versions`)).json();
  const w = Object.fromEntries(v.map((x) => [x.name, x.set_weight]));
  if (w['web-001'] !== 50 || w['web-002'] !== 50) fail(`weights after the split: ${JSON.stringify(w)}`);
  await page.getByRole('button', { name: 'Roll back' }).click();
  await page.getByRole('status').filter({ hasText: 'rolled back' }).waitFor();
  const after = await (await ctx.request.get(`${url}/v1/apps/${app}/services/web/versions`)).json();
  const w2 = Object.fromEntries(after.map((x) => [x.name, x.set_weight]));
  if (w2['web-001'] !== 100) fail(`weights after the rollback: ${JSON.stringify(w2)}`);

  step('live logs show a line printed after the page opened');
  await page.goto(`${url}/#/logs?app=${app}`);
  await page.getByLabel('app').selectOption(app);
  const t0 = Date.now();
  await page.waitForFunction(() => /tick-\d+/.test(document.getElementById('log-lines')?.textContent || ''), null, { timeout: 30000 });
  // A tick printed after t0: the page's newest line is from after it opened.
  const fresh = await page.evaluate(() => {
    const rows = [...document.querySelectorAll('#log-lines div')];
    return rows.length ? rows[rows.length - 1].textContent : '';
  });
  if (!fresh) fail('no log line');
  await page.waitForTimeout(2500);
  const newer = await page.evaluate(() => document.querySelectorAll('#log-lines div').length);
  if (Date.now() - t0 < 2000 || newer < 2) fail(`logs did not grow live (${newer} lines)`);
  await shot('logs');

  step('metrics: a chart has points');
  await page.goto(`${url}/#/metrics?app=${app}`);
  await page.getByRole('heading', { name: new RegExp('^Metrics') }).waitFor();
  await page.locator('.chart canvas, .uplot').first().waitFor({ timeout: 90000 }).catch(async () => {
    // The first point comes after a minute of history: wait for it and look again.
    for (let i = 0; i < 20; i++) {
      await page.waitForTimeout(5000);
      await page.reload();
      if (await page.locator('.uplot').count()) return;
    }
    fail('no chart after 100 s');
  });
  await shot('metrics');

  step('the other pages render');
  for (const [name, heading] of [['events', 'Events'], ['volumes', 'Volumes'], ['images', 'Images'], ['nodes', 'Nodes'], ['', 'Overview']]) {
    await page.goto(`${url}/#/${name}`);
    await page.getByRole('heading', { name: heading, exact: true }).waitFor();
    await page.waitForTimeout(300);
    await shot(name || 'overview');
  }

  step('jobs: a batch job deployed through the API is listed, runs again from the page, and its runs show');
  const job = `${app}-job`;
  const jd = await ctx.request.post(`${url}/v1/apps`, {
    headers: { Origin: url },
    data: { name: job, template: `labels:\n  aliyun.project_type: batch\nservices:\n  once:\n    image: ${image}\n    command: ["echo", "job done"]\n` },
  });
  if (!jd.ok()) fail(`job deploy: ${jd.status()} ${await jd.text()}`);
  await page.goto(`${url}/#/jobs`);
  await page.getByRole('heading', { name: 'Jobs', exact: true }).waitFor();
  await page.locator('tr', { hasText: job }).locator('.state-finished').waitFor({ timeout: 60000 });
  await page.getByRole('button', { name: `run job ${job} now` }).click();
  await page.getByRole('link', { name: job }).click();
  await page.getByRole('heading', { name: `Runs of ${job}` }).waitFor();
  await page.locator('tr', { hasText: 'manual' }).locator('.state-finished').waitFor({ timeout: 60000 });
  await shot('jobs');
  await ctx.request.delete(`${url}/v1/apps/${job}`, { headers: { Origin: url } });

  step('volumes: create one from the page, then remove it');
  await page.goto(`${url}/#/volumes`);
  await page.getByLabel('Name').fill(`${app}-data`);
  await page.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('status').filter({ hasText: `volume ${app}-data created` }).waitFor();
  await page.getByRole('button', { name: `remove volume ${app}-data` }).click();
  await page.getByRole('status').filter({ hasText: `volume ${app}-data removed` }).waitFor();

  step('alarms: add one on the metrics page, then remove it');
  await page.goto(`${url}/#/metrics`);
  const form = page.getByRole('form', { name: 'add an alarm' });
  await form.getByLabel('Name').fill(`${app}-cpu`);
  await form.getByLabel('Threshold').fill('95');
  await form.getByRole('button', { name: 'Add alarm' }).click();
  await page.locator('tr', { hasText: `${app}-cpu` }).waitFor();
  await page.locator('tr', { hasText: `${app}-cpu` }).getByRole('button', { name: 'Remove' }).click();
  await page.locator('tr', { hasText: `${app}-cpu` }).waitFor({ state: 'detached' });

  step('metrics per service');
  await page.goto(`${url}/#/metrics`);
  await page.getByLabel('group by').selectOption('service');
  await page.locator('.uplot').first().waitFor({ timeout: 30000 });

  step('keyboard: the navigation is reachable with Tab and followed with Enter');
  await page.goto(`${url}/#/`);
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  let reached = false;
  for (let i = 0; i < 6 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.textContent === 'Deploy');
  }
  if (!reached) fail('Tab never reached the Deploy link');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Deploy' }).waitFor();

  step('a phone-width overview');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${url}/#/`);
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  await shot('overview-phone');
  await page.setViewportSize({ width: 1280, height: 800 });

  step('a viewer sees the role, and no action it may not take');
  const made = await ctx.request.post(`${url}/v1/access`, { headers: { Origin: url }, data: { name: 'watcher', role: 'viewer' } });
  if (!made.ok()) fail(`access create: ${made.status()} ${await made.text()}`);
  const viewerToken = (await made.json()).token;
  const vctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const vpage = await vctx.newPage();
  await vpage.goto(url);
  await vpage.getByLabel('Token').fill(viewerToken);
  await vpage.getByRole('button', { name: 'Sign in' }).click();
  await vpage.getByLabel('signed in as').filter({ hasText: 'watcher (viewer)' }).waitFor();
  await vpage.goto(`${url}/#/apps/${app}`);
  await vpage.getByRole('link', { name: `logs of ${third}` }).waitFor({ timeout: 30000 });
  for (const name of ['Stop', 'Redeploy', 'Remove…', 'Scale web', 'Apply split', `terminal of ${third}`, `restart ${third}`]) {
    if (await vpage.getByRole('button', { name, exact: true }).count()) fail(`a viewer is offered ${name}`);
  }
  if (await vpage.getByRole('link', { name: 'Deploy', exact: true }).count()) fail('a viewer is offered Deploy');
  await vpage.goto(`${url}/#/volumes`);
  await vpage.getByRole('heading', { name: 'Volumes', exact: true }).waitFor();
  if (await vpage.getByRole('button', { name: 'Create' }).count()) fail('a viewer is offered to create a volume');
  // What it is not offered, the API refuses anyway, naming the role.
  const refused = await vctx.request.post(`${url}/v1/apps/${app}/stop`, { headers: { Origin: url } });
  if (refused.status() !== 403 || !(await refused.text()).includes('role viewer')) fail(`a viewer's stop: ${refused.status()}`);
  await vctx.close();
  await ctx.request.delete(`${url}/v1/access/watcher`, { headers: { Origin: url } });

  step('remove the app with its confirmation');
  await page.goto(`${url}/#/apps/${app}`);
  await page.getByRole('button', { name: 'Remove…' }).click();
  await page.getByRole('dialog').getByText(`${app}_web`).first().waitFor();
  await page.getByRole('button', { name: `Remove ${app}` }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  const gone = await ctx.request.get(`${url}/v1/apps/${app}`);
  if (gone.status() !== 404) fail(`the app is still there: ${gone.status()}`);

  step('sign out: the session no longer works');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  const stale = await fetch(`${url}/v1/apps`, { headers: { Cookie: `berth_session=${c.value}` } });
  if (stale.status !== 401) fail(`the old session still works: ${stale.status}`);

  const real = errors.filter((e) => !/net::ERR_ABORTED|signal is aborted|AbortError/.test(e));
  if (real.some((e) => !e.startsWith('('))) fail(`console errors:\n${real.join('\n')}`);
} catch (e) {
  failed = e;
  if (page) await page.screenshot({ path: `${shots}/failure.png`, fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}
if (failed) {
  console.error(`FAILED: ${failed.message}`);
  process.exit(1);
}
console.log('console: all steps passed');
