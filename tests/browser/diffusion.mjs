// The page against a server of the diffusion variant (s2v-server --unclip with the tiny converted model), in
// Debian's Chromium on the CPU path. Run by server/tests/browser.rs:
//
//   node diffusion.mjs <server> <sound.wav> <screenshots dir>
//
// The page must offer the model's own controls (steps and guidance, no truncation, no picture to mix in), send
// them, show each picture's previews while it denoises and then the pictures. Throws on the first thing that is not so.

import { chromium } from "playwright-core";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";

const [server, soundArg, shots] = process.argv.slice(2);
if (!shots) {
  console.error("usage: node diffusion.mjs <server> <sound.wav> <screenshots dir>");
  process.exit(2);
}
await mkdir(shots, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run"],
});
try {
  const page = await (await browser.newContext({ viewport: { width: 1100, height: 1600 } })).newPage();
  page.on("console", (m) => console.log(`  [page ${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => console.log(`  [page error] ${e.message}`));
  const sent = [];
  page.on("request", (r) => {
    if (r.url().endsWith("/api/generate")) sent.push(JSON.parse(r.postData()));
  });
  // Previews are replaced by the pictures within moments: count every one that was ever shown.
  await page.addInitScript(() => {
    window.previewsSeen = new Set();
    new MutationObserver(() => {
      for (const img of document.querySelectorAll("img[data-preview]")) window.previewsSeen.add(img.src);
    }).observe(document, { childList: true, subtree: true, attributes: true });
  });
  await page.goto(`${server}/?encoder=cpu`);
  await page.locator("[data-encoder-backend]").waitFor({ timeout: 240_000 });
  await page.locator("#steps").waitFor({ timeout: 60_000 });
  check(await page.locator("#guidance").count() === 1, "no guidance control");
  check(await page.locator("#truncate").count() === 0, "a GAN's truncation is offered for a diffusion model");
  await page.locator('input[type="file"][accept="audio/*"]').first().setInputFiles(resolve(soundArg));
  await page.locator("img[data-generated]").nth(3).waitFor({ timeout: 240_000 });
  await page.locator("a[data-share]").waitFor({ timeout: 240_000 });
  check(sent.length >= 1, "the page sent no generation");
  const request = sent[sent.length - 1];
  check(request.steps === 60 && request.guidance === 10, `the request's controls: ${JSON.stringify(request)}`);
  check(request.truncation === undefined, `a truncation was sent: ${JSON.stringify(request)}`);
  check(request.latent.length === 6, `a latent of ${request.latent.length} values`);
  check(await page.locator("#second-file").count() === 1, "the mixer is not shown");
  check(await page.locator("#picture-file").count() === 0, "a picture can be mixed in, with no encoder for it");
  const previews = await page.evaluate(() => window.previewsSeen.size);
  check(previews >= 1, "no preview was shown");
  check(await page.locator("img[data-preview]").count() === 0, "previews stayed after the pictures came");
  await page.screenshot({ path: join(shots, "diffusion.png"), fullPage: true });
  console.log(`diffusion page: ${previews} previews shown, then 4 pictures`);
} finally {
  await browser.close();
}
