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
