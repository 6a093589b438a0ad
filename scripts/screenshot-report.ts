// Screenshot of a simulation report, for the README:
//
//   npx tsx scripts/screenshot-report.ts <report-dir> <out.png> [--full]
//
// Opens <report-dir>/index.html in Debian's Chromium (scripts/install-chromium.sh) with every
// non-file request blocked, waits for the charts, and saves the top of the page at 1280 px wide,
// about 1400 px of it, ending at a section's end (--full: the whole page). When <report-dir>/index.html does not exist it first writes the
// sample report there, so `npx tsx scripts/screenshot-report.ts /tmp/sim-report docs/img/sim-report.png`
// regenerates the README's image.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { writeReport } from '../src/sim/report.js';
import { sampleResults } from '../src/sim/sample-results.js';

const CHROMIUM = '/usr/bin/chromium';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const full = args.includes('--full');
  const [dir, out] = args.filter((a) => a !== '--full');
  if (!dir || !out) {
    console.error('usage: npx tsx scripts/screenshot-report.ts <report-dir> <out.png> [--full]');
    process.exit(2);
  }
  if (!existsSync(CHROMIUM)) {
    console.error(`${CHROMIUM} not found: run scripts/install-chromium.sh first`);
    process.exit(2);
  }
  const page = join(resolve(dir), 'index.html');
  if (!existsSync(page))
    console.log(`no report in ${dir}: wrote the sample report to ${writeReport(sampleResults(), resolve(dir))}`);

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 1400 }, deviceScaleFactor: 1 });
    const tab = await context.newPage();
    const problems: string[] = [];
    tab.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    tab.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
    });
    await tab.route('**/*', (route) => (route.request().url().startsWith('file://') ? route.continue() : route.abort()));
    await tab.goto(pathToFileURL(page).href);
    await tab.locator('html[data-rendered="true"]').waitFor({ timeout: 30_000 });
    mkdirSync(dirname(resolve(out)), { recursive: true });
    // Not full: end at the last block of the page that ends within ~1400 px (+300), not mid-chart.
    let height = 1400;
    if (!full) {
      const bottoms = await Promise.all(
        (await tab.locator('main > :not(h2)').all()).map(async (b) => (await b.boundingBox()) ?? null),
      );
      const fits = bottoms.filter((b) => b !== null && b.height > 0 && b.y + b.height <= 1700).map((b) => b!.y + b!.height);
      if (fits.length > 0) height = Math.ceil(Math.max(...fits)) + 24;
    }
    await tab.screenshot({
      path: out,
      fullPage: full,
      animations: 'disabled',
      ...(full ? {} : { clip: { x: 0, y: 0, width: 1280, height }, fullPage: true }),
    });
    for (const p of problems) console.error(p);
    console.log(`wrote ${out}`);
    if (problems.length > 0) process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

await main();
