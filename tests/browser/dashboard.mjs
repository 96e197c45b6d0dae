// Drives the operator dashboard in Debian's Chromium (playwright-core), against a running
// local stack prepared by tests/e2e/tests/it/e2e_dashboard.rs, which passes:
//   COORDINATOR_URL, WEBHOOK_HANDLER_URL, ADMIN_TOKEN, USER_ID, KEAP_CONNECTION_ID, SHOP,
//   SHOPIFY_SECRET (to sign a delivery as Shopify does), SCREENSHOTS (a directory),
//   CHROMIUM (default /usr/bin/chromium).
// Prints one line per step; exits non-zero at the first step that does not hold.
import { createHmac } from "node:crypto";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is required`);
  return value;
};
const base = env("COORDINATOR_URL");
const shots = env("SCREENSHOTS");
mkdirSync(shots, { recursive: true });
const INJECTION = "<img src=x onerror=alert(1)>";

const step = (text) => console.log(`ok: ${text}`);

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  args: ["--no-sandbox"],
});
let failed = null;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const dialogs = [];
  page.on("dialog", async (dialog) => {
    // The page's own confirm() (deleting) is not used here; any dialog means script ran.
    dialogs.push(dialog.message());
    await dialog.dismiss();
  });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));

  await page.goto(`${base}/dashboard`);
  await page.getByLabel("Operator token").fill("not-the-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("That is not the operator token.").waitFor();
  step("a wrong token is refused");
  await page.screenshot({ path: `${shots}/sign-in.png` });

  await page.getByLabel("Operator token").fill(env("ADMIN_TOKEN"));
  await page.getByRole("button", { name: "Sign in" }).click();
  const connections = page.locator("#connections tbody");
  await connections.getByText("keap", { exact: true }).waitFor();
  await connections.getByText("shopify", { exact: true }).waitFor();
  step("signed in: both sandbox connections are listed");
  const html = await page.content();
  if (html.includes(env("ADMIN_TOKEN"))) throw new Error("the operator token is in the page");

  await page.evaluate(() => { window.__notReloaded = true; });
  await page.getByLabel("User", { exact: true }).fill(env("USER_ID"));
  await page.locator("#user-form").getByRole("button", { name: "Show" }).click();
  await page.locator("#live.on").waitFor();
  step("the live stream is open");
  await page.screenshot({ path: `${shots}/connections.png`, fullPage: true });

  // A sync started from the page: its count appears as pages commit, without reloading.
  const keap = env("KEAP_CONNECTION_ID");
  await page.locator(`[data-sync="${keap}"]`).waitFor();
  await page.getByRole("button", { name: /^incremental sync of / }).first().click();
  await page.waitForFunction((id) => {
    const cell = document.querySelector(`[data-sync="${id}"]`);
    const match = cell && cell.textContent.match(/contacts: (running|completed) \((\d+)\)/);
    return match && Number(match[2]) > 0;
  }, keap, { timeout: 60_000 });
  step("a sync started from the page shows its count rising, live");
  await page.screenshot({ path: `${shots}/sync.png`, fullPage: true });

  // The dead letter the harness made: replayed from the page.
  const events = page.locator("#events tbody");
  await events.getByText("dead", { exact: true }).waitFor();
  await page.screenshot({ path: `${shots}/events.png`, fullPage: true });
  await events.getByRole("button", { name: /^Replay / }).first().click();
  await page.getByText("Replayed: it will be delivered again.").waitFor();
  await events.getByText("dead", { exact: true }).waitFor({ state: "detached", timeout: 30_000 });
  step("a dead letter is replayed from the page");

  // A webhook delivered now appears live; its script-injection title stays text.
  const liveItems = page.locator("#recent li").filter({ hasText: /shopify\.product\.created from shopify/ });
  const seenBefore = await liveItems.count();
  const body = JSON.stringify({
    id: 8_800_001, title: INJECTION, handle: "injected", status: "active", vendor: "Acme",
    product_type: "thing", created_at: "2026-01-01T00:00:00Z", updated_at: "2026-11-20T10:00:00Z",
    variants: [],
  });
  const signature = createHmac("sha256", env("SHOPIFY_SECRET")).update(body).digest("base64");
  const delivered = await fetch(`${env("WEBHOOK_HANDLER_URL")}/webhooks/shopify`, {
    method: "POST", body,
    headers: {
      "Content-Type": "application/json", "X-Shopify-Topic": "products/create",
      "X-Shopify-Hmac-Sha256": signature, "X-Shopify-Shop-Domain": env("SHOP"),
      "X-Shopify-Webhook-Id": "wh-dashboard-live", "X-Shopify-Event-Id": "ev-dashboard-live",
    },
  });
  const answer = await delivered.json().catch(() => null);
  if (delivered.status !== 200 || !answer || answer.status !== "stored") {
    throw new Error(`the delivery answered ${delivered.status}: ${JSON.stringify(answer)}`);
  }
  await page.waitForFunction(
    (before) => [...document.querySelectorAll("#recent li")]
      .filter((li) => /shopify\.product\.created from shopify/.test(li.textContent)).length > before,
    seenBefore, { timeout: 30_000 });
  step("a webhook-delivered event appears live");

  const card = page.locator("#suggestions li").filter({ hasText: INJECTION }).first();
  await card.waitFor({ timeout: 60_000 });
  const injected = await page.locator("#suggestions img").count();
  if (injected !== 0 || dialogs.length !== 0) {
    throw new Error(`event data became markup: ${injected} img, dialogs ${dialogs}`);
  }
  step("a script-injection attempt in event data renders as text");
  await card.getByRole("button", { name: /^accept / }).click();
  await page.locator("#suggestions li").filter({ hasText: INJECTION }).first()
    .getByText(/· accepted ·/).waitFor();
  step("a suggestion is accepted from the page");
  await page.locator("#stored-events tbody").getByText("suggested", { exact: true }).first().waitFor();
  step("the latest events show their processing state");
  await page.screenshot({ path: `${shots}/suggestions.png`, fullPage: true });

  // On a phone: nothing wider than the screen (tables scroll inside their panels).
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) throw new Error(`the page is ${overflow}px wider than a phone's screen`);
  await page.screenshot({ path: `${shots}/phone.png`, fullPage: false });
  await page.setViewportSize({ width: 1280, height: 900 });
  step("readable on a phone's width");

  if (!(await page.evaluate(() => window.__notReloaded === true))) {
    throw new Error("the page reloaded");
  }
  step("nothing needed a reload");

  const [session] = (await context.cookies()).filter((c) => c.name === "edge_sync_dashboard");
  if (!session || !session.httpOnly || session.sameSite !== "Strict" || !session.secure) {
    throw new Error(`the session cookie is not HttpOnly, Secure, SameSite=Strict: ${JSON.stringify(session)}`);
  }
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByText("Signed out.").waitFor();
  const after = await fetch(`${base}/dashboard/api/coordinator/connections`, {
    headers: { Cookie: `edge_sync_dashboard=${session.value}` },
  });
  if (after.status !== 401) throw new Error(`the ended session still answers ${after.status}`);
  step("sign-out ends access (the old cookie is refused)");
  await page.screenshot({ path: `${shots}/signed-out.png` });
  if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
} catch (e) {
  failed = e;
  try {
    const pages = browser.contexts().flatMap((c) => c.pages());
    if (pages[0]) {
      await pages[0].screenshot({ path: `${shots}/failure.png`, fullPage: true });
      console.error(`page text at the failure:\n${await pages[0].locator("main").innerText()}`);
    }
  } catch { /* the page is gone */ }
} finally {
  await browser.close();
}
if (failed) {
  console.error(`FAILED: ${failed.stack || failed}`);
  process.exit(1);
}
