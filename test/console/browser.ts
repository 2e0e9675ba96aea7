// Helpers for the console's browser tests: headless Chromium from Debian's
// packages (/usr/bin/chromium) driven by playwright-core (which never
// downloads a browser), a fresh profile per launch, every page error and
// refused CSP collected so a test can assert there were none, and
// screenshots into tmp/screenshots/ (ignored by git) for a person to look at.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = process.env.QUBES_TEST_CHROMIUM ?? '/usr/bin/chromium';
/** tmp/screenshots/ of the checkout (dist/test/console/ is three levels down), whatever the working directory; git ignores /tmp/ */
export const SCREENSHOTS = fileURLToPath(new URL('../../../tmp/screenshots/', import.meta.url));

/** Why the browser tests cannot run here, or null. */
export function noBrowser(): string | null {
  return existsSync(CHROMIUM) ? null : `NOTE: ${CHROMIUM} is missing (apt-get install chromium): the console's browser tests are SKIPPED`;
}

export interface Console {
  context: BrowserContext;
  page: Page;
  /** page errors, console errors and CSP refusals seen so far */
  problems: string[];
  shot(name: string): Promise<void>;
  close(): Promise<void>;
}

/** A new browser (own profile) with one page at `url`, desktop or phone size. */
export async function openConsole(url: string, size: 'desktop' | 'phone' = 'desktop'): Promise<Console> {
  const profile = mkdtempSync(join(tmpdir(), 'console-chromium-'));
  // playwright passes the fresh profile as --user-data-dir itself
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    ...(size === 'phone'
      ? { viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, isMobile: true, hasTouch: true }
      : { viewport: { width: 1280, height: 860 } }),
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 40[0-9]/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  return {
    context,
    page,
    problems,
    shot: async (name) => {
      mkdirSync(SCREENSHOTS, { recursive: true });
      await page.screenshot({ path: join(SCREENSHOTS, `${name}-${size}.png`), fullPage: true });
    },
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
