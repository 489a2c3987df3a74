// Drives usbgw's Cockpit page in headless Chromium (playwright-core, Debian's
// chromium) against a real cockpit-ws whose bridge runs the build's usbgwctl
// against a usbgwd on simulated keys (test-cockpit.sh sets all that up).
//
//   node test-page.mjs BASE_URL SHOT_DIR USBGWCTL USBGWD_PID NOBODY_URL
//
// BASE_URL is cockpit-ws's (http://127.0.0.1:PORT), with root's bridge;
// NOBODY_URL another cockpit-ws whose bridge runs as nobody (not an admin of
// usbgwd). usbgwctl finds usbgwd's
// control socket through $USBGWCTL_SOCKET, as the bridge's usbgwctl does.
// Every wait has a deadline; screenshots (full page) go to SHOT_DIR.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { chromium } from "playwright-core";

const [baseUrl, shotDir, usbgwctlBin, usbgwdPid, nobodyUrl] = process.argv.slice(2);
if (!nobodyUrl) {
    console.error("usage: node test-page.mjs BASE_URL SHOT_DIR USBGWCTL USBGWD_PID NOBODY_URL");
    process.exit(2);
}
const PAGE_URL = baseUrl + "/cockpit/@localhost/usbgw/index.html";
const SHELL_URL = baseUrl + "/usbgw";
// one step of the page (a load, an action): generous on a loaded machine (a
// first load once took over 20 s while other tests shared the two cores)
const STEP_MS = 60000;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

const HASP = "0529:0001@1-1"; // bound to test-vm by the test's policy
const POOL_KEY = "0529:0001@1-2"; // in pool "cad", leased to cad-01
const STICK = "0781:5567#4C530001"; // mass storage (an id by serial): denied by the policy

let step = "start";
function fail(message) {
    throw new Error(step + ": " + message);
}

function usbgwctl(...args) {
    return execFileSync(usbgwctlBin, ["--json", ...args], { timeout: 10000, encoding: "utf8" });
}

async function shot(page, name) {
    const file = path.join(shotDir, name + ".png");
    await page.screenshot({ path: file, fullPage: true, timeout: STEP_MS });
    console.log("screenshot " + file);
}

// The text of a selector, after waiting for it to contain @want (string or RegExp).
async function waitForText(page, selector, want) {
    try {
        await page.waitForFunction(([sel, source, flags]) => {
            const node = document.querySelector(sel);
            return node !== null && new RegExp(source, flags).test(node.textContent);
        }, [selector, want instanceof RegExp ? want.source : want.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"),
            want instanceof RegExp ? want.flags : ""], { timeout: STEP_MS });
    } catch (e) {
        const now = await page.evaluate((sel) => {
            const node = document.querySelector(sel);
            return node ? node.textContent : "(no such element)";
        }, selector);
        fail(`${selector} did not show ${want} within ${STEP_MS} ms; it shows: ${now.replace(/\s+/g, " ").trim()}`);
    }
    return page.textContent(selector);
}

async function waitForLoads(page, count) {
    await page.waitForFunction((n) => Number(document.body.dataset.loads || 0) >= n, count,
        { timeout: STEP_MS }).catch(() => fail(`the page did not finish load ${count}`));
}

// The cells' text of one row, spaces squeezed, joined by " | "; fails naming
// the rows there are.
async function rowText(page, selector) {
    const node = await page.$(selector);
    if (node === null) {
        const rows = await page.$$eval("tr[data-device], tr[data-vm], tr[data-pool]",
            (trs) => trs.map((tr) => Array.from(tr.cells).map((c) => c.textContent.trim()).join(" , ")));
        fail(`no ${selector}; the rows: ${rows.join(" | ")}`);
    }
    return node.evaluate((row) => (row.cells ? Array.from(row.cells) : [row])
        .map((cell) => cell.textContent.replace(/\s+/g, " ").trim()).join(" | "));
}

