// Headless Chromium for the page tests: Debian's binary (no browser download here), and
// the folder the screenshots go to (a CI artifact).
import { mkdirSync } from 'node:fs'
import puppeteer from 'puppeteer-core'

export const SHOTS = process.env.PERCH_SCREENSHOTS ?? 'target/oauth-screenshots'
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium'

export async function launchBrowser() {
  mkdirSync(SHOTS, { recursive: true })
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu'],
  })
}

/** Answers, here, everything `page` asks of an app at `origin` (so nothing needs to listen
 * there). Returns `sentBack()`, the first URL the page was navigated to at that origin (the
 * OAuth redirect; only navigations count, since the "done" page's favicon request goes to
 * the same origin), and `stop()`, which hands the page's requests back to the network. */
export async function answerCallbacks(page, origin) {
  await page.setRequestInterception(true)
  let callback
  const intercept = (req) => {
    if (req.url().startsWith(`${origin}/`)) {
      if (callback === undefined && req.isNavigationRequest()) callback = req.url()
      req.respond({ status: 200, contentType: 'text/plain', body: 'done' })
    } else {
      req.continue()
    }
  }
  page.on('request', intercept)
  return {
    sentBack: () => callback,
    stop: async () => {
      page.off('request', intercept)
      await page.setRequestInterception(false)
    },
  }
}
