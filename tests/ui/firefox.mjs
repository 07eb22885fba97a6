// The web console in Firefox (Debian's firefox-esr), driven over WebDriver BiDi by
// puppeteer-core (Playwright cannot drive a stock Firefox). Run by tests/e2e/console.rs
// against a real agent whose app BERTH_APP (two instances printing `tick`) is deployed:
// sign in with the token, the overview lists the app, its page shows the instances, the
// logs page follows a line printed after it opened, every other page renders, at a
// phone's width too, and no page logs an error. Screenshots go to BERTH_SHOTS.
import puppeteer from 'puppeteer-core';

const url = process.env.BERTH_URL;
const token = process.env.BERTH_TOKEN;
const app = process.env.BERTH_APP;
const shots = process.env.BERTH_SHOTS;
const fail = (m) => { console.error(`firefox: ${m}`); process.exit(1); };
const browser = await puppeteer.launch({
  browser: 'firefox',
  executablePath: process.env.FIREFOX || '/usr/bin/firefox-esr',
  headless: true,
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  const shot = (name) => page.screenshot({ path: `${shots}/firefox-${name}.png` });

  await page.goto(`${url}/`);
  const field = await page.waitForSelector('#token');
  await field.type('wrong-token');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => /wrong token/.test(document.querySelector('[role=alert]')?.textContent || ''), { timeout: 10000 })
    .catch(() => fail('a wrong token was not refused'));
  await field.click({ count: 3 });
  await field.type(token);
  await page.keyboard.press('Enter');
  await page.waitForSelector('nav[aria-label=main]', { timeout: 15000 }).catch(() => fail('sign-in failed'));

  await page.goto(`${url}/#/`);
  await page.waitForFunction((a) => [...document.querySelectorAll('section[aria-label="apps"] tbody tr')].some((r) => r.textContent.includes(a)), { timeout: 30000 }, app)
    .catch(() => fail('the overview does not list the app'));
  await shot('overview');

  await page.goto(`${url}/#/apps/${app}`);
  await page.waitForFunction(() => document.querySelectorAll('section[aria-label="service web"] tbody tr').length >= 2, { timeout: 30000 })
    .catch(() => fail('the app page does not show its two instances'));
  await shot('app');

  await page.goto(`${url}/#/logs?app=${app}`);
  await page.select('select[aria-label=app]', app);
  await page.waitForFunction(() => /tick/.test(document.getElementById('log-lines')?.textContent || ''), { timeout: 30000 })
    .catch(() => fail('the logs page shows no line'));
  const n0 = await page.$$eval('#log-lines div', (d) => d.length);
  await new Promise((r) => setTimeout(r, 2500));
  const n1 = await page.$$eval('#log-lines div', (d) => d.length);
  if (n1 <= n0) fail(`the logs page did not grow live (${n0} then ${n1} lines)`);

  for (const p of ['deploy', 'metrics', 'events', 'jobs', 'volumes', 'images', 'nodes']) {
    await page.goto(`${url}/#/${p}`);
    await page.waitForSelector('main h1', { timeout: 10000 }).catch(() => fail(`page ${p} did not render`));
    await new Promise((r) => setTimeout(r, 300));
  }
  await page.setViewport({ width: 390, height: 844 });
  await page.goto(`${url}/#/`);
  await page.waitForSelector('main h1');
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  if (wide > 420) fail(`at a phone's width the page is ${wide} px wide`);
  await shot('phone');
  // The wrong token's 401 is the one error a browser logs by itself.
  const real = errors.filter((e) => !/401|Unauthorized/.test(e));
  if (real.length) fail(`console errors: ${real.join(' | ')}`);
  console.log('firefox: all steps passed');
} finally {
  await browser.close();
}
