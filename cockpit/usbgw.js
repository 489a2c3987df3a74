/* usbgw's Cockpit page. Everything goes through usbgwctl on the Cockpit
 * bridge (cockpit.spawn, as the logged-in user), so usbgwd decides who may
 * do what from the caller's credentials on its control socket, exactly as
 * for usbgwctl in a shell. The page reads `usbgwctl --json` (status, list,
 * vms, pools, shares), follows `usbgwctl --json events` (one JSON object a
 * line), runs assign/release/share/unshare and checks rule text with
 * `usbgwctl policy check --json -`.
 *
 * When the first load is done, successful or not, <body data-ready="1">;
 * data-loads counts the loads finished since. */
"use strict";

(function () {
    const USBGWCTL = "usbgwctl";
    /* events kept in the list; older ones drop off the end */
    const MAX_EVENTS = 200;
    /* events come in bursts (an assign is assign + attach): one reload a burst */
    const RELOAD_DELAY_MS = 250;
    /* how long to wait before following events again after usbgwd went away */
    const EVENTS_RETRY_MS = 5000;
    /* events whose reason says why something was refused or failed */
    const REFUSALS = new Set(["deny", "veto", "attach-failed", "peer-refused"]);

    const $ = (id) => document.getElementById(id);

    /* ---- usbgwctl ------------------------------------------------------- */

    /* What a failed usbgwctl said: usbgwd's error reply (printed as JSON on
     * stdout with --json), else its stderr, else Cockpit's problem. */
    function failure(ex, data) {
        if (ex && ex.problem === "not-found")
            return {
                ok: false,
                code: "no-usbgwctl",
                message: "usbgwctl is not installed on this host (not found in the bridge's PATH)"
            };
        if (ex && ex.problem)
            return { ok: false, code: ex.problem, message: cockpit.message(ex) };
        let reply = null;
        try {
            reply = data ? JSON.parse(data) : null;
        } catch (e) {
            reply = null;
        }
        if (reply && reply.ok === false && reply.error)
            return {
                ok: false,
                code: reply.error.code || "error",
                message: reply.error.message || "usbgwd refused",
                diagnostics: reply.error.diagnostics || []
            };
        if (reply && reply.valid === false)
            return { ok: false, code: "invalid", result: reply, message: "the policy is invalid" };
        const text = ((ex && ex.message) || "").trim().replace(/^usbgwctl( [a-z-]+)?: /, "");
        return {
            ok: false,
            code: /cannot reach usbgwd/.test(text) ? "unreachable" : "failed",
            message: text || "usbgwctl failed (exit status " + (ex && ex.exit_status) + ")"
        };
    }

    /* Runs `usbgwctl --json ARGS…` (with @input on its stdin); resolves to
     * {ok: true, result} or {ok: false, code, message}, never rejects. */
    function usbgwctl(args, input) {
        return new Promise((resolve) => {
            const proc = cockpit.spawn([USBGWCTL, "--json"].concat(args), { err: "message" });
            proc.then(
                (data) => {
                    try {
                        resolve({ ok: true, result: JSON.parse(data) });
                    } catch (e) {
                        resolve({ ok: false, code: "bad-output", message: "usbgwctl's output is not JSON: " + e });
                    }
                },
                (ex, data) => resolve(failure(ex, data)));
            if (input !== undefined)
                proc.input(input);
        });
    }

    /* ---- DOM helpers ---------------------------------------------------- */

    /* el("td", {class: "x", "data-device": id}, child, "text", …) */
    function el(tag, attrs, ...children) {
        const node = document.createElement(tag);
        for (const [name, value] of Object.entries(attrs || {})) {
            if (value === undefined || value === null || value === false)
                continue;
            if (name === "onclick")
                node.addEventListener("click", value);
            else
                node.setAttribute(name, value === true ? "" : value);
        }
        for (const child of children) {
            if (child === undefined || child === null)
                continue;
            node.append(child instanceof Node ? child : String(child));
        }
        return node;
    }

    function fillTable(id, rows, emptyText) {
        const body = $(id).tBodies[0];
        const columns = $(id).tHead.rows[0].cells.length;
        body.replaceChildren(...rows);
        if (rows.length === 0)
            body.append(el("tr", { class: "empty" }, el("td", { colspan: columns }, emptyText)));
    }

    /* "2026-11-24T21:00:00.482113Z" → "2026-11-24 21:00:00 UTC" */
    function formatTime(iso) {
        if (!iso)
            return "—";
        const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?Z$/.exec(iso);
        return m ? m[1] + " " + m[2] + " UTC" : iso;
    }

    /* "/etc/usbgw/usbgw.policy:12" → "usbgw.policy:12" (the full path in its title) */
    function ruleName(rule) {
        return rule.substring(rule.lastIndexOf("/") + 1);
    }

    function showNotice(kind, text) {
        const notice = $("notice");
        notice.className = "alert alert-" + kind;
        notice.textContent = text;
        notice.hidden = false;
    }

    /* The reason usbgwd (or usbgwctl) gave, for the notice. */
    function refusal(what, r) {
        if (r.code === "unreachable" || r.code === "no-usbgwctl")
            return what + " failed: " + r.message;
        return what + " refused: " + r.message + (r.code ? " (" + r.code + ")" : "");
    }

    /* ---- actions --------------------------------------------------------- */

    function runAction(what, args, done) {
        showNotice("info", what + "…");
        return usbgwctl(args).then((r) => {
            if (r.ok)
                showNotice("ok", done(r.result));
            else
                showNotice("error", refusal(what, r));
            reload();
        });
    }

    function assign(device, vm) {
        if (!vm) {
            showNotice("error", "Assign " + device + ": name the VM first");
            return;
        }
        runAction("Assign " + device + " to " + vm, ["assign", "--", device, vm], (d) => {
            typedVm.delete(device);
            return d.id + " is now for vm " + d.vm + " (" + d.state + ")";
        });
    }

    function release(device) {
        runAction("Release " + device, ["release", "--", device],
                  (d) => d.id + " released (" + d.state + ")");
    }

    function share(vm, user) {
        const args = ["share"];
        if (user)
            args.push("--user", user);
        args.push("--", vm);
        runAction("Share vm " + vm, args,
                  (s) => "vm " + s.vm + " may get devices lent by " + s.user + ": " + s.uri +
                      ", ticket " + s.ticket + " (valid for its first use until " + formatTime(s.expires) + ")");
    }

    function unshare(vm) {
        runAction("Unshare vm " + vm, ["unshare", "--", vm], (r) => "share of vm " + r.vm + " ended");
    }

    /* ---- rendering -------------------------------------------------------- */

    function stateBadge(state) {
        return el("span", { class: "badge state-" + state }, state);
    }

    /* What the admin typed in each device's VM field (device id → text): a
     * reload redraws the table, and must not wipe it. */
    const typedVm = new Map();

    function renderDevices(devices, vmNames) {
        const focused = document.activeElement && document.activeElement.classList.contains("vm-input")
            ? document.activeElement.closest("tr").dataset.device : null;
        $("vm-names").replaceChildren(...vmNames.map((name) => el("option", { value: name })));
        fillTable("devices", devices.map((d) => {
            const vmInput = el("input", {
                class: "vm-input",
                list: "vm-names",
                placeholder: "VM name",
                "aria-label": "VM for " + d.id,
                autocomplete: "off"
            });
            vmInput.value = typedVm.get(d.id) || "";
            vmInput.addEventListener("input", () => typedVm.set(d.id, vmInput.value));
            const where = d.gateway ? "on gateway " + d.gateway
                : d.exported_to ? "exported to " + d.exported_to : null;
            return el("tr", { "data-device": d.id },
                el("td", {},
                    el("div", { class: "device-id" }, d.id),
                    el("div", { class: "muted" }, d.product || d.vid + ":" + d.pid,
                        d.serial ? ", serial " + d.serial : "", where ? ", " + where : "")),
                el("td", { class: "state" }, stateBadge(d.state)),
                el("td", { class: "vm" }, d.vm || "—"),
                el("td", { class: "since", title: d.since || "" }, formatTime(d.since)),
                el("td", { class: "rule", title: d.rule || "" },
                    d.assigned_by ? "usbgwctl assign" : d.rule ? ruleName(d.rule) : "no rule",
                    d.target ? el("div", { class: "muted" }, "→ " + d.target) : null),
                el("td", { class: "actions" },
                    el("form", { class: "inline-form assign-form" }, vmInput,
                    el("button", { type: "submit", class: "assign" }, "Assign"),
                    el("button", {
                        type: "button",
                        class: "release",
                        disabled: !d.vm && !d.assigned_by,
                        onclick: () => release(d.id)
                    }, "Release"))));
        }), "No devices.");
        for (const form of $("devices").querySelectorAll("form.assign-form")) {
            form.addEventListener("submit", (ev) => {
                ev.preventDefault();
                const id = form.closest("tr").dataset.device;
                assign(id, form.querySelector("input").value.trim());
            });
            if (form.closest("tr").dataset.device === focused)
                form.querySelector("input").focus();
        }
    }

    function renderVms(vms, shares) {
        const shareOf = new Map(shares.map((s) => [s.vm, s]));
        fillTable("vms", vms.map((vm) => {
            const s = shareOf.get(vm.name);
            return el("tr", { "data-vm": vm.name },
                el("td", {}, el("div", {}, vm.name), el("div", { class: "muted" }, vm.uuid || "")),
                el("td", {}, vm.devices.length ? vm.devices.join(", ") : "—"),
                el("td", {}, s ? s.user + ", " + s.state : "—"));
        }), "No running VMs.");
    }

    function renderPools(pools) {
        fillTable("pools", pools.map((p) => el("tr", { "data-pool": p.name },
            el("td", {}, p.name),
            el("td", { class: "num" }, p.keys),
            el("td", { class: "num free" }, p.free),
            el("td", { class: "num used" }, p.used),
            el("td", {}, p.devices.filter((d) => d.vm).map((d) => d.id + " → " + d.vm).join(", ") || "—"))),
        "No pool has a key here.");
    }

    function renderShares(shares) {
        fillTable("shares", shares.map((s) => el("tr", { "data-share": s.vm },
            el("td", {}, s.vm),
            el("td", {}, s.user),
            el("td", { class: "num" }, s.port),
            el("td", {}, s.state, s.client ? el("div", { class: "muted" }, "from " + s.client) : null,
                s.expires ? el("div", { class: "muted" }, "ticket unused until " + formatTime(s.expires)) : null),
            el("td", {}, (s.devices || []).join(", ") || "—"),
            el("td", {}, el("button", { type: "button", class: "unshare", onclick: () => unshare(s.vm) }, "Unshare")))),
        "No shares.");
    }

    function renderLinks(status) {
        const links = status.links || [];
        $("gateway-name").textContent = status.gateway
            ? "This gateway: " + status.gateway
            : "No gateway links (usbgwd.conf has no link-listen or link-peers).";
        $("links").hidden = !status.gateway;
        fillTable("links", links.map((l) => el("tr", { "data-peer": l.peer },
            el("td", {}, l.peer, el("div", { class: "muted" }, l.dialed ? "we dial" : "it dials")),
            el("td", {}, stateBadge(l.state), l.reason ? el("div", { class: "reason" }, l.reason) : null),
            el("td", {}, l.address || "—"),
            el("td", { class: "num" }, l.peer_devices + " / " + l.exported),
            el("td", { class: "num" }, l.streams),
            el("td", { class: "num" }, l.rtt_us >= 0 ? l.rtt_us + " µs" : "—"))),
        status.gateway ? "No peers yet." : "—");
    }

    function renderStatus(status) {
        const libvirt = status.libvirt || {};
        $("daemon-status").textContent =
            "usbgwd " + status.version + ", running since " + formatTime(status.started) +
            " · policy " + status.policy.path + " (" + status.policy.rules + " rules)" +
            " · libvirt " + (libvirt.uri || "off") +
            (libvirt.uri ? (libvirt.connected ? " connected" : " not connected") : "");
    }

    /* Empties every table when usbgwd cannot be asked, saying why. */
    function renderUnavailable(reason) {
        for (const id of ["devices", "vms", "pools", "shares", "links"])
            fillTable(id, [], reason);
        $("gateway-name").textContent = "";
        $("links").hidden = false;
    }

    /* ---- loading --------------------------------------------------------- */

    let loading = null;
    let reloadAgain = false;
    let policyPath = null;

    function showProblem(text) {
        $("problem").textContent = text;
        $("problem").hidden = text === null;
    }

    function markLoaded() {
        document.body.dataset.loads = String(Number(document.body.dataset.loads || 0) + 1);
        document.body.dataset.ready = "1";
    }

    async function loadOnce() {
        const status = await usbgwctl(["status"]);
        if (!status.ok) {
            $("daemon-status").textContent = "usbgwd: not reachable";
            showProblem(status.code === "unreachable"
                ? "usbgwd is not running, or not reachable: " + status.message
                : "Cannot ask usbgwd: " + status.message);
            renderUnavailable("No data: usbgwd is not reachable.");
            return;
        }
        renderStatus(status.result);
        policyPath = status.result.policy.path;
        const [list, vms, pools, shares] = await Promise.all(
            [["list"], ["vms"], ["pools"], ["shares"]].map((args) => usbgwctl(args)));
        const denied = [list, vms, pools, shares].find((r) => !r.ok);
        if (denied) {
            showProblem(denied.code === "permission-denied"
                ? "You may not administer usbgwd: " + denied.message +
                  ". Only its status (above) is open to every user."
                : "usbgwd did not answer: " + denied.message);
            renderUnavailable(denied.code === "permission-denied" ? "Not permitted." : "No data.");
            renderLinks(status.result);
            return;
        }
        showProblem(null);
        const vmNames = vms.result.vms.map((v) => v.name);
        for (const d of list.result.devices)
            if (d.vm && !vmNames.includes(d.vm))
                vmNames.push(d.vm);
        renderDevices(list.result.devices, vmNames.sort());
        renderVms(vms.result.vms, shares.result.shares);
        renderPools(pools.result.pools);
        renderShares(shares.result.shares);
        renderLinks(status.result);
    }

    /* Loads everything; a load asked for while one runs follows it. */
    function reload() {
        if (loading) {
            reloadAgain = true;
            return loading;
        }
        loading = loadOnce()
            .catch((e) => showProblem("The page failed: " + e))
            .then(() => {
                loading = null;
                markLoaded();
                if (reloadAgain) {
                    reloadAgain = false;
                    reload();
                }
            });
        return loading;
    }

    let reloadTimer = null;
    function reloadSoon() {
        if (reloadTimer === null)
            reloadTimer = window.setTimeout(() => {
                reloadTimer = null;
                reload();
            }, RELOAD_DELAY_MS);
    }

    /* ---- events ------------------------------------------------------------ */

    function addEvent(ev) {
        const list = $("events");
        const details = [];
        if (ev.device)
            details.push(ev.device);
        else if (ev.vid)
            details.push(ev.vid + ":" + ev.pid);
        if (ev.vm)
            details.push("vm " + ev.vm);
        if (ev.rule)
            details.push("rule " + ruleName(ev.rule));
        if (ev.actor)
            details.push("by " + ev.actor);
        list.prepend(el("li", { "data-event": ev.event },
            el("span", { class: "event-time" }, formatTime(ev.time)),
            el("span", { class: "badge event-" + ev.event }, ev.event),
            el("span", {}, details.join(", ")),
            ev.reason ? el("div", { class: REFUSALS.has(ev.event) ? "reason" : "muted" }, ev.reason) : null));
        while (list.children.length > MAX_EVENTS)
            list.lastElementChild.remove();
    }

    /* What a failed `usbgwctl events` printed that was no event line (its
     * error reply, pretty-printed), kept up to this many characters. */
    const MAX_EVENTS_ERROR_TEXT = 65536;

    function followEvents() {
        let partial = "";
        let rest = "";
        $("events-state").textContent = "Following usbgwd's events since the page opened (newest first).";
        const proc = cockpit.spawn([USBGWCTL, "--json", "events"], { err: "message" });
        proc.stream((chunk) => {
            const lines = (partial + chunk).split("\n");
            partial = lines.pop();
            for (const line of lines) {
                if (!line.trim())
                    continue;
                let ev = null;
                try {
                    ev = JSON.parse(line);
                } catch (e) {
                    ev = null;
                }
                if (ev && typeof ev === "object" && typeof ev.event === "string")
                    addEvent(ev);
                else if (rest.length < MAX_EVENTS_ERROR_TEXT)
                    rest += line + "\n";
            }
            reloadSoon();
        });
        proc.then(
            () => {},
            (ex) => {
                const r = failure(ex, rest + partial);
                if (r.code === "permission-denied" || r.code === "no-usbgwctl") {
                    /* asking again changes nothing: Refresh reloads the page's data only */
                    $("events-state").textContent = "Not following events: " + r.message;
                    return;
                }
                $("events-state").textContent = "Not following events (trying again every " +
                    EVENTS_RETRY_MS / 1000 + " s): " + r.message;
                window.setTimeout(() => {
                    followEvents();
                    reload();
                }, EVENTS_RETRY_MS);
            });
    }

    /* ---- policy check ------------------------------------------------------ */

    /* Selects LINE:COL (column in bytes, as usbgwctl counts) in the text area. */
    function selectPosition(line, column) {
        const area = $("policy-text");
        const lines = area.value.split("\n");
        let offset = 0;
        for (let i = 0; i < line - 1 && i < lines.length; i++)
            offset += lines[i].length + 1;
        const text = lines[line - 1] || "";
        let bytes = 0;
        let chars = 0;
        const encoder = new TextEncoder();
        for (const ch of text) {
            if (bytes >= column - 1)
                break;
            bytes += encoder.encode(ch).length;
            chars += ch.length;
        }
        area.focus();
        area.setSelectionRange(offset + chars, offset + Math.max(chars + 1, text.length));
    }

    function checkPolicy() {
        const result = $("policy-result");
        result.replaceChildren(el("p", { class: "muted" }, "Checking…"));
        usbgwctl(["policy", "check", "-"], $("policy-text").value).then((r) => {
            if (r.ok) {
                result.replaceChildren(el("p", { class: "alert alert-ok policy-valid" },
                    "Valid: " + r.result.rules + " rule" + (r.result.rules === 1 ? "" : "s") + "."));
                return;
            }
            if (r.code !== "invalid") {
                result.replaceChildren(el("p", { class: "alert alert-error" }, "Cannot check: " + r.message));
                return;
            }
            const errors = r.result.errors;
            result.replaceChildren(
                el("p", { class: "alert alert-error" },
                    errors.length + " error" + (errors.length === 1 ? "" : "s") + ": the policy would be refused."),
                el("ul", { class: "policy-errors" }, ...errors.map((e) => el("li", {
                    class: "policy-error",
                    "data-line": e.line,
                    "data-column": e.column,
                    title: "Show in the text",
                    onclick: () => selectPosition(e.line, e.column)
                },
                el("span", { class: "position" }, e.line + ":" + e.column),
                " " + e.message,
                el("pre", {}, e.text + "\n" + " ".repeat(Math.max(0, e.column - 1)) + "^")))));
        });
    }

    function loadRunningPolicy() {
        if (!policyPath) {
            showNotice("error", "usbgwd's policy file is not known (usbgwd not reachable)");
            return;
        }
        cockpit.file(policyPath).read()
            .then((text) => {
                $("policy-text").value = text || "";
                showNotice("info", "Loaded " + policyPath + " into the policy check.");
            }, (ex) => showNotice("error", "Cannot read " + policyPath + ": " + cockpit.message(ex)));
    }

    /* ---- start ------------------------------------------------------------- */

    function init() {
        $("refresh").addEventListener("click", () => reload());
        $("share-form").addEventListener("submit", (ev) => {
            ev.preventDefault();
            const vm = $("share-vm").value.trim();
            if (vm)
                share(vm, $("share-user").value.trim());
        });
        $("policy-check").addEventListener("click", checkPolicy);
        $("policy-load").addEventListener("click", loadRunningPolicy);
        cockpit.transport.wait(() => {
            followEvents();
            reload();
        });
    }

    if (document.readyState === "loading")
        document.addEventListener("DOMContentLoaded", init);
    else
        init();
})();