async function main() {
    mkdirSync(shotDir, { recursive: true });
    if (!existsSync(CHROMIUM))
        fail(CHROMIUM + " is missing");
    const browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        // root in a container: Chromium's sandbox needs user namespaces it may not get.
        // No proxy lookup and no background fetches: a fresh profile's first
        // navigation must not wait on a network this machine does not have
        args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-proxy-server",
               "--disable-background-networking", "--disable-component-update"],
        timeout: 60000,
    });
    const consoleErrors = [];
    try {
        const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
        const page = await context.newPage();
        page.on("console", (msg) => {
            if (msg.type() === "error")
                consoleErrors.push(msg.text());
        });
        page.on("pageerror", (err) => consoleErrors.push("page error: " + err.message));

        // 1. the first load: the simulated key bound to its VM, the pool, the denied stick
        step = "load";
        // A first navigation of the fresh browser has twice sat for a whole
        // step without its load event on a loaded machine (before any page
        // script ran: no screenshot, no request in cockpit-ws's log). One
        // more navigation is the user's reload; a page that hangs again fails.
        try {
            await page.goto(PAGE_URL, { timeout: STEP_MS / 2 });
        } catch (err) {
            console.error(`first load: ${err.message.split("\n")[0]}; loading again`);
            await page.goto(PAGE_URL, { timeout: STEP_MS });
        }
        await page.waitForFunction(() => document.body.dataset.ready === "1", null, { timeout: STEP_MS })
            .catch(() => fail("the page never set data-ready"));
        const problem = await page.locator("#problem").isVisible();
        if (problem)
            fail("the page shows a problem: " + await page.textContent("#problem"));
        const hasp = await rowText(page, `#devices tr[data-device="${HASP}"]`);
        for (const want of ["bound", "test-vm", "usbgw.policy:2", 'vm "test-vm"'])
            if (!hasp.includes(want))
                fail(`the devices table's row of ${HASP} lacks "${want}": ${hasp}`);
        const stick = await rowText(page, `#devices tr[data-device="${STICK}"]`);
        if (!stick.includes("denied") || !stick.includes("usbgw.policy:1"))
            fail(`the stick is not shown denied by policy:1: ${stick}`);
        const pool = await rowText(page, '#pools tr[data-pool="cad"]');
        if (!/^cad \| 2 \| 1 \| 1 \| /.test(pool) || !pool.includes(POOL_KEY + " → cad-01"))
            fail(`pool cad is not "2 keys, 1 free, 1 used, held by cad-01": ${pool}`);
        const vm = await rowText(page, '#vms tr[data-vm="test-vm"]');
        if (!vm.includes(HASP))
            fail(`vm test-vm's row lacks ${HASP}: ${vm}`);
        const links = await page.textContent("#gateway-name");
        if (!links.includes("No gateway links"))
            fail(`the links card does not say there are none: ${links}`);
        const status = await page.textContent("#daemon-status");
        if (!/usbgwd \S+, running since .* \(4 rules\)/.test(status))
            fail(`the status line: ${status}`);
        await shot(page, "01-loaded");

        // 2. an assign clicked in the page reaches usbgwd
        step = "assign";
        const loadsBefore = Number(await page.evaluate(() => document.body.dataset.loads));
        await page.fill(`#devices tr[data-device="${HASP}"] input.vm-input`, "other-vm");
        await page.click(`#devices tr[data-device="${HASP}"] button.assign`);
        await waitForText(page, "#notice", `${HASP} is now for vm other-vm`);
        await waitForLoads(page, loadsBefore + 1);
        await waitForText(page, `#devices tr[data-device="${HASP}"] td.vm`, /^other-vm$/);
        await waitForText(page, `#devices tr[data-device="${HASP}"] td.rule`, "usbgwctl assign");
        const listed = JSON.parse(usbgwctl("list")).devices.find((d) => d.id === HASP);
        if (!listed || listed.vm !== "other-vm" || listed.assigned_by !== "usbgwctl")
            fail(`usbgwctl list --json after the click: ${JSON.stringify(listed)}`);
        // the event stream shows it too
        await waitForText(page, '#events li[data-event="assign"]', "vm other-vm");
        await shot(page, "02-assigned");

        // 3. refused actions show usbgwd's reason
        step = "refused assign";
        await page.fill(`#devices tr[data-device="${HASP}"] input.vm-input`, ".hidden");
        await page.click(`#devices tr[data-device="${HASP}"] button.assign`);
        const refused = await waitForText(page, "#notice.alert-error",
            `Assign ${HASP} to .hidden refused: ".hidden" is not a VM name (bad-request)`);
        console.log("refused: " + refused);
        if (JSON.parse(usbgwctl("list")).devices.find((d) => d.id === HASP).vm !== "other-vm")
            fail("the refused assign changed the device");

        step = "refused share";
        await page.fill("#share-vm", "test-vm");
        await page.click("#share-button");
        await waitForText(page, "#notice.alert-error",
            "Share vm test-vm refused: SPICE ingress is off: set spice-port-base in usbgwd.conf (not-configured)");
        await shot(page, "03-refused");

        // 4. the policy check marks line:col
        step = "policy check";
        await page.click("#policy-load");
        await waitForText(page, "#notice", "Loaded ");
        const loaded = await page.inputValue("#policy-text");
        if (!loaded.includes('pool "cad" vms "cad-*"'))
            fail(`"Load the running policy" did not load it: ${loaded}`);
        await page.click("#policy-check");
        await waitForText(page, "#policy-result", "Valid: 4 rules.");
        await page.fill("#policy-text", 'pool "cad" vms "cad-*"\nassign id 0529:0001 to vm "x"\nassign id zzzz to pool "cad"\n');
        await page.click("#policy-check");
        const result = await waitForText(page, "#policy-result .policy-error", /^3:11 expected VID:PID/);
        if (!result.includes("assign id zzzz to pool \"cad\"") || !result.includes("          ^"))
            fail(`the error lacks its line and caret: ${result}`);
        await page.click("#policy-result .policy-error");
        const selected = await page.evaluate(() => {
            const area = document.getElementById("policy-text");
            return area.value.substring(area.selectionStart, area.selectionEnd);
        });
        if (!selected.startsWith("zzzz"))
            fail(`clicking the error did not select 3:11 in the text: "${selected}"`);
        await shot(page, "04-policy-check");

        // 5. the page inside Cockpit's shell (its menu entry and iframe)
        step = "shell";
        const shell = await context.newPage();
        await shell.goto(SHELL_URL, { timeout: STEP_MS });
        const frame = shell.frameLocator('iframe[name="cockpit1:localhost/usbgw"]');
        await frame.locator('body[data-ready="1"]').waitFor({ timeout: STEP_MS })
            .catch(() => fail("the page in the shell's iframe never set data-ready"));
        const inShell = (await frame.locator(`#devices tr[data-device="${HASP}"] td.vm`).textContent()).trim();
        if (inShell !== "other-vm")
            fail(`the page in the shell shows ${HASP} with vm "${inShell}"`);
        await shell.waitForSelector('a[href="/usbgw"]', { timeout: STEP_MS })
            .catch(() => fail('the shell has no menu entry for /usbgw'));
        await shot(shell, "05-in-shell");
        await shell.close();

        // 6. a user usbgwd does not let administer it sees why, not a blank page
        step = "no permission";
        const nobody = await context.newPage();
        await nobody.goto(nobodyUrl + "/cockpit/@localhost/usbgw/index.html", { timeout: STEP_MS });
        await nobody.waitForFunction(() => document.body.dataset.ready === "1", null, { timeout: STEP_MS })
            .catch(() => fail("nobody's page never set data-ready"));
        await waitForText(nobody, "#problem", /^You may not administer usbgwd: uid 65534 may not use '[a-z]+': run as root or as a member of group usbgw/);
        await waitForText(nobody, "#devices tbody", "Not permitted.");
        await waitForText(nobody, "#daemon-status", "(4 rules)"); // status is everyone's
        await waitForText(nobody, "#events-state",
            "Not following events: uid 65534 may not use 'subscribe': run as root or as a member of group usbgw");
        if ((await nobody.$$("#events li")).length !== 0)
            fail("usbgwctl events' refusal shows up as events: " + await nobody.textContent("#events"));
        await shot(nobody, "06-no-permission");
        await nobody.close();

        // 7. usbgwd gone: the page says so instead of going blank
        step = "usbgwd stopped";
        process.kill(Number(usbgwdPid), "SIGTERM");
        await waitForText(page, "#events-state", "Not following events");
        await page.reload({ timeout: STEP_MS });
        await page.waitForFunction(() => document.body.dataset.ready === "1", null, { timeout: STEP_MS })
            .catch(() => fail("the page never set data-ready without usbgwd"));
        await waitForText(page, "#problem", "usbgwd is not running, or not reachable: cannot reach usbgwd at");
        await waitForText(page, "#devices tbody", "No data: usbgwd is not reachable.");
        await shot(page, "07-usbgwd-stopped");

        // the page's own script never failed
        const own = consoleErrors.filter((text) => !/favicon/.test(text));
        if (own.length > 0)
            fail("console errors: " + own.join(" | "));
    } finally {
        await browser.close();
    }
}

main().then(() => {
    console.log("PASS: the Cockpit page");
}, (e) => {
    console.error("FAIL: " + e.message);
    process.exit(1);
});
