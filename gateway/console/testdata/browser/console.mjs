// Drives Debian's chromium through the compliance console with a client
// certificate (playwright-core, no browser download). Called by the Go
// test TestConsoleInBrowser: node console.mjs CONFIG.json PHASE; prints
// one JSON object with what it read on the pages, and writes a screenshot
// of every page to config.shots.
import { chromium } from 'playwright-core';
import { readFileSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const phase = process.argv[3];
const out = { errors: [], shots: [] };

const contexts = [];

// open starts chromium on a fresh profile (--user-data-dir, through
// launchPersistentContext) presenting the client certificate of certDir.
async function open(certDir, expect = {}) {
  const ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'xborder-chromium-')), {
    executablePath: cfg.chromium,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    ignoreHTTPSErrors: true, // the development CA is not in chromium's store
    viewport: { width: 1280, height: 900 },
    clientCertificates: [{ origin: cfg.base, certPath: join(certDir, 'tls.crt'), keyPath: join(certDir, 'tls.key') }],
  });
  contexts.push(ctx);
  await ctx.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warning') return;
    // Chromium reports an expected error page (the 403) as a failed load.
    const code = expect[new URL(page.url()).pathname];
    if (code && m.text() === `Failed to load resource: the server responded with a status of ${code} (Forbidden)`) return;
    out.errors.push(`${page.url()}: console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => out.errors.push(`${page.url()}: page error: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400 && expect[new URL(r.url()).pathname] !== r.status()) out.errors.push(`${r.url()}: HTTP ${r.status()}`);
  });
  page.on('requestfailed', (r) => out.errors.push(`${r.url()}: request failed: ${r.failure()?.errorText}`));
  return { ctx, page };
}

async function shot(page, name) {
  const path = join(cfg.shots, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  out.shots.push(path);
}

const text = async (page, sel) => (await page.locator(sel).first().innerText()).trim();
const num = async (page, sel) => parseInt(await text(page, sel), 10);

async function a2d(page, report, key) {
  const row = page.locator(`${report} tr[data-key="${key}"] td.a2d`);
  return (await row.count()) ? parseInt((await row.first().innerText()).trim(), 10) : 0;
}

try {
  const { page } = await open(cfg.officer);
  if (phase === 'one') {
    // Overview, with the keyboard first: the skip link is the first stop.
    await page.goto(`${cfg.base}/console/`);
    await page.keyboard.press('Tab');
    out.firstFocus = await page.evaluate(() => document.activeElement?.textContent?.trim());
    out.total24 = await text(page, '.window h3');
    out.refused = await page.locator('#refused').count() ? await text(page, '#refused') : '';
    await shot(page, '01-overview');
    await page.setViewportSize({ width: 320, height: 800 });
    out.overflow320 = await page.evaluate(() => document.documentElement.scrollWidth);
    await shot(page, '01-overview-320px');
    await page.setViewportSize({ width: 1280, height: 900 });

    // Rules, and one module's source.
    await page.goto(`${cfg.base}/console/rules`);
    out.rules = await page.locator('#rule-map tbody th').allInnerTexts();
    out.history = await page.locator('#history-table tbody tr').allInnerTexts();
    await shot(page, '02-rules');
    await page.locator('#rule-map a').first().click();
    await page.waitForSelector('pre.source');
    await shot(page, '03-module');

    // Try a decision: a scenario, through the keyboard.
    await page.goto(`${cfg.base}/console/try`);
    await page.focus('#scenario');
    await page.selectOption('#scenario', cfg.tryScenario);
    await page.keyboard.press('Tab');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#decision');
    out.tryDecision = await text(page, '#result');
    out.tryRemoved = await page.locator('#message li.removed').evaluateAll((els) =>
      els.map((li) => `${li.querySelector('.k').textContent} ${li.querySelector('.rule').textContent}`));
    await shot(page, '04-try');

    // Subject report, and as printed.
    await page.goto(`${cfg.base}/console/subject`);
    await page.fill('#ref', cfg.subjectRef);
    await page.press('#ref', 'Enter');
    await page.waitForSelector('#subject-report');
    out.subjectRows = await page.locator('#subject-report tbody tr').count();
    await shot(page, '05-subject');
    await page.emulateMedia({ media: 'print' });
    await shot(page, '05-subject-print');
    await page.emulateMedia({ media: 'screen' });

    // Impact of a candidate: upload, wait for the comparison.
    await page.goto(`${cfg.base}/console/impact`);
    await page.setInputFiles('#candidate', cfg.candidate);
    await page.fill('#variants', String(cfg.variants));
    await page.fill('#seed', String(cfg.seed));
    await shot(page, '06-impact-form');
    await page.click('form[action="/console/impact"] button[type="submit"]');
    await page.waitForURL(/\/console\/impact\/[0-9a-f]+$/);
    out.jobURL = page.url();
    await page.waitForSelector('#synthetic-report', { timeout: cfg.jobTimeoutMs });
    out.testSummary = await text(page, '#test-summary');
    out.scenarioChanged = await num(page, '#scenario-report .changed-count');
    out.scenarioBorderA2D = await a2d(page, '#scenario-report', 'border-screening');
    out.syntheticChanged = await num(page, '#synthetic-report .changed-count');
    out.syntheticFigures = await text(page, '#synthetic-report .figures');
    out.syntheticBorderA2D = await a2d(page, '#synthetic-report', 'border-screening');
    await shot(page, '07-impact-result');
    await page.locator('#synthetic-report tr[data-key="border-screening"] a').click();
    await page.waitForSelector('#diffs');
    out.drillRows = await page.locator('#diffs tbody tr').count();
    await shot(page, '08-impact-drilldown');

    // Start the shadow run.
    await page.goto(out.jobURL);
    await page.fill('#minutes', '10');
    await page.click('form[action$="/shadow"] button[type="submit"]');
    await page.waitForURL(/\/console\/shadow$/);
    await shot(page, '09-shadow-started');

    // Verify the audit chain (a POST with the form's token).
    await page.goto(`${cfg.base}/console/`);
    await page.click('form[action="/console/audit/verify"] button');
    await page.waitForSelector('#verify-result');
    out.verify = await text(page, '#verify-result');
    await shot(page, '10-overview-verified');

    // Someone who is not a compliance officer gets a plain 403 page.
    const other = await open(cfg.other, { '/console/': 403 });
    const r = await other.page.goto(`${cfg.base}/console/`);
    out.otherStatus = r.status();
    out.otherText = await text(other.page, 'main');
    await shot(other.page, '11-forbidden');
  } else {
    await page.goto(`${cfg.base}/console/shadow`);
    out.observed = await num(page, '#observed');
    out.compared = await num(page, '#compared');
    out.dropped = await num(page, '#dropped');
    out.shadowChanged = await num(page, '#shadow-report .changed-count');
    out.shadowBorderA2D = await a2d(page, '#shadow-report', 'border-screening');
    await shot(page, '12-shadow');
    if (out.shadowChanged > 0) {
      await page.locator('#shadow-report tr[data-key="border-screening"] a').click();
      await page.waitForSelector('#diffs');
      out.shadowDrill = await page.locator('#diffs tbody tr th code').allInnerTexts();
      await shot(page, '13-shadow-drilldown');
    }
    await page.goto(`${cfg.base}/console/`);
    out.total24 = await text(page, '.window h3');
    await shot(page, '14-overview-after-traffic');
  }
} catch (e) {
  out.errors.push(`script: ${e.stack || e}`);
}
for (const c of contexts) await c.close();
process.stdout.write(JSON.stringify(out));
