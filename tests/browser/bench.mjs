// The page's speed in Debian's Chromium: the encoder's time for one 10 s clip (spectrogram and network, as the
// page reports it) on WebGPU (Chromium's software adapter, SwiftShader, where the machine has no GPU) and on the
// CPU, first and warm, and the time from choosing a file to the first picture. The CPU path runs on a thread per
// core where the server makes the page cross-origin isolated (its default), on one thread where it does not
// (`s2v-server --no-cross-origin-isolation`). Not a test: run it against a server with the built page (a
// release build for fair numbers):
//
//   node bench.mjs <server> <sound.wav> [runs] [webgpu,cpu]
//
// It prints one JSON object; BENCHMARKS.md records what it gave, with the machine.

import { chromium } from "playwright-core";

const [server, soundPath, runsArg, modesArg] = process.argv.slice(2);
const runs = Number(runsArg ?? 5);
const modes = (modesArg ?? "webgpu,cpu").split(",");

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function measure(mode) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--no-first-run", ...(mode === "webgpu" ? ["--enable-unsafe-webgpu"] : []),
    ],
  });
  const page = await browser.newPage();
  await page.goto(`${server}/`);
  await page.locator("[data-encoder-backend]").waitFor({ timeout: 240_000 });
  const backend = await page.locator("[data-encoder-backend]").getAttribute("data-encoder-backend");
  const threads = Number(await page.locator("[data-encoder-backend]").getAttribute("data-encoder-threads"));
  // Each encoding ends in a generation request, whose arrival says that the note shows that encoding's time
  // (two encodings can take the same time to the hundredth, so the note's text alone cannot tell them apart).
  // The wait starts before the change that causes the request.
  const note = page.locator("section p.status").filter({ hasText: "encoded" }).first();
  const encodedAfter = async (change) => {
    const request = page.waitForRequest((r) => r.url().endsWith("/api/generate"), { timeout: 240_000 });
    await change();
    await request;
    const [, value, unit] = (await note.innerText()).match(/in ([\d.]+) (ms|s)\b/);
    return unit === "ms" ? Number(value) / 1000 : Number(value);
  };
  const chosen = Date.now();
  const first = await encodedAfter(() =>
    page.locator('input[type="file"][accept="audio/*"]').first().setInputFiles(soundPath));
  await page.locator("img[data-generated]").first().waitFor({ timeout: 240_000 });
  const firstPicture = (Date.now() - chosen) / 1000;
  await page.locator("a[data-share]").waitFor({ timeout: 240_000 });
  // Warm: the same clip at other volumes, each encoded anew.
  const warm = [];
  for (let i = 0; i < runs; i++) {
    warm.push(await encodedAfter(() => page.evaluate((v) => {
      const slider = document.getElementById("volume");
      slider.value = String(v);
      slider.dispatchEvent(new Event("input", { bubbles: true }));
      slider.dispatchEvent(new Event("change", { bubbles: true }));
    }, 0.9 - i * 0.05)));
    await page.locator("a[data-share]").waitFor({ timeout: 240_000 });
  }
  await browser.close();
  return { backend, threads, firstEncodeSeconds: first, warmEncodeSeconds: warm, warmMedian: median(warm), uploadToFirstPictureSeconds: firstPicture };
}

const results = {};
for (const mode of modes) results[mode] = await measure(mode);
console.log(JSON.stringify(results, null, 2));
