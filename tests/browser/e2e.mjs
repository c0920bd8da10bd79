// The page end to end in Debian's Chromium (playwright-core, no browser download), against a running
// s2v-server with the built page. Run by server/tests/browser.rs, which starts the servers:
//
//   node e2e.mjs <mode: webgpu|cpu> <server> <busy server> <sound.wav> <screenshots dir>
//
// "webgpu" gives Chromium its software WebGPU adapter (SwiftShader); "cpu" gives it none, so the page must say
// so and encode on the CPU, on a thread per core (the server makes the page cross-origin isolated; the busy
// server does not, so there it takes one thread). Each scenario throws on the first thing that is not as it must be; the exit status
// says whether all passed.

import { chromium } from "playwright-core";
import { readFile, writeFile, mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";

const [mode, server, busyServer, soundArg, shots] = process.argv.slice(2);
// Chromium's fake microphone plays nothing from a path with `..` in it: give it a plain absolute one.
const soundPath = soundArg && resolve(soundArg);
if (!["webgpu", "cpu"].includes(mode) || !shots) {
  console.error("usage: node e2e.mjs webgpu|cpu <server> <busy server> <sound.wav> <screenshots dir>");
  process.exit(2);
}
await mkdir(shots, { recursive: true });
const sound = await readFile(soundPath);

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function relativeError(a, b) {
  check(a.length === b.length, `latents of ${a.length} and ${b.length} values`);
  let diff = 0, norm = 0;
  for (let i = 0; i < a.length; i++) { diff += (a[i] - b[i]) ** 2; norm += b[i] ** 2; }
  return Math.sqrt(diff / norm);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run",
    // A microphone that plays the test's sound.
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    `--use-file-for-fake-audio-capture=${soundPath}`,
    ...(mode === "webgpu" ? ["--enable-unsafe-webgpu", "--enable-features=Vulkan"] : []),
  ],
});
const context = await browser.newContext({ viewport: { width: 1100, height: 1600 } });
await context.grantPermissions(["microphone", "clipboard-read", "clipboard-write"], { origin: server });
const results = {};

// The page with its console shown, and the latents it sends recorded.
async function open(url) {
  const page = await context.newPage();
  page.on("console", (m) => console.log(`  [page ${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => console.log(`  [page error] ${e.message}`));
  page.sent = [];
  page.on("request", (r) => {
    if (r.url().endsWith("/api/generate")) page.sent.push(JSON.parse(r.postData()));
  });
  await page.goto(url);
  return page;
}

async function encoderReady(page) {
  const line = page.locator("[data-encoder-backend]");
  await line.waitFor({ timeout: 240_000 });
  return {
    backend: await line.getAttribute("data-encoder-backend"),
    threads: Number(await line.getAttribute("data-encoder-threads")),
    text: await line.innerText(),
  };
}

async function picturesArrive(page, count) {
  await page.locator("img[data-generated]").nth(count - 1).waitFor({ timeout: 240_000 });
  await page.locator("a[data-share]").waitFor({ timeout: 240_000 });
  // Every picture has loaded.
  await page.waitForFunction(
    (n) => [...document.querySelectorAll("img[data-generated]")].filter((i) => i.complete && i.naturalWidth > 0).length >= n,
    count,
  );
}

async function nativeLatent() {
  const answer = await fetch(`${server}/api/encode-audio`, {
    method: "POST", headers: { "content-type": "audio/wav" }, body: sound,
  });
  check(answer.ok, `the server's encoder answered ${answer.status}`);
  return (await answer.json()).latent;
}

// The default model's page says what it was trained on, under which licences, and so the weights' licence.
async function dataNoticeIsLinked(page) {
  const link = page.locator("a.data-notice");
  await link.waitFor({ timeout: 60_000 });
  const notice = await context.newPage();
  await notice.goto(new URL(await link.getAttribute("href"), server).href);
  const headings = await notice.locator("h2").allInnerTexts();
  check(headings.includes("What applies to the weights"), `the notice's headings: ${headings}`);
  check((await notice.locator("table").count()) > 0, "the notice lists no package's licences");
  await notice.close();
}

// 1. Upload a sound: the encoder runs in the browser, on the backend this run asks for; its latent is the
// native encoder's; four pictures stream in; the share link works.
async function uploadAndShare() {
  const page = await open(`${server}/`);
  const started = Date.now();
  const encoder = await encoderReady(page);
  results.encoder = encoder;
  const expected = mode === "webgpu" ? "WebGpu" : "Cpu";
  check(encoder.backend === expected, `the encoder ran on ${encoder.backend}, not ${expected}: ${encoder.text}`);
  if (mode === "cpu") check(encoder.text.includes("No WebGPU"), `the page does not say why the CPU runs: ${encoder.text}`);
  check(await page.evaluate(() => crossOriginIsolated), "the page is not cross-origin isolated");
  // On the CPU, a thread per core (on a machine of one core the two builds look alike here).
  const cores = await page.evaluate(() => navigator.hardwareConcurrency);
  const threads = mode === "cpu" ? cores : 1;
  check(encoder.threads === threads, `the encoder runs on ${encoder.threads} threads, not ${threads}: ${encoder.text}`);
  await dataNoticeIsLinked(page);
  const chosen = Date.now();
  await page.locator('input[type="file"][accept="audio/*"]').first().setInputFiles(soundPath);
  await page.locator("img[data-generated]").first().waitFor({ timeout: 240_000 });
  results.uploadToFirstPicture = (Date.now() - chosen) / 1000;
  await picturesArrive(page, 4);
  results.encoderReadySeconds = (chosen - started) / 1000;
  results.encodedNote = await page.locator("section p.status").filter({ hasText: "encoded" }).first().innerText();
  check(results.encodedNote.includes("in your browser"), `not encoded in the browser: ${results.encodedNote}`);
  check(page.sent.length >= 1, "the page sent no generation");
  const latent = page.sent[0].latent;
  const native = await nativeLatent();
  results.latentRelativeError = relativeError(latent, native);
  check(results.latentRelativeError < 1e-3, `the browser's latent is ${results.latentRelativeError} from the native one`);
  await page.screenshot({ path: join(shots, `${mode}-page.png`), fullPage: true });

  const share = await page.locator("a[data-share]").getAttribute("href");
  const shared = await context.newPage();
  await shared.goto(share);
  check((await shared.locator("img").count()) === 4, "the share page does not show the four pictures");
  await shared.screenshot({ path: join(shots, `${mode}-share.png`), fullPage: true });
  await shared.getByText("Make your own").click();
  await shared.waitForURL(`${server}/`);
  await shared.close();
  return page;
}

// 2. A file that is not audio says so, and the page goes on working.
async function undecodable(page) {
  await page.locator('input[type="file"][accept="audio/*"]').first().setInputFiles({
    name: "notes.wav", mimeType: "audio/wav", buffer: Buffer.from("these are words, not sound"),
  });
  const alert = page.locator('[role="alert"]').filter({ hasText: "notes.wav" });
  await alert.waitFor({ timeout: 60_000 });
  results.undecodable = await alert.innerText();
  await page.screenshot({ path: join(shots, `${mode}-undecodable.png`), fullPage: true });
}

// 3. Record through the (fake) microphone: the level meter moves, stopping early encodes what was recorded.
async function record(page) {
  const before = page.sent.length;
  await page.getByRole("button", { name: /Record/ }).click();
  await page.locator("meter.level").waitFor({ timeout: 30_000 });
  // Chromium's fake microphone can take a moment to start playing its file: wait for the meter to move.
  await page.waitForFunction(
    () => Number(document.querySelector("meter.level")?.value) > 0, null, { timeout: 30_000 },
  ).catch(() => check(false, "the level meter never moved while recording"));
  await page.waitForTimeout(2500);
  await page.screenshot({ path: join(shots, `${mode}-recording.png`), fullPage: true });
  await page.getByRole("button", { name: /Stop/ }).click();
  await page.waitForFunction(
    () => document.body.innerText.includes("your recording") || document.querySelector('[role="alert"]:not([hidden])'),
    null, { timeout: 60_000 },
  );
  const refused = await page.locator('[role="alert"]:not([hidden])').allInnerTexts();
  check(refused.every((text) => !text.trim()), `the recording gave an error: ${refused.join(" / ")}`);
  const deadline = Date.now() + 120_000;
  while (page.sent.length === before) {
    check(Date.now() < deadline, "the recording was never generated from");
    await page.waitForTimeout(200);
  }
  await picturesArrive(page, 4);
  results.recorded = true;
}

// 4. A second visit reads the weights from the browser's cache.
async function secondVisit(page) {
  await page.reload();
  const encoder = await encoderReady(page);
  check(encoder.text.includes("from the browser's cache"), `the weights were downloaded again: ${encoder.text}`);
  results.secondVisit = encoder.text;
}

// 5. A busy server (429) is shown as a retry with its countdown. The page is asked for the CPU (`?encoder=cpu`),
// which it must take even where WebGPU is there.
async function busy() {
  const page = await open(`${busyServer}/?encoder=cpu`);
  const encoder = await encoderReady(page);
  check(encoder.backend === "Cpu", `?encoder=cpu ran on ${encoder.backend}`);
  // This server does not make the page cross-origin isolated: one thread.
  check(!(await page.evaluate(() => crossOriginIsolated)), "the busy server's page is cross-origin isolated");
  check(encoder.threads === 1, `without isolation the encoder runs on ${encoder.threads} threads`);
  await page.locator('input[type="file"][accept="audio/*"]').first().setInputFiles(soundPath);
  await picturesArrive(page, 4);
  // The busy server allows one generation a minute: "Again" is refused with a Retry-After.
  await page.getByRole("button", { name: "Again" }).click();
  const retry = page.locator("[data-retry]");
  await retry.waitFor({ timeout: 60_000 });
  results.busy = await retry.innerText();
  check(/trying again in \d+ s/.test(results.busy), `no countdown: ${results.busy}`);
  await page.screenshot({ path: join(shots, `${mode}-busy.png`), fullPage: true });
  await page.close();
}

// 6. Where the build with threads cannot start (here: its script never arrives), the page encodes on one
// thread, and the latent is the same.
async function threadsUnavailable() {
  const page = await context.newPage();
  page.on("console", (m) => console.log(`  [page ${m.type()}] ${m.text()}`));
  await page.route("**/threads/encoder.js", (route) => route.abort());
  await page.goto(`${server}/`);
  const encoder = await encoderReady(page);
  check(encoder.backend === "Cpu" && encoder.threads === 1, `the fallback runs on ${encoder.backend}, ${encoder.threads} threads`);
  check(encoder.text.includes("No WebGPU"), `the fallback does not say why the CPU runs: ${encoder.text}`);
  results.threadsUnavailable = encoder.text;
  await page.close();
}

// 7. Keyboard only: every control is reached by Tab, in order, and shows where the focus is. On a phone-sized
// screen the page fits its width.
async function keyboardAndPhone(page) {
  await page.keyboard.press("Home");
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  const reached = [];
  for (let i = 0; i < 30; i++) {
    await page.keyboard.press("Tab");
    reached.push(await page.evaluate(() => {
      const e = document.activeElement;
      const outline = getComputedStyle(e).outlineStyle;
      return `${e.tagName.toLowerCase()}#${e.id || ""}${outline === "none" ? " (no outline)" : ""}`;
    }));
  }
  results.tabOrder = reached;
  for (const id of ["sound-file", "volume", "second-file", "picture-file", "count", "truncate", "seed"]) {
    check(reached.some((r) => r.includes(`#${id}`)), `Tab never reaches #${id}: ${reached.join(", ")}`);
  }
  check(reached.some((r) => r.startsWith("button#") || r.startsWith("button")), "Tab reaches no button");
  // (Focus passes through the document itself between rounds.)
  const unmarked = reached.filter((r) => r.includes("no outline") && !r.startsWith("body"));
  check(unmarked.length === 0, `focus not shown on ${unmarked.join(", ")}`);
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `the page is ${overflow} px wider than a phone`);
  await page.screenshot({ path: join(shots, `${mode}-phone.png`), fullPage: true });
  await page.setViewportSize({ width: 1100, height: 1600 });
}

let failed = null;
try {
  const page = await uploadAndShare();
  await undecodable(page);
  await record(page);
  await keyboardAndPhone(page);
  await secondVisit(page);
  if (mode === "webgpu") await busy();
  if (mode === "cpu") await threadsUnavailable();
} catch (error) {
  failed = error;
} finally {
  await writeFile(join(shots, `${mode}-results.json`), JSON.stringify(results, null, 2));
  console.log(JSON.stringify(results, null, 2));
  await browser.close();
}
if (failed) {
  console.error(`FAILED (${mode}): ${failed.stack ?? failed}`);
  process.exit(1);
}
console.log(`passed (${mode})`);
